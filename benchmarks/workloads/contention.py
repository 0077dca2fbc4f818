"""3. Contention: writers that load, decide and save with expected versions on a few hot streams.

Each process loops: pick one of the hot streams at random, rebuild the
aggregate from its events (no snapshots), apply one deposit, save with the
expected version. A lost race (``ConcurrencyError``, the peers'
``IntegrityError``, a unique violation for raw SQL) counts as a conflict and
the loop goes on. Reported: successful events/s and conflicts per success.
The raw baseline reads the stream's rows, folds the JSON and inserts the
next version in one transaction (on SQLite under ``BEGIN IMMEDIATE``, which
serialises it: it never conflicts there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks.benchapp.events import Deposited
from benchmarks.context import Context
from benchmarks.peers import make_peer
from benchmarks.raw import RawDb, raw_rows
from benchmarks.report import WorkloadResult
from benchmarks.workers import contention_job
from benchmarks.workloads.common import ES, ES_DJANGO, ORCHESTRIX, RAW

if TYPE_CHECKING:
    from orchestrix_django.storage.events import DjangoEventStore

__all__ = ["run"]


def run(ctx: Context) -> WorkloadResult:
    """Measure successful events/s and conflicts per success on hot streams."""
    from orchestrix_django.storage.events import DjangoEventStore

    size = ctx.size
    result = WorkloadResult("3", "Contention on hot streams (successful events/s)")
    contenders = [ORCHESTRIX, RAW] + [p for p in (ES, ES_DJANGO) if ctx.peer_ok(p)]
    store = DjangoEventStore()
    raw = RawDb(ctx.config)
    try:
        for writers in size.contention_writers:
            point = f"{writers} writers, {size.contention_streams} hot streams"
            for contender in contenders:
                streams = _seed(ctx, contender, f"hot{writers}", store, raw)
                arguments = [(contender, w, streams) for w in range(writers)]
                timed = ctx.timed(contention_job, arguments, size.contention_seconds)
                successes = timed.events
                result.add(
                    point,
                    contender,
                    successes / timed.seconds,
                    "events/s",
                    conflicts_per_success=round(timed.conflicts / max(successes, 1), 3),
                    conflicts=timed.conflicts,
                    successes=successes,
                )
    finally:
        raw.close()
    result.notes.append(
        "events/s counts successful saves (one event each); conflicts_per_success is "
        "lost races per successful save; streams grow during the run (no snapshots)"
    )
    return result


def _seed(ctx: Context, contender: str, tag: str, store: DjangoEventStore, raw: RawDb) -> list[str]:
    """Create the hot streams with one event each; their ids."""
    count = ctx.size.contention_streams
    if contender == ORCHESTRIX:
        streams = [f"{tag}-s{k}" for k in range(count)]
        for stream in streams:
            store.save(stream, [Deposited(account_id=stream, amount=1, seq=1)], expected_version=0)
        return streams
    if contender == RAW:
        streams = [f"raw-{tag}-s{k}" for k in range(count)]
        for stream in streams:
            raw.insert(raw_rows(stream, 1, 1), lock=False)
        return streams
    peer = make_peer(ctx.config, contender)
    try:
        ids = []
        for _ in range(count):
            account = peer.new_account()
            peer.save(account)
            ids.append(str(account.id))
        return ids
    finally:
        peer.close()
