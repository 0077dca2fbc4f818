"""Celery wake-ups and the periodic catch-up, with real workers on the test database.

The broker and the cache are the Redis of ``settings.TEST_REDIS_URL`` (a
database of its own, flushed around each test); the outage test runs a
Redis server of its own on a free port and stops it. Workers are real
``celery worker`` processes (``-P solo``) started on the test database, as
tests/django/worker_pool.py starts its writers, and every test kills the
processes it started before it ends.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.checks import CheckMessage, run_checks
from django.db import connection, transaction
from django.db.models import Count
from django.test import override_settings

from orchestrix_django.celery import CATCH_UP_ENTRY, beat_schedule
from orchestrix_django.models import EventRecord
from orchestrix_django.projections import catch_up, get_projection, pause, reset_projection
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore
from orchestrix_django.tasks import (
    MessageIdsFilter,
    advance_projection,
    catch_up_projections,
    current_ids,
)
from orchestrix_django.wakeup import wake_up_key
from tests.celery_app import app as celery_app
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AccountBalance, AppliedEvent
from tests.django.worker_pool import run_workers

ROOT = Path(__file__).resolve().parents[2]

ALL = ["test-balances", "test-fragile", "test-continuing", "test-flaky", "test-slow"]
#: The projections that handle AccountOpened (test-flaky only handles deposits).
OPENED = ["test-balances", "test-fragile", "test-continuing", "test-slow"]

db = pytest.mark.django_db(transaction=True)


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(autouse=True)
def _no_failures() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    testapp_projections._attempts.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


@pytest.fixture
def wake_up(settings: Any, broker: redis.Redis) -> redis.Redis:
    """``ORCHESTRIX["WAKE_UP"] = "celery"`` in this process; the broker, empty."""
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "WAKE_UP": "celery"}
    return broker


@dataclass(frozen=True)
class Queued:
    """A task message waiting in the broker."""

    task_id: str
    task: str
    args: list[Any]
    headers: dict[str, Any]


def queued(client: redis.Redis, queue: str = "celery") -> list[Queued]:
    """The messages of ``queue``, oldest first (kombu's Redis transport: a list)."""
    found = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        headers = message["headers"]
        found.append(Queued(headers["id"], headers["task"], body[0], headers))
    return found


def woken(client: redis.Redis) -> list[str]:
    """The projection ids of the queued wake-ups, oldest first."""
    return [q.args[0] for q in queued(client) if q.task == "orchestrix.advance_projection"]


def open_accounts(ids: list[str], **message_ids: str) -> None:
    store = DjangoEventStore()
    for account_id in ids:
        store.save(
            account_id,
            [
                AccountOpened(
                    account_id=account_id, owner="Ann", initial_deposit=10.0, **message_ids
                )
            ],
        )


def deposit(account_id: str, amount: int, **message_ids: str) -> None:
    DjangoEventStore().save(
        account_id,
        [MoneyDeposited(account_id=account_id, amount=Decimal(amount), **message_ids)],
    )


def log_ids(*, deposits_only: bool = False) -> list[str]:
    records = EventRecord.objects.order_by("position")
    if deposits_only:
        records = records.filter(event_type="MoneyDeposited")
    return list(records.values_list("event_id", flat=True))


def applied(name: str) -> list[str]:
    return list(
        AppliedEvent.objects.filter(projection=name)
        .order_by("id")
        .values_list("event_id", flat=True)
    )


def read_model(projection_id: str) -> Any:
    """What ``projection_id`` built: balances' rows, or the others' applied ids in order."""
    if projection_id == "test-balances":
        return sorted(
            AccountBalance.objects.values_list("account_id", "owner", "balance", "events")
        )
    return applied(projection_id.removeprefix("test-"))


def assert_applied_exactly_once() -> None:
    """Every projection applied every event it handles once, in log order."""
    everything = log_ids()
    for name in ("fragile", "continuing", "slow"):
        assert applied(name) == everything, name
    assert applied("flaky") == log_ids(deposits_only=True)
    streams = dict(
        EventRecord.objects.values("stream_id")
        .order_by("stream_id")
        .annotate(n=Count("position"))
        .values_list("stream_id", "n")
    )
    balances = {row[0]: row[3] for row in read_model("test-balances")}
    assert balances == streams


def positions() -> dict[str, int]:
    return {
        s.projection_id: s.state.last_processed_position
        for s in DjangoProjectionStateStore().list_states()
    }


def all_caught_up() -> bool:
    head = DjangoEventStore().head_position()
    at = positions()
    return head > 0 and all(at.get(projection_id) == head for projection_id in ALL)


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, *, logs: Callable[[], str] = str
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds saying ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{what}: not within {timeout} s (positions {positions()}, head "
                f"{DjangoEventStore().head_position()})\n{logs()}"
            )
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Worker:
    """A ``celery -A tests.celery_app worker`` process on the test database."""

    def __init__(self, name: str, directory: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "ORCHESTRIX_WORKER_DB_NAME": str(connection.settings_dict["NAME"]),
            "ORCHESTRIX_TEST_WAKE_UP": "celery",
            **(env or {}),
        }
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, beat: bool = False, timeout: float = 60, queues: str = "") -> Worker:
        """Start the worker and wait until it consumes (``queues``: its ``-Q``, if any)."""
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "-P",
            "solo",
            "-c",
            "1",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
            "-n",
            f"{self.name}@%h",
        ]
        if beat:
            command += ["-B", "-s", str(self.directory / f"{self.name}-beat-schedule")]
        if queues:
            command += ["-Q", queues]
        with self.log_path.open("ab") as log:
            # A session of its own: stop() and kill() reach the embedded beat too.
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while " ready." not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"worker {self.name} did not start:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _signal(self, signum: int) -> None:
        # The whole process group (the worker and its embedded beat), and only
        # while the worker, its leader, has not been reaped.
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL: the worker dies at once, mid-task if it is in one."""
        if self.process is None:
            return
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Warm shutdown (the task in hand finishes), killed after 20 s."""
        if self.process is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def running(*workers: Worker) -> Iterator[tuple[Worker, ...]]:
    """Make sure ``workers`` are gone when the block ends, however it ends."""
    try:
        yield workers
    finally:
        for worker in workers:
            worker.kill()


def all_logs(*workers: Worker) -> Callable[[], str]:
    return lambda: "\n".join(f"--- {w.name}:\n{w.log()[-4000:]}" for w in workers)


# ---------------------------------------------------------------- wake-ups, no worker


@db
def test_a_burst_of_saves_wakes_each_interested_projection_once(wake_up: redis.Redis) -> None:
    open_accounts(["W-1"], correlation_id="corr-1", causation_id="cause-1", trace_id="trace-1")
    # Only the projections that handle AccountOpened (not test-flaky).
    assert woken(wake_up) == OPENED
    [first] = [q for q in queued(wake_up) if q.args == ["test-balances"]]
    assert first.headers["orchestrix_correlation_id"] == "corr-1"
    assert first.headers["orchestrix_causation_id"] == "cause-1"
    assert first.headers["orchestrix_trace_id"] == "trace-1"
    assert first.headers["orchestrix_event_id"] == log_ids()[0]
    for amount in range(1, 20):
        deposit("W-1", amount)
    # The deposits wake test-flaky once; the others have a wake-up pending already.
    assert woken(wake_up) == [*OPENED, "test-flaky"]
    assert all(isinstance(cache.get(wake_up_key(projection_id)), float) for projection_id in ALL)


@db
def test_a_rolled_back_save_wakes_nothing(wake_up: redis.Redis) -> None:
    def save_then_fail() -> None:
        with transaction.atomic():
            open_accounts(["R-1"])
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        save_then_fail()
    assert EventRecord.objects.count() == 0
    assert queued(wake_up) == []
    assert all(cache.get(wake_up_key(projection_id)) is None for projection_id in ALL)


@db
def test_without_wake_up_celery_nothing_is_sent(broker: redis.Redis) -> None:
    open_accounts(["N-1"])
    assert queued(broker) == []


@db
def test_an_unreachable_broker_never_breaks_the_save(
    wake_up: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    closed = free_port()
    down = Celery("orchestrix-broker-down", set_as_current=False)
    down.conf.update(broker_url=f"redis://127.0.0.1:{closed}/0", broker_connection_timeout=1)
    caplog.set_level(logging.WARNING, logger="orchestrix")
    started = time.monotonic()
    down.set_current()
    try:
        open_accounts(["B-1"], correlation_id="corr-down")
    finally:
        celery_app.set_current()
    elapsed = time.monotonic() - started
    assert log_ids() != []  # the save committed
    warnings = [r for r in caplog.records if "could not send the wake-up" in r.getMessage()]
    assert sorted(r.args[0] for r in warnings) == sorted(OPENED)  # type: ignore[index]
    assert all(getattr(r, "correlation_id", None) == "corr-down" for r in warnings)
    assert elapsed < 10
    # The markers are gone: the next commit, or the periodic catch-up, wakes them.
    assert all(cache.get(wake_up_key(projection_id)) is None for projection_id in ALL)
    assert catch_up_projections.apply().get() == ALL
    assert sorted(woken(wake_up)) == sorted(ALL)


@db
def test_advance_projection_clears_its_marker_first_and_logs_the_ids(
    wake_up: redis.Redis, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    open_accounts(["M-1"])
    assert "test-balances" in woken(wake_up)
    key = wake_up_key("test-balances")
    seen: list[Any] = []
    real_catch_up = catch_up

    def catching_up(projection: Any, **kwargs: Any) -> Any:
        seen.append((cache.get(key), current_ids()["correlation_id"]))
        deposit("M-1", 5)  # a commit while the task runs: it must wake the projection again
        return real_catch_up(projection, **kwargs)

    monkeypatch.setattr("orchestrix_django.tasks.catch_up", catching_up)
    caplog.set_level(logging.INFO, logger="orchestrix")
    headers = {
        "orchestrix_correlation_id": "corr-9",
        "orchestrix_causation_id": "cause-9",
        "orchestrix_trace_id": "trace-9",
    }
    outcome = advance_projection.apply(args=["test-balances"], headers=headers).get()
    assert seen == [(None, "corr-9")]
    assert outcome["applied"] == 2 and outcome["stopped"] is None
    assert woken(wake_up).count("test-balances") == 2
    records = [r for r in caplog.records if r.name == "orchestrix.tasks"]
    assert records and all(
        (r.correlation_id, r.causation_id, r.trace_id) == ("corr-9", "cause-9", "trace-9")  # type: ignore[attr-defined]
        for r in records
    )
    assert "correlation_id=corr-9" in records[-1].getMessage()
    # Outside a task the filter adds empty fields.
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert MessageIdsFilter().filter(record) and record.correlation_id is None  # type: ignore[attr-defined]


@db
def test_an_unknown_projection_id_is_logged_not_raised(
    broker: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    assert advance_projection.apply(args=["no-such-projection"]).get() is None
    assert "no projection 'no-such-projection'" in caplog.text


@db
def test_the_periodic_catch_up_wakes_lagging_projections_once(broker: redis.Redis) -> None:
    open_accounts(["P-1", "P-2"])  # WAKE_UP is "none": nothing queued
    catch_up(get_projection("test-balances"))
    pause(get_projection("test-fragile"))
    expected = ["test-continuing", "test-flaky", "test-slow"]
    assert catch_up_projections.apply().get() == expected
    assert woken(broker) == expected
    # Ticks while the wake-ups are pending add nothing.
    catch_up_projections.apply().get()
    assert woken(broker) == expected
    # Inline, the task catches up itself (the paused projection excepted).
    assert catch_up_projections.apply(kwargs={"inline": True}).get() == expected
    head = DjangoEventStore().head_position()
    caught_up = {p: at for p, at in positions().items() if at == head}
    assert caught_up == dict.fromkeys(["test-balances", *expected], head)
    assert catch_up_projections.apply().get() == []


@db
def test_the_periodic_catch_up_replaces_a_wake_up_pending_for_an_interval(
    broker: redis.Redis, settings: Any
) -> None:
    """A wake-up the broker lost: its marker would hold the projection back until
    it expires; the periodic catch-up sends another once it is an interval old."""
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "CATCH_UP_INTERVAL": 30}
    open_accounts(["L-1"])
    for projection_id in ALL:
        if projection_id != "test-balances":
            catch_up(get_projection(projection_id))
    key = wake_up_key("test-balances")
    cache.set(key, time.time() - 5)  # pending for 5 s: not lost yet
    assert catch_up_projections.apply().get() == ["test-balances"]
    assert woken(broker) == []
    cache.set(key, time.time() - 31)  # pending for more than an interval: lost
    catch_up_projections.apply().get()
    assert woken(broker) == ["test-balances"]
    assert time.time() - cache.get(key) < 5  # a fresh marker for the new wake-up
    catch_up_projections.apply().get()
    assert woken(broker) == ["test-balances"]


@db
def test_a_projection_that_never_ran_is_woken_even_on_an_empty_log(broker: redis.Redis) -> None:
    assert catch_up_projections.apply().get() == ALL
    catch_up_projections.apply(kwargs={"inline": True}).get()
    assert catch_up_projections.apply().get() == []


def test_beat_schedule_runs_the_catch_up_every_interval(settings: Any) -> None:
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "CATCH_UP_INTERVAL": 12}
    assert beat_schedule() == {
        CATCH_UP_ENTRY: {
            "task": "orchestrix.catch_up_projections",
            "schedule": 12.0,
            "options": {"expires": 12.0},
        }
    }
    assert beat_schedule(2)[CATCH_UP_ENTRY]["schedule"] == 2.0
    with pytest.raises(ValueError, match="positive"):
        beat_schedule(0)
    # The test app merges it into its schedule (what the module docs show).
    celery_app.finalize()
    assert CATCH_UP_ENTRY in celery_app.conf.beat_schedule


def test_the_tasks_are_thin_json_tasks_acknowledged_late() -> None:
    task = celery_app.tasks["orchestrix.advance_projection"]
    assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
    assert task.serializer == "json"
    assert celery_app.tasks["orchestrix.catch_up_projections"].serializer == "json"


# ---------------------------------------------------------------- system check E009


def e009(**orchestrix: Any) -> list[CheckMessage]:
    with override_settings(ORCHESTRIX={**django_settings.ORCHESTRIX, **orchestrix}):
        return [m for m in run_checks(tags=["orchestrix"]) if m.id and m.id[-3:] == "009"]


def test_the_wake_up_settings_are_checked() -> None:
    assert e009() == []
    assert e009(WAKE_UP="celery", CATCH_UP_INTERVAL=0.5, WAKE_UP_TTL=10) == []
    [mode] = e009(WAKE_UP="rabbit")
    assert mode.id == "orchestrix.E009" and "WAKE_UP" in mode.msg
    for bad in (0, -1, "30", True, None):
        [interval] = e009(CATCH_UP_INTERVAL=bad)
        assert "CATCH_UP_INTERVAL" in interval.msg, bad
    [ttl] = e009(WAKE_UP_TTL=0)
    assert "WAKE_UP_TTL" in ttl.msg
    [alias] = e009(WAKE_UP_CACHE="nope")
    assert alias.id == "orchestrix.E009" and "'default'" in alias.msg


def test_a_local_memory_wake_up_cache_is_warned_about() -> None:
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with override_settings(CACHES=local):
        assert [m.id for m in e009(WAKE_UP="celery")] == ["orchestrix.W009"]
        assert e009() == []  # without Celery wake-ups the cache does not matter


# ---------------------------------------------------------------- real workers


@db
@pytest.mark.slow
def test_a_worker_applies_committed_events_and_logs_their_ids(
    wake_up: redis.Redis, tmp_path: Path
) -> None:
    worker = Worker("applier", tmp_path)
    with running(worker):
        worker.start()
        open_accounts(["A-1", "A-2"], correlation_id="corr-A", trace_id="trace-A")
        for amount in (5, 6, 7):
            deposit("A-1", amount)
        wait_until(all_caught_up, 60, "the worker catches up", logs=all_logs(worker))
        worker.stop()
    assert read_model("test-balances") == [
        ("A-1", "Ann", Decimal("28.00"), 4),
        ("A-2", "Ann", Decimal("10.00"), 1),
    ]
    assert_applied_exactly_once()
    log = worker.log()
    assert "advancing projection test-balances (correlation_id=corr-A" in log
    assert "trace_id=trace-A" in log


@db
@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_and_repeats_nothing(
    wake_up: redis.Redis, tmp_path: Path
) -> None:
    batch = get_projection("test-slow").batch_size
    open_accounts(["K-1"])
    for amount in range(1, 13):
        deposit("K-1", amount)
    total = len(log_ids())
    assert total > 2 * batch
    [slow_task] = [q for q in queued(wake_up) if q.args == ["test-slow"]]
    trace = tmp_path / "first.trace"
    slow_env = {"ORCHESTRIX_TEST_VISIBILITY_TIMEOUT": "3", "ORCHESTRIX_TEST_SLOW_SECONDS": "0.3"}
    first = Worker("doomed", tmp_path, {**slow_env, "ORCHESTRIX_TEST_SLOW_TRACE": str(trace)})
    second = Worker(
        "survivor",
        tmp_path,
        {
            **slow_env,
            "ORCHESTRIX_TEST_SLOW_TRACE": str(tmp_path / "second.trace"),
            "ORCHESTRIX_TEST_SLOW_SECONDS": "0.02",
        },
    )
    logs = all_logs(first, second)

    def traced() -> list[str]:
        return trace.read_text().split() if trace.exists() else []

    with running(first, second):
        first.start()
        # Two events into the second batch: its transaction is open, the first committed.
        wait_until(lambda: len(traced()) >= batch + 2, 60, "the second batch starts", logs=logs)
        first.kill()
        in_flight = traced()
        assert batch + 2 <= len(in_flight) < 2 * batch
        # The open batch rolled back with the dead worker's connection.
        assert applied("slow") == log_ids()[:batch]
        assert (
            positions()["test-slow"]
            == EventRecord.objects.get(event_id=log_ids()[batch - 1]).position
        )
        # Nothing wakes the projection again but the message the dead worker
        # never acknowledged: Redis hands it out again after the visibility timeout.
        second.start()
        wait_until(all_caught_up, 60, "the survivor finishes the batch", logs=logs)
        second.stop()
    assert f"orchestrix.advance_projection[{slow_task.task_id}] received" in second.log()
    assert applied("slow") == log_ids()
    assert len(set(applied("slow"))) == total
    assert_applied_exactly_once()
    assert positions()["test-slow"] == DjangoEventStore().head_position()


@db
@pytest.mark.slow
def test_four_writers_and_two_workers_build_what_a_replay_builds(
    wake_up: redis.Redis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = [f"C-{n}" for n in range(8)]
    open_accounts(streams)
    workers = (Worker("left", tmp_path), Worker("right", tmp_path))
    monkeypatch.setenv("ORCHESTRIX_TEST_WAKE_UP", "celery")  # the writers wake the projections
    with running(*workers):
        for worker in workers:
            worker.start()
        results = run_workers(
            [
                (
                    "write",
                    {"seed": seed, "saves": 40, "batch": 3, "streams": streams, "max_hold": 0.01},
                )
                for seed in range(4)
            ]
        )
        assert all(r["outcome"] == "done" for r in results)
        wait_until(all_caught_up, 120, "the workers catch up", logs=all_logs(*workers))
        for worker in workers:
            worker.stop()
    written = sum(len(ids) for r in results for ids in r["committed"].values())
    assert written + len(streams) == len(log_ids())
    # Both workers took part.
    assert all("advancing projection" in worker.log() for worker in workers)
    assert_applied_exactly_once()
    live = {projection_id: read_model(projection_id) for projection_id in ALL}
    for projection_id in ALL:
        projection = get_projection(projection_id)
        reset_projection(projection)
        assert read_model(projection_id) == []
        catch_up(projection)
        assert read_model(projection_id) == live[projection_id], projection_id


@contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A Redis server of this test's own on ``port`` (never the shared one)."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed"
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        client.close()
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@db
@pytest.mark.slow
def test_a_redis_outage_during_writes_loses_nothing(
    settings: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "WAKE_UP": "celery"}
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
    }
    outage_app = Celery("orchestrix-outage", set_as_current=False)
    outage_app.conf.update(
        broker_url=url, broker_connection_timeout=1, task_serializer="json", accept_content=["json"]
    )
    worker = Worker(
        "outage",
        tmp_path,
        {"ORCHESTRIX_TEST_REDIS_URL": url, "ORCHESTRIX_TEST_CATCH_UP_INTERVAL": "1"},
    )
    caplog.set_level(logging.WARNING, logger="orchestrix")
    outage_app.set_current()
    try:
        with running(worker):
            with own_redis(port):
                worker.start(beat=True)
                open_accounts(["O-1", "O-2"])
                wait_until(all_caught_up, 60, "caught up before the outage", logs=all_logs(worker))
            # Redis is down: the saves succeed, the wake-ups are lost (and logged).
            caplog.clear()
            started = time.monotonic()
            for amount in range(1, 11):
                deposit("O-1" if amount % 2 else "O-2", amount)
            elapsed = time.monotonic() - started
            assert len(log_ids()) == 12
            assert any("could not send the wake-up" in r.getMessage() for r in caplog.records)
            assert any("cannot reach the wake-up cache" in r.getMessage() for r in caplog.records)
            assert elapsed < 30
            time.sleep(1.5)  # the workers' beat ticks fail too
            assert not all_caught_up()
            # Redis is back, empty: only the periodic catch-up can find the lost work.
            with own_redis(port):
                wait_until(all_caught_up, 90, "caught up after the outage", logs=all_logs(worker))
                worker.stop()
    finally:
        celery_app.set_current()
    assert "orchestrix.catch_up_projections" in worker.log()
    assert_applied_exactly_once()
    assert read_model("test-balances") == [
        ("O-1", "Ann", Decimal("35.00"), 6),
        ("O-2", "Ann", Decimal("40.00"), 6),
    ]
