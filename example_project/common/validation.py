"""Collecting field errors from Orchestrix's validators.

Each validator of :mod:`orchestrix.core.common.validation` raises at the
first problem. A form or an API wants every bad field at once, so commands
run their checks through :class:`FieldErrors`, which keeps each field's first
error and raises one :class:`ValidationError` carrying all of them
(``error.errors`` maps field names to messages: what the API returns)::

    def __post_init__(self) -> None:
        errors = FieldErrors()
        errors.check(validate_not_empty, self.owner, "owner")
        errors.check(validate_max_length, self.owner, 100, "owner")
        errors.check(validate_one_of, self.currency, CURRENCIES, "currency")
        errors.raise_if_any()
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from orchestrix.core.common.validation import ValidationError

__all__ = ["FieldErrors", "validate_cents"]


class FieldErrors:
    """The field errors of one command, collected from the validators it runs."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def check(self, validator: Callable[..., None], *args: Any) -> None:
        """Run ``validator(*args)`` (its last argument names the field), keeping its error.

        A field that already failed is not checked again: "must not be
        empty" says enough, "must be at least 3 characters long" would add
        nothing.
        """
        field = str(args[-1])
        if field in self.errors:
            return
        try:
            validator(*args)
        except ValidationError as error:
            for name, messages in error.errors.items():
                self.errors.setdefault(name, []).extend(messages)

    def add(self, field: str, message: str) -> None:
        """Record an error found by the command's own rules (several fields at once, say)."""
        self.errors.setdefault(field, []).append(message)

    def failed(self, field: str) -> bool:
        """Whether ``field`` has an error already (later checks that need it skip)."""
        return field in self.errors

    def raise_if_any(self) -> None:
        """Raise one ValidationError with every field's messages, if any field failed."""
        if self.errors:
            raise ValidationError.from_errors(self.errors)


def validate_cents(value: Decimal, field: str) -> None:
    """Require an amount with at most two decimal places (money in cents).

    A validator in the style of Orchestrix's own: it raises ValidationError
    naming the field.
    """
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationError(f"must be a decimal number, got {value!r}", field)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise ValidationError(f"must have at most 2 decimal places, got {value}", field)
