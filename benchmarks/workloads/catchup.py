"""5. Projection catch-up over a large log, then while appends continue, with a checker.

The log is emptied and seeded in bulk (:mod:`benchmarks.seed`: 1M events in
the full size, 10 per stream). Measured over the whole log, in pages of the
projection's batch size (``PROJECTION_BATCH_SIZE``, 500):

* the raw keyset scan of ``orchestrix_event`` with JSON decoding (the ceiling);
* ``DjangoEventStore.read_all`` pages (decoded events, no runner);
* ``catch_up`` of a projection with a no-op sync handler (the runner's cost);
* ``catch_up`` of a projection whose handler upserts a Django model row
  (over ``catchup_upsert_events`` events);
* ``eventsourcing``'s ``select_notifications`` + mapper over the same number
  of events in its own table.

Then the live phase: writer processes append (5 events per save) while the
``bench-checked`` projection catches up from position 0; when they stop, it
catches up to the head, and the checker must have seen every event of the
log exactly once and each stream's events in version order (any miss,
duplicate or disorder fails the workload).
"""

from __future__ import annotations

import math
import time
from typing import Any

from benchmarks.context import Context
from benchmarks.peers import make_peer
from benchmarks.raw import RawDb
from benchmarks.report import Target, WorkloadResult
from benchmarks.seed import clear_log, seed_log, seed_peer_log
from benchmarks.workers import live_writer_job
from benchmarks.workloads.common import ES, ORCHESTRIX

__all__ = ["run"]

RAW_SCAN = "raw keyset scan + JSON decode"
READ_ALL = "orchestrix store.read_all pages (no runner)"
UPSERT = "orchestrix catch_up, upsert handler"
ES_READ = "eventsourcing select_notifications + decode"
LIVE = "orchestrix catch_up while appends continue (checked)"


def run(ctx: Context) -> WorkloadResult:
    """Measure catch-up events/s, then check exactly-once delivery under live appends."""
    from benchmarks.benchapp import projections as bench
    from orchestrix_django.projections import catch_up, reset_projection

    size = ctx.size
    n = size.catchup_events
    result = WorkloadResult("5", f"Projection catch-up over {n:,} events (events/s)")
    clear_log(ctx.config)
    seconds = seed_log(ctx.config, n, size.catchup_stream_length)
    result.notes.append(f"seeded {n:,} events in bulk in {seconds:.1f} s")
    batch = bench.noop.batch_size
    point = f"{n:,} events, pages of {batch}"

    raw = RawDb(ctx.config)
    try:
        rate, count = _scan(lambda after: raw.scan(after, batch), lambda row: row[0])
        _expect(count, n, RAW_SCAN)
        result.add(point, RAW_SCAN, rate, "events/s")
    finally:
        raw.close()

    from orchestrix_django.storage.events import DjangoEventStore

    store = DjangoEventStore()
    rate, count = _scan(lambda after: store.read_all(after, limit=batch), lambda r: r.position)
    _expect(count, n, READ_ALL)
    result.add(point, READ_ALL, rate, "events/s")

    reset_projection(bench.noop)
    started = time.perf_counter()
    done = catch_up(bench.noop)
    elapsed = time.perf_counter() - started
    _expect(done.applied, n, "catch_up (no-op)")
    result.add(point, ORCHESTRIX, n / elapsed, "events/s", handler="no-op", batches=done.batches)

    upserts = min(size.catchup_upsert_events, n)
    reset_projection(bench.upsert)
    started = time.perf_counter()
    done = catch_up(bench.upsert, max_batches=math.ceil(upserts / batch))
    elapsed = time.perf_counter() - started
    _check_balances(done.applied)
    result.add(
        f"{done.applied:,} events, pages of {batch}",
        UPSERT,
        done.applied / elapsed,
        "events/s",
        handler="upsert",
    )

    if ctx.peer_ok(ES):
        peer = make_peer(ctx.config, ES)
        try:
            # Its table holds the earlier workloads' events: read from after them.
            first = peer.app.recorder.max_notification_id() or 0
            seconds = seed_peer_log(ctx.config, peer, n, size.catchup_stream_length)
            result.notes.append(
                f"seeded eventsourcing's table with {n:,} events in {seconds:.1f} s"
            )
            rate, count = _scan(
                lambda after: peer.read_notifications(after, batch), lambda r: r[0], first
            )
            _expect(count, n, ES_READ)
            result.add(point, ES_READ, rate, "events/s")
        finally:
            peer.close()

    _live(ctx, result, store)
    result.targets.append(
        Target("catch-up, no-op handler vs raw keyset scan", result.ratio(point, RAW_SCAN), 0.8)
    )
    return result


def _scan(page: Any, position_of: Any, after: int = 0) -> tuple[float, int]:
    """Read the log after ``after`` page by page; events/s and the number of events."""
    count = 0
    started = time.perf_counter()
    while True:
        rows = page(after)
        if not rows:
            break
        count += len(rows)
        after = position_of(rows[-1])
    return count / (time.perf_counter() - started), count


def _expect(count: int, wanted: int, what: str) -> None:
    if count != wanted:
        raise AssertionError(f"{what} read {count} events, the log has {wanted}")


def _check_balances(applied: int) -> None:
    from django.db.models import Sum

    from benchmarks.benchapp.models import Balance

    total = Balance.objects.aggregate(total=Sum("events"))["total"] or 0
    if total != applied:
        raise AssertionError(f"the upsert read model counts {total} events, {applied} were applied")


def _live(ctx: Context, result: WorkloadResult, store: Any) -> None:
    """Catch up from 0 while writers append; then check every event was seen once, in order."""
    from benchmarks.benchapp import projections as bench
    from orchestrix_django.projections import catch_up, reset_projection

    size = ctx.size
    reset_projection(bench.checked)
    before = store.head_position()
    writers = size.catchup_live_writers
    pending, _ = ctx.start_async(
        live_writer_job,
        [(w, "live", 5) for w in range(writers)],
        size.catchup_live_seconds,
    )
    started = time.perf_counter()
    applied = 0
    while True:
        done = catch_up(bench.checked)
        applied += done.applied
        if pending.ready():
            applied += catch_up(bench.checked).applied
            break
        if done.applied == 0:
            time.sleep(0.005)
    elapsed = time.perf_counter() - started
    jobs = pending.get()
    written = sum(j.events for j in jobs)
    writing_seconds = max(j.finished for j in jobs) - min(j.began for j in jobs)
    checks = _check_log(store, bench.CHECKER)
    result.checks.update(checks)
    result.add(
        f"{before:,} events + appends, pages of {bench.checked.batch_size}",
        LIVE,
        applied / elapsed,
        "events/s",
        appended=written,
        appended_per_second=round(written / writing_seconds, 1),
        writers=writers,
    )
    problems = {
        k: v for k, v in checks.items() if k in ("missed", "duplicated", "out_of_order") and v
    }
    if problems or checks["seen"] != checks["in_log"]:
        raise AssertionError(f"the catch-up checker found problems: {checks}")


def _check_log(store: Any, checker: Any) -> dict[str, int]:
    """Compare what the checker saw with the log: each stream's last version, the count."""
    from django.db.models import Max

    from orchestrix_django.models import EventRecord

    heads = EventRecord.objects.using(store.using).values("stream_id").annotate(last=Max("version"))
    missed_at_end = 0
    for row in heads.iterator(chunk_size=10_000):
        seen = checker.last_seq.get(row["stream_id"], 0)
        if row["last"] > seen:
            missed_at_end += row["last"] - seen
    in_log = EventRecord.objects.using(store.using).count()
    return {
        "in_log": in_log,
        "seen": checker.seen,
        "missed": checker.gaps + missed_at_end,
        "duplicated": checker.duplicated,
        "out_of_order": checker.out_of_order,
    }
