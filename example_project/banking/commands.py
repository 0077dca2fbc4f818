"""The banking module's commands, validated with Orchestrix's validation helpers.

A command checks its own fields as it is created (``__post_init__``), so an
invalid command never exists: :func:`~example_project.common.commands.build_command`
turns the failures into one ``ValidationError`` naming every bad field, and
the API answers 400 with them. Rules that need the stored state (is there
money enough?) are the aggregates' business, checked when the command runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from example_project.common.validation import FieldErrors, validate_cents
from orchestrix.core.common.validation import (
    validate_in_range,
    validate_max_length,
    validate_min_length,
    validate_non_negative,
    validate_not_empty,
    validate_one_of,
    validate_positive,
)
from orchestrix.core.messaging.message import Command

__all__ = [
    "CURRENCIES",
    "MAX_AMOUNT",
    "CloseAccount",
    "DepositMoney",
    "FreezeAccount",
    "OpenAccount",
    "TransferMoney",
    "WithdrawMoney",
    "new_account_id",
    "new_transfer_id",
]

#: The currencies accounts can be held in.
CURRENCIES = ("EUR", "USD", "GBP", "CHF")
#: The largest amount one command may move (larger ones go through another desk).
MAX_AMOUNT = Decimal("1000000.00")


def new_account_id() -> str:
    """A fresh account id, ``ACC-`` and ten hex digits."""
    return f"ACC-{uuid.uuid4().hex[:10].upper()}"


def new_transfer_id() -> str:
    """A fresh transfer id, ``TRF-`` and twelve hex digits."""
    return f"TRF-{uuid.uuid4().hex[:12].upper()}"


def _check_id(errors: FieldErrors, value: str, name: str) -> None:
    errors.check(validate_not_empty, value, name)
    errors.check(validate_max_length, value, 64, name)


def _check_money(errors: FieldErrors, amount: Decimal, currency: str, name: str) -> None:
    errors.check(validate_positive, amount, name)
    errors.check(validate_cents, amount, name)
    errors.check(validate_in_range, amount, Decimal("0.01"), MAX_AMOUNT, name)
    errors.check(validate_one_of, currency, CURRENCIES, "currency")


@dataclass(frozen=True, kw_only=True)
class OpenAccount(Command):
    """Open an account for ``owner``, optionally with a first deposit."""

    account_id: str = field(default_factory=new_account_id)
    owner: str
    currency: str
    initial_deposit: Decimal = Decimal("0.00")

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_id(errors, self.account_id, "account_id")
        errors.check(validate_not_empty, self.owner, "owner")
        errors.check(validate_min_length, self.owner, 2, "owner")
        errors.check(validate_max_length, self.owner, 100, "owner")
        errors.check(validate_one_of, self.currency, CURRENCIES, "currency")
        errors.check(validate_non_negative, self.initial_deposit, "initial_deposit")
        errors.check(validate_cents, self.initial_deposit, "initial_deposit")
        errors.check(validate_in_range, self.initial_deposit, 0, MAX_AMOUNT, "initial_deposit")
        errors.raise_if_any()


@dataclass(frozen=True, kw_only=True)
class DepositMoney(Command):
    """Put money into an account."""

    account_id: str
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_id(errors, self.account_id, "account_id")
        _check_money(errors, self.amount, self.currency, "amount")
        errors.raise_if_any()


@dataclass(frozen=True, kw_only=True)
class WithdrawMoney(Command):
    """Take money out of an account."""

    account_id: str
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_id(errors, self.account_id, "account_id")
        _check_money(errors, self.amount, self.currency, "amount")
        errors.raise_if_any()


@dataclass(frozen=True, kw_only=True)
class FreezeAccount(Command):
    """Stop all movements of money on an account, saying why."""

    account_id: str
    reason: str

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_id(errors, self.account_id, "account_id")
        errors.check(validate_not_empty, self.reason, "reason")
        errors.check(validate_min_length, self.reason, 3, "reason")
        errors.check(validate_max_length, self.reason, 200, "reason")
        errors.raise_if_any()


@dataclass(frozen=True, kw_only=True)
class CloseAccount(Command):
    """Close an account whose balance is zero."""

    account_id: str

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_id(errors, self.account_id, "account_id")
        errors.raise_if_any()


@dataclass(frozen=True, kw_only=True)
class TransferMoney(Command):
    """Move money from one account to another (the ``money-transfer`` saga does it)."""

    transfer_id: str = field(default_factory=new_transfer_id)
    source_id: str
    target_id: str
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_id(errors, self.transfer_id, "transfer_id")
        _check_id(errors, self.source_id, "source_id")
        _check_id(errors, self.target_id, "target_id")
        _check_money(errors, self.amount, self.currency, "amount")
        if not errors.failed("target_id") and self.target_id == self.source_id:
            errors.add("target_id", "must differ from source_id")
        errors.raise_if_any()
