"""6. Celery end to end: commit → projection visible, through a real worker and Redis.

Processes besides the benchmark's own, set up as a project that runs its
projections on Celery (``ORCHESTRIX["WAKE_UP"] = "celery"``, the
pending-wake-up markers in a Redis cache, :mod:`benchmarks.celery_app`):

* one ``celery worker -P solo -c 1`` (its log: ``celery-worker.log`` in the
  run's folder), with Celery's Django fix-up as in a project (which closes
  the database connection around each task: every wake-up connects anew);
* writers (``spawn``ed processes) that save one event per save at a paced
  rate (:func:`benchmarks.workers.paced_writer_job`): one writer up to
  ``RATE_PER_WRITER`` events/s, several sharing the schedule above it; each
  commit sends an ``orchestrix.advance_projection`` wake-up unless one is
  pending;
* the Redis of ``ORCHESTRIX_BENCH_REDIS_URL`` (database 11 by default) as
  broker, cache and scratch pad, every key under a prefix of this run's own,
  deleted at the start and the end (never ``FLUSHDB``: a CI smoke run and a
  run by hand may share the database).

The only configured projection, ``bench-visible``, notes in ``on_commit``
the wall-clock time at which the runner's batch that applied each event
committed; the worker publishes those times to Redis after each task. The
latency of an event is that time minus the writer's ``time.time()`` right
after ``store.save`` returned (same machine, same clock). Each rate runs
``celery_seconds``; then the workload waits until every event is visible
(``VISIBLE_TIMEOUT``): an event still invisible then is a lost wake-up, and
fails the workload. Reported per rate: p50, p95, p99 and max in ms, the rate
the writer achieved, its save time and the number of tasks the worker ran.

Then the worker's catch-up throughput: with the worker idle, the log gets
``celery_catchup_events`` events in bulk (no commit, so no wake-up); the
projection's checkpoint is set back to before them and one
``advance_projection`` task is sent; the time until the checkpoint reaches
the head (the ``updated_at`` of its last batch) gives the worker's events/s.
The in-process runner (``catch_up`` in this process) does the same from the
same checkpoint. Both run the same handler, which on these events is a
prefix test: what differs is the Celery path (delivery, the fix-up's new
database connection) and the process.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from multiprocessing import get_context
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from benchmarks.context import Context
from benchmarks.db import CeleryMode
from benchmarks.report import Target, WorkloadResult, percentiles
from benchmarks.seed import seed_log
from benchmarks.workers import PacedWrites, init_celery_writer, paced_writer_job, worker_pid

__all__ = ["VISIBLE_TIMEOUT", "run"]

TITLE = "Celery end to end: commit -> projection visible"
TARGET = "Celery p99 commit -> visible at 100 events/s (ms)"
#: Seconds to wait, after the writers stopped, for their last events to become visible.
VISIBLE_TIMEOUT = 30.0
#: Seconds the worker has to start and apply the first event.
WARM_UP_TIMEOUT = 60.0
#: Events/s one writer process is asked for at most: one writer's saves in a
#: row (wake-up included) don't reach 1,000 events/s, so the higher rates are
#: shared by several writers, each on its own streams.
RATE_PER_WRITER = 250
WORKER = "orchestrix celery worker (advance_projection)"
IN_PROCESS = "in-process catch_up (same projection)"
ROOT = Path(__file__).resolve().parents[2]


def run(ctx: Context) -> WorkloadResult:
    """Measure commit → visible latencies at each rate, then the worker's catch-up."""
    result = WorkloadResult("6", TITLE)
    target = Target(TARGET, None, 100.0, at_least=False)
    result.targets.append(target)
    redis_url, reason = _redis()
    if reason is not None:
        result.status = "skipped"
        result.notes.append(f"skipped: {reason}")
        return result

    import redis

    mode = CeleryMode(redis_url, f"orchestrix-bench:{os.getpid()}:")
    client = redis.Redis.from_url(redis_url)
    _delete_keys(client, mode)
    worker = _Worker(ctx, mode)
    writers: Pool | None = None
    try:
        # Before any commit: the worker's first wake-up must not replay the
        # log the earlier workloads left behind.
        _start_at(_head())
        worker.start()
        writers = _start_writers(ctx, mode)
        _warm_up(ctx, writers, client, mode, worker)
        missing = 0
        for rate in ctx.size.celery_rates:
            missing += _latency(ctx, result, writers, client, mode, worker, rate)
        writers.close()
        writers.join()
        writers = None
        _catch_up(ctx, result, client, mode, worker)
    finally:
        if writers is not None:
            writers.terminate()
            writers.join()
        worker.stop()
        _delete_keys(client, mode)
        client.close()
    target.value = result.value(_point(100), "orchestrix p99")
    if missing:
        result.status = "error"
        result.error = (
            f"{missing} committed events never became visible within {VISIBLE_TIMEOUT:g} s "
            f"(lost wake-ups?); see {worker.log_path}"
        )
    return result


def _redis() -> tuple[str, str | None]:
    """The Redis URL, and why the workload cannot run here (None: it can)."""
    try:
        import celery  # noqa: F401
        import redis
    except ImportError as error:
        return "", f"{error.name} is not installed (pip install 'orchestrix[celery]')"
    from benchmarks.celery_app import DEFAULT_REDIS_URL, ENV_REDIS_URL

    redis_url = os.environ.get(ENV_REDIS_URL, DEFAULT_REDIS_URL)
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        return redis_url, f"Redis is unreachable at {redis_url} ({type(error).__name__}: {error})"
    finally:
        client.close()
    return redis_url, None


def _point(rate: int) -> str:
    return f"{rate:,} events/s"


# ---------------------------------------------------------------- the processes


class _Worker:
    """The ``celery worker`` process; :meth:`stop` always leaves it gone."""

    def __init__(self, ctx: Context, mode: CeleryMode) -> None:
        from benchmarks.celery_app import environment

        self.env = {**os.environ, **environment(ctx.config, mode)}
        self.log_path = ctx.out / "celery-worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (it is ready when the warm-up event becomes visible)."""
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.celery_app",
            "worker",
            "-P",
            "solo",
            "-c",
            "1",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
            "-n",
            f"bench-{os.getpid()}@%h",
        ]
        with self.log_path.open("ab") as log:
            # A session of its own, so stop() signals its whole process group.
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        """Whether the worker still runs."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, size: int = 3000) -> str:
        """The end of its log, for error messages."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-size:]

    def _signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self) -> None:
        """Warm shutdown (the task in hand finishes); killed if not gone after 15 s."""
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.process.wait(timeout=15)


def _writers(rate: int) -> int:
    """The writer processes that share ``rate``: one per ``RATE_PER_WRITER`` events/s."""
    return max(1, math.ceil(rate / RATE_PER_WRITER))


def _pool_size(ctx: Context) -> int:
    return max(_writers(rate) for rate in ctx.size.celery_rates)


def _start_writers(ctx: Context, mode: CeleryMode) -> Pool:
    """The writer processes, every one set up (Django, Celery) before any timed run."""
    from benchmarks.celery_app import environment

    processes = _pool_size(ctx)
    pool = get_context("spawn").Pool(
        processes, initializer=init_celery_writer, initargs=(environment(ctx.config, mode),)
    )
    ready: set[int] = set()
    deadline = time.monotonic() + 120
    while len(ready) < processes and time.monotonic() < deadline:
        ready |= set(pool.map(worker_pid, range(processes), chunksize=1))
    return pool


def _write(ctx: Context, pool: Pool, rate: int, seconds: float, tag: str) -> PacedWrites:
    """``rate`` events/s for ``seconds``, shared by :func:`_writers` processes."""
    writers = _writers(rate)
    start = time.monotonic() + ctx.size.start_margin
    calls = [(rate, seconds, tag, w, writers, start) for w in range(writers)]
    # Each job blocks until its last event: each lands on a process of its own.
    pending = pool.starmap_async(paced_writer_job, calls, chunksize=1)
    return PacedWrites.merge(pending.get(timeout=seconds + 120))


# ---------------------------------------------------------------- Redis and the projection


def _delete_keys(client: Any, mode: CeleryMode) -> None:
    """Remove every key of this run (cache, broker, measurements)."""
    keys = list(client.scan_iter(match=f"{mode.key_prefix}*", count=1000))
    for first in range(0, len(keys), 500):
        client.delete(*keys[first : first + 500])


def _head() -> int:
    from orchestrix_django.storage.events import DjangoEventStore

    return DjangoEventStore().head_position()


def _start_at(position: int) -> None:
    """Set ``bench-visible``'s checkpoint to ``position`` (healthy, not paused)."""
    from benchmarks.benchapp.projections import VISIBLE_ID
    from orchestrix.core.eventsourcing.projection import ProjectionState
    from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

    states = DjangoProjectionStateStore()
    states.save_state(ProjectionState(projection_id=VISIBLE_ID, last_processed_position=position))
    states.set_paused(VISIBLE_ID, False)


def _wait_visible(
    client: Any, mode: CeleryMode, ids: list[str], worker: _Worker, timeout: float
) -> dict[str, float]:
    """``event id -> visible time`` of ``ids``, once all are visible or after ``timeout``."""
    found: dict[str, float] = {}
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending:
        values = client.hmget(mode.visible_key, pending)
        still = []
        for event_id, value in zip(pending, values, strict=True):
            if value is None:
                still.append(event_id)
            else:
                found[event_id] = float(value)
        pending = still
        if not pending or time.monotonic() > deadline or not worker.alive():
            break
        time.sleep(0.02)
    return found


def _wait_idle(client: Any, mode: CeleryMode, worker: _Worker, timeout: float = 30) -> None:
    """Until the worker has no task queued or in hand (acks_late: in hand = unacked).

    Idle twice 50 ms apart: a message the worker has just popped is in
    neither list for a moment.
    """
    queue = mode.broker_prefix + "celery"
    unacked = mode.broker_prefix + "unacked"
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        if client.llen(queue) or client.hlen(unacked):
            quiet = 0
        else:
            quiet += 1
        if time.monotonic() > deadline or not worker.alive():
            raise RuntimeError(f"the Celery worker did not become idle:\n{worker.log_tail()}")
        time.sleep(0.05 if quiet else 0.02)


def _wait_tasks(client: Any, mode: CeleryMode, worker: _Worker, count: int) -> None:
    """Until the worker has finished ``count`` tasks in all (its counter, see celery_app)."""
    deadline = time.monotonic() + 60
    while _tasks(client, mode) < count:
        if time.monotonic() > deadline or not worker.alive():
            raise RuntimeError(f"the Celery worker did not finish its task:\n{worker.log_tail()}")
        time.sleep(0.01)


def _tasks(client: Any, mode: CeleryMode) -> int:
    return int(client.get(mode.tasks_key) or 0)


# ---------------------------------------------------------------- the phases


def _warm_up(ctx: Context, pool: Pool, client: Any, mode: CeleryMode, worker: _Worker) -> None:
    """An event per writer through the whole path: the worker is up, every connection open."""
    started = time.monotonic()
    writers = _pool_size(ctx)
    writes = _write(ctx, pool, writers * RATE_PER_WRITER, 1 / RATE_PER_WRITER, "warm")
    left = WARM_UP_TIMEOUT - (time.monotonic() - started)
    seen = _wait_visible(client, mode, writes.event_ids, worker, max(left, 1.0))
    if len(seen) < len(writes.event_ids):
        what = (
            f"did not apply the warm-up events within {WARM_UP_TIMEOUT:g} s"
            if worker.alive()
            else "exited before it applied the warm-up events"
        )
        raise RuntimeError(
            f"the Celery worker {what}; its log ({worker.log_path}) ends with:\n{worker.log_tail()}"
        )
    _wait_idle(client, mode, worker)
    client.delete(mode.visible_key)


def _latency(
    ctx: Context,
    result: WorkloadResult,
    pool: Pool,
    client: Any,
    mode: CeleryMode,
    worker: _Worker,
    rate: int,
) -> int:
    """One rate: write, wait until visible, add p50/p95/p99/max; returns the events missing."""
    seconds = ctx.size.celery_seconds
    tasks_before = _tasks(client, mode)
    writes = _write(ctx, pool, rate, seconds, f"r{rate}")
    seen = _wait_visible(client, mode, writes.event_ids, worker, VISIBLE_TIMEOUT)
    gave_up = time.time()
    missing = len(writes.event_ids) - len(seen)
    if not worker.alive():
        raise RuntimeError(f"the Celery worker exited; its log ends with:\n{worker.log_tail()}")
    _wait_idle(client, mode, worker)
    tasks = _tasks(client, mode) - tasks_before
    client.delete(mode.visible_key)
    # An event never seen counts with what it waited at least, so that lost
    # wake-ups weigh on the percentiles instead of vanishing from them.
    latencies = [
        (seen.get(event_id, gave_up) - committed) * 1000
        for event_id, committed in zip(writes.event_ids, writes.committed, strict=True)
    ]
    point = _point(rate)
    stats = percentiles(latencies)
    achieved = writes.rate
    details = {
        "x": rate,
        "events": len(writes.event_ids),
        "achieved_per_s": round(achieved, 1),
        "writers": _writers(rate),
        "save_p50_ms": round(statistics.median(writes.save_ms), 3),
        "tasks": tasks,
        "not_visible": missing,
    }
    shown = {f"orchestrix {name}": stats[name] for name in ("p50", "p95", "p99")}
    shown["orchestrix max"] = max(latencies)
    for name, value in shown.items():
        result.add(point, name, value, "ms", higher_is_better=False, **details)
    if achieved < 0.9 * rate:
        result.notes.append(
            f"{point}: the writers achieved only {achieved:,.0f} events/s (saves take "
            f"{details['save_p50_ms']} ms at the median, wake-up included)"
        )
    if missing:
        result.notes.append(
            f"{point}: {missing} events not visible {VISIBLE_TIMEOUT:g} s after the writers "
            "stopped (counted with that wait, a lower bound)"
        )
    result.checks[f"not visible at {point}"] = missing
    return missing


def _catch_up(
    ctx: Context, result: WorkloadResult, client: Any, mode: CeleryMode, worker: _Worker
) -> None:
    """The worker's catch-up events/s against the in-process runner's, on the same log."""
    from benchmarks.benchapp import projections as bench
    from benchmarks.celery_app import make_app
    from orchestrix_django.projections import catch_up

    size = ctx.size
    n = size.celery_catchup_events
    first = _head()
    seconds = seed_log(ctx.config, n, 10, prefix=f"celery{first}")
    head = _head()
    result.notes.append(f"catch-up: seeded {n:,} events in bulk in {seconds:.1f} s")
    sender = make_app(mode, set_as_current=False)
    on_worker: list[float] = []
    in_process: list[float] = []
    try:
        # A first task, with nothing to apply, so that the sender's first
        # publish (connecting to Redis: about 100 ms) is not timed.
        _wait_idle(client, mode, worker)
        _start_at(head)
        tasks = _tasks(client, mode)
        sender.send_task("orchestrix.advance_projection", args=[bench.VISIBLE_ID])
        _wait_tasks(client, mode, worker, tasks + 1)
        for _ in range(size.celery_catchup_repeats):
            _wait_idle(client, mode, worker)
            _start_at(first)
            on_worker.append(n / _worker_catch_up(sender, client, mode, head, n, worker))
            _start_at(first)
            started = time.perf_counter()
            done = catch_up(bench.visible)
            elapsed = time.perf_counter() - started
            if done.applied != n:
                raise AssertionError(f"the in-process catch-up applied {done.applied} of {n}")
            in_process.append(n / elapsed)
    finally:
        sender.close()
    point = f"{n:,} events, pages of {bench.visible.batch_size}"
    worker_rate = statistics.median(on_worker)
    local_rate = statistics.median(in_process)
    ratio = worker_rate / local_rate
    result.add(
        point,
        WORKER,
        worker_rate,
        "events/s",
        vs_in_process=round(ratio, 3),
        runs=[round(r) for r in on_worker],
    )
    result.add(point, IN_PROCESS, local_rate, "events/s", runs=[round(r) for r in in_process])
    result.notes.append(
        f"catch-up: the worker reaches the head at {ratio:.2f}x the in-process runner's "
        f"events/s (median of {len(on_worker)} runs each, worker first)"
    )


def _worker_catch_up(
    sender: Any, client: Any, mode: CeleryMode, head: int, n: int, worker: _Worker
) -> float:
    """Seconds from sending ``advance_projection`` to the worker's batch at ``head``.

    Returns once the task has ended: resetting the checkpoint while it looks
    for more events would make it start over.
    """
    from benchmarks.benchapp.projections import VISIBLE_ID
    from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

    states = DjangoProjectionStateStore()
    timeout = max(60.0, n / 500)
    tasks = _tasks(client, mode)
    sent = time.time()
    sender.send_task("orchestrix.advance_projection", args=[VISIBLE_ID])
    deadline = time.monotonic() + timeout
    while True:
        state = states.load_state(VISIBLE_ID)
        if state is not None and state.last_processed_position >= head:
            break
        if time.monotonic() > deadline or not worker.alive():
            position = state.last_processed_position if state else None
            raise RuntimeError(
                f"the Celery worker did not catch up to {head} within {timeout:g} s "
                f"(at {position}); its log ends with:\n{worker.log_tail()}"
            )
        # Not too often: the polls share the two cores with the worker.
        time.sleep(0.01)
    # The last batch's own time (set just before its commit), not the poll's.
    finished = min(state.updated_at.timestamp(), time.time())
    _wait_tasks(client, mode, worker, tasks + 1)
    return max(finished - sent, 1e-6)
