"""The banking projections: account balances with their ledger, and transfers.

Each handler runs in the runner's transaction together with the new
checkpoint, so a crash can neither skip nor repeat an event; the handlers
therefore simply apply each event once, with no "have I seen this?" checks.
Deposits arrive in their current shape (schema version 2) even when they
were stored as version 1: the store upcasts them before the projection sees
them.
"""

from __future__ import annotations

from decimal import Decimal

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
from example_project.banking.models import AccountSummary, LedgerEntry, TransferSummary
from orchestrix.core.messaging.message import Event
from orchestrix_django.projections import DjangoProjection

__all__ = ["accounts", "transfers"]

#: Balances, statuses and the ledger of every account.
accounts = DjangoProjection("banking-accounts")


@accounts.on(AccountOpened)
def account_opened(event: AccountOpened) -> None:
    """A new row, with a zero balance."""
    AccountSummary.objects.create(
        account_id=event.account_id,
        owner=event.owner,
        currency=event.currency,
        version=1,
        opened_at=event.timestamp,
        updated_at=event.timestamp,
    )


def _move(event: Event, account_id: str, amount: Decimal, kind: str, reference: str) -> None:
    summary = AccountSummary.objects.select_for_update().get(pk=account_id)
    summary.balance += amount if kind == "deposit" else -amount
    if kind == "deposit":
        summary.deposits += 1
    else:
        summary.withdrawals += 1
    summary.version += 1
    summary.updated_at = event.timestamp
    summary.save()
    LedgerEntry.objects.create(
        event_id=event.id,
        account=summary,
        kind=kind,
        amount=amount,
        balance_after=summary.balance,
        reference=reference,
        timestamp=event.timestamp,
    )


@accounts.on(MoneyDeposited)
def money_deposited(event: MoneyDeposited) -> None:
    """Balance up, one ledger line."""
    _move(event, event.account_id, event.amount, "deposit", event.reference)


@accounts.on(MoneyWithdrawn)
def money_withdrawn(event: MoneyWithdrawn) -> None:
    """Balance down, one ledger line."""
    _move(event, event.account_id, event.amount, "withdrawal", event.reference)


def _set_status(event: Event, account_id: str, status: str) -> None:
    summary = AccountSummary.objects.select_for_update().get(pk=account_id)
    summary.status = status
    summary.version += 1
    summary.updated_at = event.timestamp
    summary.save(update_fields=["status", "version", "updated_at"])


@accounts.on(AccountFrozen)
def account_frozen(event: AccountFrozen) -> None:
    """Status frozen."""
    _set_status(event, event.account_id, "frozen")


@accounts.on(AccountClosed)
def account_closed(event: AccountClosed) -> None:
    """Status closed."""
    _set_status(event, event.account_id, "closed")


@accounts.on_reset
def clear_accounts() -> None:
    """Empty the tables before a replay."""
    LedgerEntry.objects.all().delete()
    AccountSummary.objects.all().delete()


#: Every transfer and how it ended.
transfers = DjangoProjection("banking-transfers")


@transfers.on(TransferRequested)
def transfer_requested(event: TransferRequested) -> None:
    """A new row, status requested."""
    TransferSummary.objects.create(
        transfer_id=event.transfer_id,
        source_id=event.source_id,
        target_id=event.target_id,
        amount=event.amount,
        currency=event.currency,
        requested_at=event.timestamp,
    )


@transfers.on(TransferCompleted)
def transfer_completed(event: TransferCompleted) -> None:
    """Status completed."""
    TransferSummary.objects.filter(pk=event.transfer_id).update(
        status="completed", finished_at=event.timestamp
    )


@transfers.on(TransferFailed)
def transfer_failed(event: TransferFailed) -> None:
    """Status failed, with the reason."""
    TransferSummary.objects.filter(pk=event.transfer_id).update(
        status="failed", reason=event.reason, finished_at=event.timestamp
    )


@transfers.on_reset
def clear_transfers() -> None:
    """Empty the table before a replay."""
    TransferSummary.objects.all().delete()
