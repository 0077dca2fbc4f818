"""The banking aggregates: accounts and transfers, and the repository that keeps them.

Accounts are the long-lived aggregates of the example: a busy account
collects thousands of events over the years, so the repository stores a
snapshot every :data:`SNAPSHOT_EVERY` events and loads an account from its
latest snapshot plus the events after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from example_project.banking.events import (
    AccountClosed,
    AccountFrozen,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCompleted,
    TransferFailed,
    TransferRequested,
)
from example_project.common.commands import CommandRejected
from example_project.common.idempotency import new_event_id
from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot
from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix_django.storage import DjangoEventStore

__all__ = [
    "SNAPSHOT_EVERY",
    "Account",
    "AccountNotOpen",
    "InsufficientFunds",
    "Transfer",
    "repository",
]

#: An account's snapshot is refreshed every this many events.
SNAPSHOT_EVERY = 20


class InsufficientFunds(CommandRejected):
    """A withdrawal larger than the balance."""


class AccountNotOpen(CommandRejected):
    """Money cannot move in or out of a frozen or closed account."""


def repository(store: EventStore | None = None) -> AggregateRepository[Any]:
    """The repository of the banking aggregates (snapshots every SNAPSHOT_EVERY events)."""
    return AggregateRepository(
        event_store=store if store is not None else DjangoEventStore(),
        snapshot_every=SNAPSHOT_EVERY,
    )


@dataclass
class Account(AggregateRoot):
    """A bank account: a balance in one currency, open, frozen or closed."""

    owner: str = ""
    currency: str = ""
    balance: Decimal = Decimal("0.00")
    status: str = "new"

    # -- commands: check the rules, then apply an event

    def open(self, owner: str, currency: str) -> None:
        """Open the (new) account."""
        if self.status != "new":
            raise CommandRejected(f"account {self.aggregate_id} exists already", "account_id")
        self._apply_event(
            AccountOpened(account_id=self.aggregate_id, owner=owner, currency=currency)
        )

    def deposit(
        self, amount: Decimal, currency: str, reference: str = "", *, event_id: str | None = None
    ) -> None:
        """Put ``amount`` in; ``event_id`` makes a saga step's deposit recognisable."""
        self._require_open("deposit into")
        self._require_currency(currency)
        self._apply_event(
            MoneyDeposited(
                id=new_event_id(event_id),
                account_id=self.aggregate_id,
                amount=amount,
                currency=currency,
                reference=reference,
            )
        )

    def withdraw(
        self, amount: Decimal, currency: str, reference: str = "", *, event_id: str | None = None
    ) -> None:
        """Take ``amount`` out, if the balance covers it."""
        self._require_open("withdraw from")
        self._require_currency(currency)
        if amount > self.balance:
            raise InsufficientFunds(
                f"account {self.aggregate_id} has {self.balance} {self.currency}, "
                f"{amount} {currency} was asked for",
                "amount",
            )
        self._apply_event(
            MoneyWithdrawn(
                id=new_event_id(event_id),
                account_id=self.aggregate_id,
                amount=amount,
                currency=currency,
                reference=reference,
            )
        )

    def refund(
        self, amount: Decimal, currency: str, reference: str, *, event_id: str | None = None
    ) -> None:
        """Give back money this account paid: also to a frozen account, never to a closed one.

        (A refund returns the customer's own money; freezing stops new
        movements, not the undoing of old ones.)
        """
        if self.status == "closed":
            raise AccountNotOpen(f"cannot refund account {self.aggregate_id}: it is closed")
        self._require_currency(currency)
        self._apply_event(
            MoneyDeposited(
                id=new_event_id(event_id),
                account_id=self.aggregate_id,
                amount=amount,
                currency=currency,
                reference=reference,
            )
        )

    def freeze(self, reason: str) -> None:
        """Stop all movements of money."""
        self._require_open("freeze")
        self._apply_event(AccountFrozen(account_id=self.aggregate_id, reason=reason))

    def close(self) -> None:
        """Close the account; its balance must be zero (withdraw or transfer it first)."""
        if self.status == "closed":
            raise AccountNotOpen(f"account {self.aggregate_id} is closed already")
        if self.balance:
            raise CommandRejected(
                f"account {self.aggregate_id} still holds {self.balance} {self.currency}"
            )
        self._apply_event(AccountClosed(account_id=self.aggregate_id))

    def _require_open(self, action: str) -> None:
        if self.status != "open":
            raise AccountNotOpen(
                f"cannot {action} account {self.aggregate_id}: it is {self.status}"
            )

    def _require_currency(self, currency: str) -> None:
        if currency != self.currency:
            raise CommandRejected(
                f"account {self.aggregate_id} holds {self.currency}, not {currency}", "currency"
            )

    # -- state changes: one method per event type, no rules (history is history)

    def _when_account_opened(self, event: AccountOpened) -> None:
        self.owner = event.owner
        self.currency = event.currency
        self.status = "open"

    def _when_money_deposited(self, event: MoneyDeposited) -> None:
        # Always version 2 here: version 1 events are upcast when they are read.
        self.balance += event.amount

    def _when_money_withdrawn(self, event: MoneyWithdrawn) -> None:
        self.balance -= event.amount

    def _when_account_frozen(self, event: AccountFrozen) -> None:
        self.status = "frozen"

    def _when_account_closed(self, event: AccountClosed) -> None:
        self.status = "closed"


@dataclass
class Transfer(AggregateRoot):
    """A transfer of money between two accounts, as the ``money-transfer`` saga moves it on."""

    source_id: str = ""
    target_id: str = ""
    amount: Decimal = Decimal("0.00")
    currency: str = ""
    status: str = "new"
    reason: str = ""

    def request(self, source_id: str, target_id: str, amount: Decimal, currency: str) -> None:
        """Record the request (the saga does the rest)."""
        if self.status != "new":
            raise CommandRejected(f"transfer {self.aggregate_id} exists already", "transfer_id")
        self._apply_event(
            TransferRequested(
                transfer_id=self.aggregate_id,
                source_id=source_id,
                target_id=target_id,
                amount=amount,
                currency=currency,
            )
        )

    def complete(self) -> None:
        """The money arrived (a second call changes nothing: saga steps may run twice)."""
        if self.status == "requested":
            self._apply_event(TransferCompleted(transfer_id=self.aggregate_id))

    def fail(self, reason: str) -> None:
        """The transfer did not happen (a second call changes nothing)."""
        if self.status == "requested":
            self._apply_event(TransferFailed(transfer_id=self.aggregate_id, reason=reason))

    def _when_transfer_requested(self, event: TransferRequested) -> None:
        self.source_id = event.source_id
        self.target_id = event.target_id
        self.amount = event.amount
        self.currency = event.currency
        self.status = "requested"

    def _when_transfer_completed(self, event: TransferCompleted) -> None:
        self.status = "completed"

    def _when_transfer_failed(self, event: TransferFailed) -> None:
        self.status = "failed"
        self.reason = event.reason
