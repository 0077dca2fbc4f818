"""Small validators for message and aggregate fields.

Each function checks one value and raises
:class:`~orchestrix.core.common.exceptions.ValidationError` (a ``ValueError``)
naming the field and saying what is wrong, e.g. ``amount: must be greater
than 0, got -1``. They are meant for ``__post_init__`` of commands and events::

    @dataclass(frozen=True, kw_only=True)
    class CreateOrder(Command):
        order_id: str
        amount: float

        def __post_init__(self) -> None:
            validate_not_empty(self.order_id, "order_id")
            validate_positive(self.amount, "amount")

Numbers may be ``int``, ``float`` or ``Decimal`` (any real number); ``bool``
is rejected although it is an ``int`` subclass, and so is NaN, which compares
false with everything and would otherwise slip through every bound.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from decimal import Decimal
from numbers import Real

from orchestrix.core.common.exceptions import ValidationError

__all__ = [
    "Number",
    "ValidationError",
    "validate_in_range",
    "validate_max_length",
    "validate_min_length",
    "validate_non_negative",
    "validate_not_empty",
    "validate_one_of",
    "validate_positive",
]

#: The numeric types the number validators accept.
Number = int | float | Decimal


def _check_number(value: object, field: str) -> None:
    """Reject anything that is not a real, non-NaN number."""
    if isinstance(value, bool) or not isinstance(value, Real | Decimal):
        raise ValidationError(f"must be a number, got {type(value).__name__}", field)
    is_nan = value.is_nan() if isinstance(value, Decimal) else math.isnan(value)
    if is_nan:
        raise ValidationError("must be a number, got NaN", field)


def _check_string(value: object, field: str) -> str:
    """Reject anything that is not a ``str``."""
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field)
    return value


def _check_length_bound(name: str, bound: int) -> None:
    """A negative or non-integer length bound is a programming error, not bad input."""
    if isinstance(bound, bool) or not isinstance(bound, int) or bound < 0:
        raise ValueError(f"{name} must be an int >= 0, got {bound!r}")


def _characters(count: int) -> str:
    return f"{count} character" + ("" if count == 1 else "s")


def validate_not_empty(value: str, field: str) -> None:
    """Require a string with at least one non-whitespace character.

    Raises:
        ValidationError: ``value`` is not a ``str``, is empty, or is only whitespace.
    """
    text = _check_string(value, field)
    if not text.strip():
        raise ValidationError("must not be empty", field)


def validate_positive(value: Number, field: str) -> None:
    """Require a number greater than 0.

    Raises:
        ValidationError: ``value`` is not a number (or is a bool or NaN), or is <= 0.
    """
    _check_number(value, field)
    if not value > 0:
        raise ValidationError(f"must be greater than 0, got {value}", field)


def validate_non_negative(value: Number, field: str) -> None:
    """Require a number greater than or equal to 0.

    Raises:
        ValidationError: ``value`` is not a number (or is a bool or NaN), or is < 0.
    """
    _check_number(value, field)
    if value < 0:
        raise ValidationError(f"must be greater than or equal to 0, got {value}", field)


def validate_min_length(value: str, min_length: int, field: str) -> None:
    """Require a string of at least ``min_length`` characters.

    Raises:
        ValidationError: ``value`` is not a ``str`` or is shorter than ``min_length``.
        ValueError: ``min_length`` is not an int >= 0 (a bug in the caller).
    """
    _check_length_bound("min_length", min_length)
    text = _check_string(value, field)
    if len(text) < min_length:
        raise ValidationError(
            f"must be at least {_characters(min_length)} long, got {len(text)}", field
        )


def validate_max_length(value: str, max_length: int, field: str) -> None:
    """Require a string of at most ``max_length`` characters.

    Raises:
        ValidationError: ``value`` is not a ``str`` or is longer than ``max_length``.
        ValueError: ``max_length`` is not an int >= 0 (a bug in the caller).
    """
    _check_length_bound("max_length", max_length)
    text = _check_string(value, field)
    if len(text) > max_length:
        raise ValidationError(
            f"must be at most {_characters(max_length)} long, got {len(text)}", field
        )


def validate_in_range(value: Number, min_value: Number, max_value: Number, field: str) -> None:
    """Require ``min_value <= value <= max_value`` (both bounds inclusive).

    Raises:
        ValidationError: ``value`` is not a number (or is a bool or NaN), or is
            outside the range.
        ValueError: the bounds are not numbers or ``min_value > max_value``
            (a bug in the caller).
    """
    for name, bound in (("min_value", min_value), ("max_value", max_value)):
        try:
            _check_number(bound, name)
        except ValidationError:
            raise ValueError(f"{name} must be a number, got {bound!r}") from None
    if min_value > max_value:
        raise ValueError(f"min_value ({min_value}) must not exceed max_value ({max_value})")
    _check_number(value, field)
    if not min_value <= value <= max_value:
        raise ValidationError(f"must be between {min_value} and {max_value}, got {value}", field)


def validate_one_of(value: object, allowed_values: Collection[object], field: str) -> None:
    """Require ``value`` to equal one of ``allowed_values`` (compared with ``in``).

    ``allowed_values`` is usually a list or tuple; any collection (a set, the
    members of an ``Enum``) works. A bare string is refused because ``in``
    would test for substrings.

    Raises:
        ValidationError: ``value`` is not among ``allowed_values``.
        TypeError: ``allowed_values`` is a ``str`` or ``bytes`` (a bug in the caller).
    """
    if isinstance(allowed_values, str | bytes):
        raise TypeError(
            "allowed_values must be a collection of values, not a string; "
            f"did you mean [{allowed_values!r}]?"
        )
    if value not in allowed_values:
        shown = ", ".join(repr(allowed) for allowed in allowed_values)
        raise ValidationError(f"must be one of [{shown}], got {value!r}", field)
