"""The banking module: its command handlers and event subscribers, wired to the message bus.

``ORCHESTRIX["MODULES"]`` lists :class:`BankingModule`; Orchestrix calls its
``register(bus, store)`` once at start-up (the core ``Module`` protocol)
with the process-wide Django message bus and a ``DjangoEventStore``.
Commands then reach :class:`AccountCommands` through
:func:`example_project.common.commands.execute`, and committed events reach
the subscribers below.
"""

from __future__ import annotations

import logging

from django.db import transaction

from example_project.banking.aggregates import Account, Transfer, repository
from example_project.banking.commands import (
    CloseAccount,
    DepositMoney,
    FreezeAccount,
    OpenAccount,
    TransferMoney,
    WithdrawMoney,
)
from example_project.banking.events import AccountFrozen
from example_project.banking.sagas import transfer_saga
from example_project.common.aggregates import update
from example_project.common.commands import CommandRejected
from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix.core.messaging.message_bus import MessageBus

__all__ = ["AccountCommands", "BankingModule", "notify_compliance"]

logger = logging.getLogger("example_project.banking")


class AccountCommands:
    """Handles the banking commands: load the aggregate, call its method, save it.

    Each method is a command handler in the sense of the core's
    ``CommandHandler`` protocol (one command in, events stored); they share
    the repository, which snapshots accounts every ``SNAPSHOT_EVERY`` events.
    """

    def __init__(self, bus: MessageBus, store: EventStore) -> None:
        self.bus = bus
        self.repo = repository(store)

    def open_account(self, command: OpenAccount) -> None:
        """Open the account, with its first deposit if there is one."""
        account = Account(aggregate_id=command.account_id)
        account.open(command.owner, command.currency)
        if command.initial_deposit:
            account.deposit(command.initial_deposit, command.currency, "initial deposit")
        try:
            self.repo.save(account)  # expected version 0: the id must be new
        except ConcurrencyError:
            raise CommandRejected(
                f"account {command.account_id} exists already", "account_id"
            ) from None

    def deposit(self, command: DepositMoney) -> None:
        """Put the money in."""
        update(
            self.repo,
            Account,
            command.account_id,
            lambda account: account.deposit(command.amount, command.currency, "deposit"),
        )

    def withdraw(self, command: WithdrawMoney) -> None:
        """Take the money out (InsufficientFunds when the balance does not cover it)."""
        update(
            self.repo,
            Account,
            command.account_id,
            lambda account: account.withdraw(command.amount, command.currency, "withdrawal"),
        )

    def freeze(self, command: FreezeAccount) -> None:
        """Freeze the account."""
        update(self.repo, Account, command.account_id, lambda a: a.freeze(command.reason))

    def close(self, command: CloseAccount) -> None:
        """Close the account (its balance must be zero)."""
        update(self.repo, Account, command.account_id, lambda account: account.close())

    def transfer(self, command: TransferMoney) -> None:
        """Record the transfer and start its saga, in one transaction.

        Both accounts must exist and hold the command's currency; whether
        the money can move is for the saga to find out (the target's bank
        would not tell the sender's that the target is frozen).
        """
        for account_id in (command.source_id, command.target_id):
            account: Account = self.repo.load(Account, account_id)  # 404 when missing
            if account.currency != command.currency:
                raise CommandRejected(
                    f"account {account_id} holds {account.currency}, not {command.currency}",
                    "currency",
                )
        transfer = Transfer(aggregate_id=command.transfer_id)
        transfer.request(command.source_id, command.target_id, command.amount, command.currency)
        # The saga is stored with the transfer or not at all; it is handed to a
        # runner (a Celery task, or orchestrix_run's next poll) after the commit.
        with transaction.atomic():
            try:
                self.repo.save(transfer)
            except ConcurrencyError:
                raise CommandRejected(
                    f"transfer {command.transfer_id} exists already", "transfer_id"
                ) from None
            transfer_saga.start(
                saga_id=command.transfer_id,
                caused_by=command,
                transfer_id=command.transfer_id,
                source_id=command.source_id,
                target_id=command.target_id,
                amount=command.amount,
                currency=command.currency,
            )


def notify_compliance(event: AccountFrozen) -> None:
    """An in-process subscriber: runs after the freeze committed (here it only logs).

    A failure here would be logged and parked as a dead letter by the bus,
    never undo the freeze.
    """
    logger.info("account %s frozen (%s): compliance notified", event.account_id, event.reason)


class BankingModule:
    """The banking module (the core ``Module`` protocol): subscribes its handlers."""

    def register(self, bus: MessageBus, store: EventStore) -> None:
        """One handler per command; the compliance notice for frozen accounts."""
        commands = AccountCommands(bus, store)
        bus.subscribe(OpenAccount, commands.open_account)
        bus.subscribe(DepositMoney, commands.deposit)
        bus.subscribe(WithdrawMoney, commands.withdraw)
        bus.subscribe(FreezeAccount, commands.freeze)
        bus.subscribe(CloseAccount, commands.close)
        bus.subscribe(TransferMoney, commands.transfer)
        bus.subscribe(AccountFrozen, notify_compliance)
