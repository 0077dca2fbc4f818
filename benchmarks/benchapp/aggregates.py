"""The aggregate the load and contention workloads rebuild."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.benchapp.events import Deposited
from orchestrix.core.eventsourcing.aggregate import AggregateRoot

__all__ = ["Account"]


@dataclass
class Account(AggregateRoot):
    """A bank account: a balance folded from deposits."""

    balance: int = 0
    deposits: int = 0

    def deposit(self, amount: int) -> None:
        """Decide: pay ``amount`` in (one new event)."""
        self._apply_event(
            Deposited(account_id=self.aggregate_id, amount=amount, seq=self.version + 1)
        )

    def _when_deposited(self, event: Deposited) -> None:
        self.balance += event.amount
        self.deposits += 1
