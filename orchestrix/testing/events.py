"""Event classes used by the contract suites.

They live at module level so that every store (including ones that serialise
events and decode them through the event registry) can store and rebuild
them. Their names are prefixed so they never clash with an application's.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from orchestrix.core.messaging.message import Event

__all__ = ["ContractAccountKind", "ContractAccountOpened", "ContractDeposited", "ContractNote"]


class ContractAccountKind(enum.Enum):
    """An enum field, to prove enums round-trip."""

    CHECKING = "checking"
    SAVINGS = "savings"


@dataclass(frozen=True)
class ContractNote:
    """A nested value object."""

    text: str
    written_on: date


@dataclass(frozen=True, kw_only=True)
class ContractAccountOpened(Event):
    """An event carrying many field types."""

    account_id: str
    owner: str
    kind: ContractAccountKind = ContractAccountKind.CHECKING
    opened_at: datetime | None = None
    reference: uuid.UUID | None = None
    notes: list[ContractNote] = field(default_factory=list)
    limits: dict[str, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ContractDeposited(Event):
    """A simple event appended many times."""

    account_id: str
    amount: Decimal
    sequence: int = 0
