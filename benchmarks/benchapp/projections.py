"""The projections the catch-up, memory and Celery workloads run.

* ``noop``: a sync handler that does nothing (the runner's own cost).
* ``upsert``: a typical read-model handler, one row per account updated with
  ``F()`` expressions, or created.
* ``checked``: feeds :data:`CHECKER`, which proves that every committed event
  is seen once and each stream's events in version order.
* ``visible``: notes when each event of the Celery workload's writers became
  visible, that is when the runner's batch that applied it committed
  (:data:`VISIBLE`, which the Celery worker publishes to Redis after each
  task: see ``benchmarks/celery_app.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial

from django.db import transaction
from django.db.models import F

from benchmarks.benchapp.events import Deposited
from benchmarks.benchapp.models import Balance
from orchestrix_django.projections import DjangoProjection

__all__ = [
    "CHECKER",
    "VISIBLE",
    "VISIBLE_ID",
    "VISIBLE_PREFIX",
    "Checker",
    "checked",
    "noop",
    "upsert",
    "visible",
]

noop = DjangoProjection("bench-noop")
upsert = DjangoProjection("bench-upsert")
checked = DjangoProjection("bench-checked")

#: The id of :data:`visible`, the only projection of the Celery workload's processes.
VISIBLE_ID = "bench-visible"
visible = DjangoProjection(VISIBLE_ID)

#: The streams whose events' visibility is noted: the Celery workload's writers'.
VISIBLE_PREFIX = "visible-"
#: ``(event id, time.time())`` of each noted event, in the order the batches committed.
VISIBLE: list[tuple[str, float]] = []


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


def _note_visible(event_id: str) -> None:
    VISIBLE.append((event_id, time.time()))


@visible.on(Deposited)
def note_visible(event: Deposited) -> None:
    """Note when the event's batch commits (the read model's readers see it from then).

    Only the latency writers' events are noted: the catch-up comparison runs
    this projection over a log seeded in bulk, where all it costs per event
    is this prefix test, the same in the worker and in-process. The time is
    taken in ``on_commit`` (called right after the runner's batch commits,
    never for a batch rolled back) and kept in memory: writing it to Redis
    here would put a round trip per event into the very path measured.
    """
    if event.account_id.startswith(VISIBLE_PREFIX):
        transaction.on_commit(partial(_note_visible, event.id))
