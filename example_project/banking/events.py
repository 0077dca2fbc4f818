"""The banking module's events: what happened to accounts and transfers.

``MoneyDeposited`` changed shape: the first release stored whole cents
(``amount_cents``) and knew only euros. Its stored events keep that shape
(schema version 1, :class:`MoneyDepositedV1`); the current class is schema
version 2 with a ``Decimal`` amount and a currency, and
:mod:`example_project.banking.upcasters` turns old events into new ones on
every read. Code that handles deposits only ever sees version 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from orchestrix.core.messaging.message import Event

__all__ = [
    "AccountClosed",
    "AccountFrozen",
    "AccountOpened",
    "MoneyDeposited",
    "MoneyDepositedV1",
    "MoneyWithdrawn",
    "TransferCompleted",
    "TransferFailed",
    "TransferRequested",
]

# -- accounts (one stream per account: its id, "ACC-…")


@dataclass(frozen=True, kw_only=True)
class AccountOpened(Event):
    """An account was opened for ``owner``, in ``currency``."""

    account_id: str
    owner: str
    currency: str


@dataclass(frozen=True, kw_only=True)
class MoneyDepositedV1(Event):
    """How the first release stored deposits: whole cents, euros implied. Never written now."""

    type: str = "MoneyDeposited"
    schema_version: ClassVar[int] = 1
    account_id: str
    amount_cents: int


@dataclass(frozen=True, kw_only=True)
class MoneyDeposited(Event):
    """Money came into the account (a deposit, a transfer in, a refund: see ``reference``)."""

    type: str = "MoneyDeposited"
    schema_version: ClassVar[int] = 2
    account_id: str
    amount: Decimal
    currency: str
    reference: str = ""


@dataclass(frozen=True, kw_only=True)
class MoneyWithdrawn(Event):
    """Money left the account (a withdrawal, a transfer out, an order's payment)."""

    account_id: str
    amount: Decimal
    currency: str
    reference: str = ""


@dataclass(frozen=True, kw_only=True)
class AccountFrozen(Event):
    """No money moves in or out any more (compliance, a lost card, …)."""

    account_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AccountClosed(Event):
    """The account was closed (its balance was zero)."""

    account_id: str


# -- transfers (one stream per transfer: its id, "TRF-…"); the money moves on the accounts


@dataclass(frozen=True, kw_only=True)
class TransferRequested(Event):
    """A transfer was asked for; the ``money-transfer`` saga carries it out."""

    transfer_id: str
    source_id: str
    target_id: str
    amount: Decimal
    currency: str


@dataclass(frozen=True, kw_only=True)
class TransferCompleted(Event):
    """The money left the source and reached the target."""

    transfer_id: str


@dataclass(frozen=True, kw_only=True)
class TransferFailed(Event):
    """The transfer did not happen; any money taken from the source was refunded."""

    transfer_id: str
    reason: str
