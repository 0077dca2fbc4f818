"""Tests of orchestrix.core.common.validation."""

from __future__ import annotations

import enum
import math
import pickle
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrix.core.common import exceptions
from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix.core.common.validation import (
    ValidationError,
    validate_in_range,
    validate_max_length,
    validate_min_length,
    validate_non_negative,
    validate_not_empty,
    validate_one_of,
    validate_positive,
)
from orchestrix.core.messaging.message import Command

_Raises = AbstractContextManager[pytest.ExceptionInfo[ValidationError]]


def _raises(field: str, message: str) -> _Raises:
    """Expect a ValidationError for ``field`` whose text is exactly ``field: message``."""
    return pytest.raises(ValidationError, match=f"^{re.escape(f'{field}: {message}')}$")


# -- the error type ------------------------------------------------------------


def test_validation_error_is_the_exceptions_module_class() -> None:
    assert ValidationError is exceptions.ValidationError


def test_validation_error_is_a_value_error_and_an_orchestrix_error() -> None:
    with pytest.raises(ValidationError) as info:
        validate_positive(-1, "amount")
    error = info.value
    assert isinstance(error, ValueError)
    assert isinstance(error, OrchestrixError)
    assert error.field == "amount"
    assert error.message == "must be greater than 0, got -1"
    assert error.errors == {"amount": ["must be greater than 0, got -1"]}
    assert str(error) == "amount: must be greater than 0, got -1"


def test_validation_error_can_be_caught_as_value_error() -> None:
    with pytest.raises(ValueError, match="order_id: must not be empty"):
        validate_not_empty("", "order_id")


def test_validation_error_survives_pickling() -> None:
    with pytest.raises(ValidationError) as info:
        validate_not_empty(" ", "name")
    copy = pickle.loads(pickle.dumps(info.value))
    assert copy.field == "name"
    assert copy.errors == {"name": ["must not be empty"]}


# -- validate_not_empty ----------------------------------------------------------


@pytest.mark.parametrize("value", ["x", " padded ", "ORD-001", "é"])
def test_not_empty_accepts_text(value: str) -> None:
    validate_not_empty(value, "name")


@pytest.mark.parametrize("value", ["", " ", "\t\n", "\u3000"])
def test_not_empty_rejects_empty_and_whitespace(value: str) -> None:
    with _raises("name", "must not be empty") as info:
        validate_not_empty(value, "name")
    assert info.value.field == "name"


@pytest.mark.parametrize(
    ("value", "type_name"), [(None, "NoneType"), (0, "int"), (b"abc", "bytes"), (["a"], "list")]
)
def test_not_empty_rejects_non_strings(value: object, type_name: str) -> None:
    with _raises("name", f"must be a string, got {type_name}"):
        validate_not_empty(value, "name")  # type: ignore[arg-type]


# -- validate_positive / validate_non_negative -------------------------------------


@pytest.mark.parametrize("value", [1, 0.001, 10**30, Decimal("0.01"), Fraction(1, 3), math.inf])
def test_positive_accepts_positive_numbers(value: float) -> None:
    validate_positive(value, "amount")


@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0"), (-1, "-1"), (-0.5, "-0.5"), (Decimal("-2.50"), "-2.50")]
)
def test_positive_rejects_zero_and_negatives(value: float, shown: str) -> None:
    with _raises("amount", f"must be greater than 0, got {shown}"):
        validate_positive(value, "amount")


@pytest.mark.parametrize("value", [0, 0.0, -0.0, 5, Decimal("0"), Decimal("3.5")])
def test_non_negative_accepts_zero_and_positives(value: float) -> None:
    validate_non_negative(value, "quantity")


@pytest.mark.parametrize(("value", "shown"), [(-1, "-1"), (-1e-9, "-1e-09"), (Decimal("-1"), "-1")])
def test_non_negative_rejects_negatives(value: float, shown: str) -> None:
    with _raises("quantity", f"must be greater than or equal to 0, got {shown}"):
        validate_non_negative(value, "quantity")


@pytest.mark.parametrize("validator", [validate_positive, validate_non_negative])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be a number, got bool"),
        (False, "must be a number, got bool"),
        ("5", "must be a number, got str"),
        (None, "must be a number, got NoneType"),
        (1j, "must be a number, got complex"),
        (math.nan, "must be a number, got NaN"),
        (Decimal("NaN"), "must be a number, got NaN"),
        (Decimal("sNaN"), "must be a number, got NaN"),
    ],
)
def test_number_validators_reject_non_numbers(
    validator: object, value: object, message: str
) -> None:
    assert callable(validator)
    with _raises("n", message):
        validator(value, "n")


@given(st.floats(min_value=0, exclude_min=True, allow_infinity=False) | st.integers(min_value=1))
def test_positive_accepts_every_positive_number(value: float) -> None:
    validate_positive(value, "x")
    validate_non_negative(value, "x")


@given(st.floats(max_value=0, allow_nan=False) | st.integers(max_value=0))
def test_positive_rejects_every_non_positive_number(value: float) -> None:
    with pytest.raises(ValidationError) as info:
        validate_positive(value, "x")
    assert info.value.field == "x"


# -- validate_min_length / validate_max_length --------------------------------------


def test_min_length_accepts_long_enough_strings() -> None:
    validate_min_length("abc", 3, "code")
    validate_min_length("abcd", 3, "code")
    validate_min_length("", 0, "code")


def test_min_length_rejects_short_strings() -> None:
    with _raises("code", "must be at least 3 characters long, got 2"):
        validate_min_length("ab", 3, "code")
    with _raises("code", "must be at least 1 character long, got 0"):
        validate_min_length("", 1, "code")


def test_max_length_accepts_short_enough_strings() -> None:
    validate_max_length("abc", 3, "code")
    validate_max_length("", 3, "code")
    validate_max_length("", 0, "code")


def test_max_length_rejects_long_strings() -> None:
    with _raises("code", "must be at most 3 characters long, got 4"):
        validate_max_length("abcd", 3, "code")
    with _raises("code", "must be at most 1 character long, got 2"):
        validate_max_length("ab", 1, "code")


def test_lengths_count_characters_not_bytes() -> None:
    validate_max_length("ééé", 3, "name")
    validate_min_length("ééé", 3, "name")


@pytest.mark.parametrize("validator", [validate_min_length, validate_max_length])
def test_length_validators_reject_non_strings(validator: object) -> None:
    assert callable(validator)
    with _raises("code", "must be a string, got list"):
        validator(["a", "b"], 1, "code")


@pytest.mark.parametrize("validator", [validate_min_length, validate_max_length])
@pytest.mark.parametrize("bound", [-1, 1.5, True])
def test_length_validators_reject_bad_bounds_as_programming_errors(
    validator: object, bound: object
) -> None:
    assert callable(validator)
    with pytest.raises(ValueError, match="length must be an int >= 0") as info:
        validator("abc", bound, "code")
    assert not isinstance(info.value, ValidationError)


# -- validate_in_range ----------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 5, 10, 1.0, 9.99, Decimal("10")])
def test_in_range_is_inclusive(value: float) -> None:
    validate_in_range(value, 1, 10, "rating")


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (11, "11"), (10.01, "10.01"), (-5, "-5")])
def test_in_range_rejects_values_outside(value: float, shown: str) -> None:
    with _raises("rating", f"must be between 1 and 10, got {shown}"):
        validate_in_range(value, 1, 10, "rating")


def test_in_range_with_a_single_allowed_value() -> None:
    validate_in_range(3, 3, 3, "n")
    with _raises("n", "must be between 3 and 3, got 4"):
        validate_in_range(4, 3, 3, "n")


@pytest.mark.parametrize("value", [True, math.nan, "5", None])
def test_in_range_rejects_non_numbers(value: object) -> None:
    with pytest.raises(ValidationError, match=r"^rating: must be a number"):
        validate_in_range(value, 0, 10, "rating")  # type: ignore[arg-type]


def test_in_range_rejects_inverted_or_bad_bounds_as_programming_errors() -> None:
    with pytest.raises(ValueError, match=r"min_value \(10\) must not exceed max_value \(1\)") as a:
        validate_in_range(5, 10, 1, "rating")
    assert not isinstance(a.value, ValidationError)
    with pytest.raises(ValueError, match="max_value must be a number") as b:
        validate_in_range(5, 0, math.nan, "rating")
    assert not isinstance(b.value, ValidationError)


@given(
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=-1000, max_value=1000),
    st.integers(min_value=-1000, max_value=1000),
)
def test_in_range_agrees_with_comparison(value: int, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    if low <= value <= high:
        validate_in_range(value, low, high, "v")
    else:
        with pytest.raises(ValidationError):
            validate_in_range(value, low, high, "v")


# -- validate_one_of --------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


def test_one_of_accepts_allowed_values() -> None:
    validate_one_of("EUR", ["EUR", "USD"], "currency")
    validate_one_of("USD", ("EUR", "USD"), "currency")
    validate_one_of(2, {1, 2, 3}, "level")
    validate_one_of(Colour.RED, list(Colour), "colour")
    validate_one_of(None, [None, "x"], "maybe")


def test_one_of_rejects_other_values_listing_the_allowed_ones() -> None:
    with _raises("currency", "must be one of ['EUR', 'USD'], got 'GBP'") as info:
        validate_one_of("GBP", ["EUR", "USD"], "currency")
    assert info.value.errors == {"currency": ["must be one of ['EUR', 'USD'], got 'GBP'"]}
    with _raises("level", "must be one of [1, 2], got 3"):
        validate_one_of(3, (1, 2), "level")
    with pytest.raises(ValidationError, match="must be one of"):
        validate_one_of("red", list(Colour), "colour")
    with _raises("x", "must be one of [], got 'a'"):
        validate_one_of("a", [], "x")


def test_one_of_refuses_a_string_of_allowed_values() -> None:
    # `"US" in "USD"` is True: a bare string would silently test substrings.
    with pytest.raises(TypeError, match="not a string"):
        validate_one_of("US", "USD", "currency")


# -- the reference example ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CreateOrder(Command):
    order_id: str
    amount: float

    def __post_init__(self) -> None:
        validate_not_empty(self.order_id, "order_id")
        validate_positive(self.amount, "amount")


def test_reference_create_order_is_valid() -> None:
    command = CreateOrder(order_id="ORD-001", amount=99.99)
    assert command.type == "CreateOrder"
    assert command.order_id == "ORD-001"
    assert command.amount == 99.99
    assert command.timestamp.utcoffset() is not None


@pytest.mark.parametrize("order_id", ["", "   "])
def test_reference_create_order_rejects_empty_order_id(order_id: str) -> None:
    with pytest.raises(ValidationError) as info:
        CreateOrder(order_id=order_id, amount=10.0)
    assert info.value.field == "order_id"
    assert info.value.errors == {"order_id": ["must not be empty"]}


@pytest.mark.parametrize("amount", [0, -1, -0.01])
def test_reference_create_order_rejects_non_positive_amount(amount: float) -> None:
    with pytest.raises(ValidationError) as info:
        CreateOrder(order_id="ORD-001", amount=amount)
    assert info.value.field == "amount"
    assert str(info.value) == f"amount: must be greater than 0, got {amount}"
