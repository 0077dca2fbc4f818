"""What the writer processes run (workloads 2, 3, 5 and 6), in a ``spawn`` pool.

Each pool process sets Django up once (:func:`init_worker`) and keeps its
connections. A timed job prepares its connections, waits for the common
start time, works until the common end time, and returns what it committed
with the monotonic time it finished at (``time.monotonic`` is system-wide on
Linux, so the parent can compare it with its own clock).

Workload 6's writers are a pool of their own, set up by
:func:`init_celery_writer` as a Celery project's processes (their commits
send wake-ups): they run :func:`paced_writer_job`.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from benchmarks.db import DbConfig, setup_django

__all__ = [
    "JobResult",
    "PacedWrites",
    "concurrent_job",
    "contention_job",
    "init_celery_writer",
    "init_worker",
    "live_writer_job",
    "paced_writer_job",
    "worker_pid",
]

_config: DbConfig | None = None
_peers: dict[str, Any] = {}
_raw: Any = None

#: Implementation names shared with the workloads.
ORCHESTRIX = "orchestrix"
RAW = "raw executemany"
RAW_LOCKED = "raw executemany + table lock"
ES = "eventsourcing"
ES_DJANGO = "eventsourcing-django"


@dataclass(frozen=True)
class JobResult:
    """What one job committed between ``began`` and ``finished`` (monotonic seconds)."""

    events: int
    saves: int
    conflicts: int
    began: float
    finished: float


def init_worker(config: DbConfig) -> None:
    """Pool initializer: Django, the connections and the peers, ready before any timed run."""
    global _config
    _config = config
    setup_django(config)
    import benchmarks.benchapp.aggregates  # noqa: F401  (imports the store's modules too)
    import orchestrix_django.storage.events  # noqa: F401

    _warm_django()
    _raw_db()
    from benchmarks.peers import available_peers

    for kind, reason in available_peers(config).items():
        if reason is None:
            _peer(kind)


def worker_pid(_call: int = 0) -> int:
    """This pool process's id, a moment later (so that every process gets a call)."""
    time.sleep(0.05)
    return os.getpid()


def _raw_db() -> Any:
    global _raw
    if _raw is None:
        from benchmarks.raw import RawDb

        assert _config is not None
        _raw = RawDb(_config)
    return _raw


def _peer(kind: str) -> Any:
    if kind not in _peers:
        from benchmarks.peers import make_peer

        assert _config is not None
        _peers[kind] = make_peer(_config, kind)
    return _peers[kind]


def _wait_until(moment: float) -> float:
    """Sleep until ``moment``; the time the work starts (later if set-up overran)."""
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    return time.monotonic()


def _warm_django() -> None:
    from django.db import connection

    connection.ensure_connection()


def concurrent_job(
    implementation: str, worker: int, tag: str, events_per_save: int, start: float, end: float
) -> JobResult:
    """Append ``events_per_save`` events per save to this worker's own streams."""
    streams = [f"{tag}-w{worker}-s{k}" for k in range(8)]
    versions = dict.fromkeys(streams, 0)
    events = saves = 0
    if implementation == ORCHESTRIX:
        from benchmarks.benchapp.events import Deposited
        from orchestrix_django.storage.events import DjangoEventStore

        store = DjangoEventStore()
        _warm_django()
        began = _wait_until(start)
        while time.monotonic() < end:
            stream = streams[saves % len(streams)]
            v = versions[stream]
            batch = [
                Deposited(account_id=stream, amount=1, seq=v + i)
                for i in range(1, events_per_save + 1)
            ]
            store.save(stream, batch, expected_version=v)
            versions[stream] = v + events_per_save
            events += events_per_save
            saves += 1
    elif implementation in (RAW, RAW_LOCKED):
        from benchmarks.raw import raw_rows

        raw = _raw_db()
        lock = implementation == RAW_LOCKED
        began = _wait_until(start)
        while time.monotonic() < end:
            stream = streams[saves % len(streams)]
            v = versions[stream]
            raw.insert(raw_rows(stream, v + 1, events_per_save), lock=lock)
            versions[stream] = v + events_per_save
            events += events_per_save
            saves += 1
    else:  # the peers
        peer = _peer(implementation)
        if implementation == ES_DJANGO:
            _warm_django()
        accounts = [peer.new_account() for _ in streams]
        stored = [False] * len(accounts)
        began = _wait_until(start)
        while time.monotonic() < end:
            k = saves % len(accounts)
            pending = peer.pending(accounts[k], events_per_save, with_creation=not stored[k])
            peer.insert(pending)
            stored[k] = True
            events += events_per_save
            saves += 1
    return JobResult(events, saves, 0, began, time.monotonic())


def contention_job(
    implementation: str, worker: int, streams: list[str], start: float, end: float
) -> JobResult:
    """Load, decide and save with the expected version on a few hot streams."""
    rng = random.Random(worker)
    successes = conflicts = 0
    if implementation == ORCHESTRIX:
        from benchmarks.benchapp.aggregates import Account
        from orchestrix.core.common.exceptions import ConcurrencyError
        from orchestrix.core.eventsourcing.aggregate import AggregateRepository
        from orchestrix_django.storage.events import DjangoEventStore

        repository: AggregateRepository[Account] = AggregateRepository(DjangoEventStore())
        _warm_django()
        began = _wait_until(start)
        while time.monotonic() < end:
            account = repository.load(Account, rng.choice(streams))
            account.deposit(1)
            try:
                repository.save(account)
            except ConcurrencyError:
                conflicts += 1
            else:
                successes += 1
    elif implementation == RAW:
        raw = _raw_db()
        began = _wait_until(start)
        while time.monotonic() < end:
            if _raw_decide_and_insert(raw, rng.choice(streams)):
                successes += 1
            else:
                conflicts += 1
    else:
        peer = _peer(implementation)
        ids = [uuid.UUID(s) for s in streams]
        if implementation == ES_DJANGO:
            _warm_django()
        began = _wait_until(start)
        while time.monotonic() < end:
            account = peer.get(rng.choice(ids))
            account.deposit(1, account.version + 1)
            try:
                peer.save(account)
            except Exception as error:
                if not peer.is_integrity_error(error):
                    raise
                conflicts += 1
            else:
                successes += 1
    return JobResult(successes, successes, conflicts, began, time.monotonic())


def _raw_decide_and_insert(raw: Any, stream: str) -> bool:
    """Read the stream, fold it, insert the next version; False on a lost race."""
    import json
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    event_id = str(uuid.uuid4())
    if raw.postgresql:
        from psycopg.types.json import Jsonb

        try:
            with raw.conn.transaction(), raw.conn.cursor() as cursor:
                cursor.execute(
                    "SELECT version, data FROM bench_raw_event WHERE stream_id = %s "
                    "ORDER BY version",
                    (stream,),
                )
                rows = cursor.fetchall()
                balance = sum(row[1]["amount"] for row in rows)
                version = rows[-1][0] + 1 if rows else 1
                data = {"account_id": stream, "amount": 1 if balance >= 0 else 0, "seq": version}
                cursor.execute(
                    "INSERT INTO bench_raw_event (stream_id, version, event_id, event_type, "
                    "schema_version, data, metadata, timestamp, recorded_at) "
                    "VALUES (%s, %s, %s, 'Deposited', 1, %s, '{}', %s, %s)",
                    (stream, version, event_id, Jsonb(data), now, now),
                )
        except Exception as error:
            if raw.is_unique_violation(error):
                return False
            raise
        return True
    cursor = raw.conn.cursor()
    # SQLite serialises writers: take the write lock before reading, or the
    # upgrade from a read fails at once with "database is locked".
    cursor.execute("BEGIN IMMEDIATE")
    try:
        rows = cursor.execute(
            "SELECT version, data FROM bench_raw_event WHERE stream_id = ? ORDER BY version",
            (stream,),
        ).fetchall()
        balance = sum(json.loads(row[1])["amount"] for row in rows)
        version = rows[-1][0] + 1 if rows else 1
        data = {"account_id": stream, "amount": 1 if balance >= 0 else 0, "seq": version}
        stamp = now.replace(tzinfo=None).isoformat(" ")
        cursor.execute(
            "INSERT INTO bench_raw_event (stream_id, version, event_id, event_type, "
            "schema_version, data, metadata, timestamp, recorded_at) "
            "VALUES (?, ?, ?, 'Deposited', 1, ?, '{}', ?, ?)",
            (stream, version, event_id, json.dumps(data), stamp, stamp),
        )
    except BaseException as error:
        cursor.execute("ROLLBACK")
        if raw.is_unique_violation(error):
            return False
        raise
    cursor.execute("COMMIT")
    return True


def live_writer_job(
    worker: int, tag: str, events_per_save: int, start: float, end: float
) -> JobResult:
    """Append to Orchestrix while a projection catches up (workload 5's live phase)."""
    from benchmarks.benchapp.events import Deposited
    from orchestrix_django.storage.events import DjangoEventStore

    store = DjangoEventStore()
    streams = [f"{tag}-w{worker}-s{k}" for k in range(50)]
    versions = dict.fromkeys(streams, 0)
    events = saves = 0
    _warm_django()
    began = _wait_until(start)
    while time.monotonic() < end:
        stream = streams[saves % len(streams)]
        v = versions[stream]
        store.save(
            stream,
            [
                Deposited(account_id=stream, amount=1, seq=v + i)
                for i in range(1, events_per_save + 1)
            ],
            expected_version=v,
        )
        versions[stream] = v + events_per_save
        events += events_per_save
        saves += 1
        # Leave the CPU to the catch-up now and then (two cores for everything).
        time.sleep(0.001)
    return JobResult(events, saves, 0, began, time.monotonic())


@dataclass(frozen=True)
class PacedWrites:
    """What paced writers committed: one entry per event, in commit order.

    ``committed`` holds ``time.time()`` right after each ``store.save``
    returned (the caller's view of the commit); ``save_ms`` how long each
    save took.
    """

    event_ids: list[str]
    committed: list[float]
    save_ms: list[float]

    @property
    def rate(self) -> float:
        """The events per second achieved: commits over the time between the first and last."""
        elapsed = self.committed[-1] - self.committed[0] if self.committed else 0.0
        return (len(self.committed) - 1) / elapsed if elapsed > 0 else 0.0

    @classmethod
    def merge(cls, parts: list[PacedWrites]) -> PacedWrites:
        """Several writers' events as one run, in commit order."""
        rows = sorted(
            (t, event_id, ms)
            for part in parts
            for event_id, t, ms in zip(part.event_ids, part.committed, part.save_ms, strict=True)
        )
        return cls([r[1] for r in rows], [r[0] for r in rows], [r[2] for r in rows])


#: Why :func:`init_celery_writer` failed: raised by each job instead (a pool
#: replaces a process whose initializer raises, forever).
_celery_init_error: Exception | None = None


def init_celery_writer(env: dict[str, str]) -> None:
    """Pool initializer of workload 6: Django and Celery as in a project with wake-ups.

    ``env`` is :func:`benchmarks.celery_app.environment`; importing the app
    with it sets Django up in the Celery mode.
    """
    global _celery_init_error
    try:
        os.environ.update(env)
        import benchmarks.celery_app  # noqa: F401  (sets Django up, becomes the current app)
        import orchestrix_django.storage.events  # noqa: F401

        _warm_django()
    except Exception as error:
        _celery_init_error = error


def paced_writer_job(
    rate: float, seconds: float, tag: str, writer: int, writers: int, start: float
) -> PacedWrites:
    """Writer ``writer`` of ``writers`` sharing ``rate`` events/s (one event per save).

    Event ``i`` of the run (``rate * seconds`` events, at least one) is due at
    ``start + i / rate`` (monotonic seconds); this writer saves those with
    ``i % writers == writer``. A writer behind its schedule saves at once, so
    the rate achieved says whether the writers kept up. The saves go
    round-robin over streams of this writer whose names start with
    ``VISIBLE_PREFIX``, so the ``bench-visible`` projection notes them.
    """
    if _celery_init_error is not None:
        raise RuntimeError(f"the writer's set-up failed: {_celery_init_error!r}")
    from benchmarks.benchapp.events import Deposited
    from benchmarks.benchapp.projections import VISIBLE_PREFIX
    from orchestrix_django.storage.events import DjangoEventStore

    store = DjangoEventStore()
    count = max(1, round(rate * seconds))
    streams = [f"{VISIBLE_PREFIX}{tag}-w{writer}-s{k}" for k in range(8)]
    versions = dict.fromkeys(streams, 0)
    event_ids: list[str] = []
    committed: list[float] = []
    save_ms: list[float] = []
    _warm_django()
    for n, i in enumerate(range(writer, count, writers)):
        _wait_until(start + i / rate)
        stream = streams[n % len(streams)]
        version = versions[stream]
        event = Deposited(account_id=stream, amount=1, seq=version + 1)
        t0 = time.perf_counter()
        store.save(stream, [event], expected_version=version)
        committed.append(time.time())
        save_ms.append((time.perf_counter() - t0) * 1000)
        event_ids.append(event.id)
        versions[stream] = version + 1
    return PacedWrites(event_ids, committed, save_ms)
