"""The peers' domain model: imported only when ``eventsourcing`` is installed."""

from __future__ import annotations

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

__all__ = ["EsAccount", "EsBench"]


class EsAccount(Aggregate):
    """The ``eventsourcing`` twin of :class:`benchmarks.benchapp.aggregates.Account`."""

    def __init__(self) -> None:
        self.balance = 0
        self.deposits = 0

    @event("Deposited")
    def deposit(self, amount: int, seq: int) -> None:
        """Pay ``amount`` in."""
        self.balance += amount
        self.deposits += 1


class EsBench(Application):  # type: ignore[type-arg]
    """The peer application: tables ``esbench_events`` and ``esbench_snapshots``."""
