"""The projections the catch-up and memory workloads run.

* ``noop``: a sync handler that does nothing (the runner's own cost).
* ``upsert``: a typical read-model handler, one row per account updated with
  ``F()`` expressions, or created.
* ``checked``: feeds :data:`CHECKER`, which proves that every committed event
  is seen once and each stream's events in version order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import F

from benchmarks.benchapp.events import Deposited
from benchmarks.benchapp.models import Balance
from orchestrix_django.projections import DjangoProjection

__all__ = ["CHECKER", "Checker", "checked", "noop", "upsert"]

noop = DjangoProjection("bench-noop")
upsert = DjangoProjection("bench-upsert")
checked = DjangoProjection("bench-checked")


@noop.on(Deposited)
def ignore(event: Deposited) -> None:
    """Do nothing: what is measured is the runner."""


@upsert.on(Deposited)
def add_to_balance(event: Deposited) -> None:
    """Add the deposit to the account's balance row (created on its first event)."""
    updated = Balance.objects.filter(account_id=event.account_id).update(
        balance=F("balance") + event.amount, events=F("events") + 1
    )
    if not updated:
        Balance.objects.create(account_id=event.account_id, balance=event.amount, events=1)


@upsert.on_reset
def clear_balances() -> None:
    """Empty the read model on reset."""
    Balance.objects.all().delete()


@dataclass
class Checker:
    """Follows each stream's last seen ``seq``: a repeat is a duplicate, a jump a loss.

    (Memory grows with the number of streams, not of events.)
    """

    last_seq: dict[str, int] = field(default_factory=dict)
    seen: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    gaps: int = 0

    def see(self, event: Deposited) -> None:
        """Check one event against its stream's previous one."""
        self.seen += 1
        last = self.last_seq.get(event.account_id, 0)
        if event.seq == last + 1:
            self.last_seq[event.account_id] = event.seq
        elif event.seq <= last:
            self.duplicated += 1
        else:
            self.gaps += event.seq - last - 1
            self.out_of_order += 1
            self.last_seq[event.account_id] = event.seq


CHECKER = Checker()


@checked.on(Deposited)
def check(event: Deposited) -> None:
    """Record the event in :data:`CHECKER`."""
    CHECKER.see(event)


@checked.on_reset
def clear_checker() -> None:
    """Start the checker afresh with the projection."""
    CHECKER.last_seq.clear()
    CHECKER.seen = CHECKER.duplicated = CHECKER.out_of_order = CHECKER.gaps = 0
