"""2. Concurrent writers: 1 / 4 / 16 processes, each appending to its own streams.

Orchestrix runs with its gap-safety mechanism on (the append lock: an
advisory transaction lock on PostgreSQL, the lock row / SQLite's write lock
elsewhere). Baselines: raw ``executemany`` inserts without a lock (the
ceiling: nothing serialises the writers but the database) and with
``LOCK TABLE … IN EXCLUSIVE MODE`` (``BEGIN IMMEDIATE`` on SQLite), and the
peers, whose recorders lock the table. Events are built inside the timed
loop, the same way for everyone. Events/s counts what all processes
committed between the common start and the last one's end.
"""

from __future__ import annotations

from benchmarks.context import Context
from benchmarks.report import Target, WorkloadResult
from benchmarks.workers import concurrent_job
from benchmarks.workloads.common import ES, ES_DJANGO, ORCHESTRIX, RAW, RAW_LOCKED

__all__ = ["run"]


def run(ctx: Context) -> WorkloadResult:
    """Measure events/s per number of writer processes for each contender."""
    size = ctx.size
    result = WorkloadResult("2", "Concurrent writers on separate streams (events/s)")
    contenders = [ORCHESTRIX, RAW, RAW_LOCKED] + [p for p in (ES, ES_DJANGO) if ctx.peer_ok(p)]
    per_save = size.writer_events_per_save
    for writers in size.writer_counts:
        point = f"{writers} writer process{'es' if writers > 1 else ''}"
        for index, contender in enumerate(contenders):
            tag = f"c{writers}-{index}"
            arguments = [(contender, w, tag, per_save) for w in range(writers)]
            timed = ctx.timed(concurrent_job, arguments, size.writer_seconds)
            result.add(
                point,
                contender,
                timed.events / timed.seconds,
                "events/s",
                x=writers,
                saves=sum(r.saves for r in timed.results),
                seconds=round(timed.seconds, 2),
            )
    result.notes.append(
        f"{per_save} events per save, events built in the timed loop; "
        f"{size.writer_seconds:g} s per run; the writers and the database server "
        "share the machine's cores"
    )
    top = f"{max(size.writer_counts)} writer processes"
    result.targets.append(
        Target(f"{top} vs eventsourcing (table lock)", result.ratio(top, ES), 1.5)
    )
    return result
