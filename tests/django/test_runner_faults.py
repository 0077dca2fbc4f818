"""Faults are not failures: runners ride out database faults by themselves.

The connection of a projection runner is cut while a handler runs, that of a
saga runner while a step runs (PostgreSQL: ``pg_terminate_backend``;
MariaDB: ``KILL``); SQLite reports "database is locked". Each time the work
rolls back and is done again once the database answers: every event applied
exactly once (the read model equals a clean replay), the step completed
once, no dead letter, the projection healthy and not paused, no operator
involved, and the fault logged and counted (``orchestrix.faults``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction

from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.observability import get_observability, init_observability
from orchestrix.core.execution.saga import SagaStatus
from orchestrix.infrastructure.memory.observability import InMemoryMetricsProvider
from orchestrix_django.projections import (
    DjangoProjection,
    catch_up,
    get_projection,
    projection_status,
    reset_projection,
)
from orchestrix_django.sagas import run_saga
from orchestrix_django.sagas.locks import PG_NAMESPACE, _mysql_name, _pg_key
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.faults import FaultKind, fault_kind, is_database_fault
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from tests.django.fault_helpers import read_model, replay_mismatches
from tests.django.test_faults import backend_id, cut
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AccountBalance, AppliedEvent, SagaStepCall
from tests.django.testapp.sagas import MARKERS_ENV, order_fulfillment

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server() -> str:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connection to cut")
    return connection.vendor


@pytest.fixture
def metrics() -> Iterator[InMemoryMetricsProvider]:
    """The process-wide hooks report to this provider during the test."""
    previous = get_observability()
    provider = InMemoryMetricsProvider()
    init_observability(provider, previous.tracing, previous.logger)
    yield provider
    init_observability(previous.metrics, previous.tracing, previous.logger)


def faults_counted(metrics: InMemoryMetricsProvider, **labels: str) -> float:
    """The ``orchestrix.faults`` counted with ``labels`` (``name`` is a label here)."""
    return sum(
        metric.value
        for metric in list(metrics.metrics)
        if metric.name == "orchestrix.faults"
        and all(metric.labels.get(key) == value for key, value in labels.items())
    )


def write_accounts(prefix: str, accounts: int, deposits: int) -> list[str]:
    """Open ``accounts`` accounts with ``deposits`` deposits each; the event ids, in order."""
    store = DjangoEventStore()
    ids: list[str] = []
    for n in range(accounts):
        stream = f"{prefix}-{n}-{uuid.uuid4().hex[:6]}"
        events = [AccountOpened(account_id=stream, owner="Ann", initial_deposit=1.0)] + [
            MoneyDeposited(account_id=stream, amount=Decimal(k)) for k in (1, 2, 5)[:deposits]
        ]
        store.save(stream, events, expected_version=0)
        ids += [e.id for e in events]
    return ids


def assert_healthy_without_letters(projection_id: str) -> None:
    status = projection_status(projection_id)
    assert status.healthy and not status.paused, status
    assert status.lag == 0 and status.last_error is None, status
    assert DjangoDeadLetterQueue().count() == 0


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


# ---------------------------------------------------------------- classification


def test_real_errors_are_classified_faults_or_not(tmp_path: Path) -> None:
    """Errors the database really raises: the code's errors are not faults, a deadlock is."""
    with pytest.raises(DatabaseError) as missing, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM orchestrix_no_such_table")
    assert not is_database_fault(missing.value)
    AccountBalance.objects.create(account_id="A", owner="Ann", balance=1, events=1)
    with pytest.raises(DatabaseError) as duplicate, transaction.atomic():
        AccountBalance.objects.create(account_id="A", owner="Ann", balance=1, events=1)
    assert not is_database_fault(duplicate.value)
    assert not is_database_fault(RuntimeError("not a database error"))

    if connection.vendor == "sqlite":
        error = _sqlite_locked_through_django()
        assert fault_kind(error) is FaultKind.LOCKED, error
    else:
        error = _deadlock()
        assert fault_kind(error) is FaultKind.DEADLOCK, error
    # A command handler a process manager dispatched met it: the bus wraps it.
    assert fault_kind(HandlerError("ShipOrder", "ship", error)) is fault_kind(error)
    assert not is_database_fault(HandlerError("ShipOrder", "ship", duplicate.value))


def _sqlite_locked_through_django() -> BaseException:
    """The "database is locked" Django raises while another connection holds the lock."""
    holder = sqlite3.connect(connection.settings_dict["NAME"], timeout=0)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 0")
        try:
            with pytest.raises(DatabaseError) as locked:
                AppliedEvent.objects.create(projection="locked", event_id="x", position=0)
        finally:
            holder.rollback()
            connection.close()  # its busy timeout goes back to the settings' one
        return locked.value
    finally:
        holder.close()


def _deadlock() -> BaseException:
    """Two transactions that each wait for the other: the server kills one of them."""
    for key in ("D1", "D2"):
        AccountBalance.objects.create(account_id=key, owner="Ann", balance=1, events=1)
    barrier = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def lock(first: str, second: str) -> None:
        try:
            with transaction.atomic():
                AccountBalance.objects.filter(account_id=first).update(events=2)
                barrier.wait()
                AccountBalance.objects.filter(account_id=second).update(events=2)
        except DatabaseError as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=lock, args=pair) for pair in (("D1", "D2"), ("D2", "D1"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(errors) == 1, errors
    return errors[0]


# ---------------------------------------------------------------- projections


def test_a_connection_cut_while_a_handler_runs_is_ridden_out(
    server: str, metrics: InMemoryMetricsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = get_projection("test-slow")  # batches of 5; each handler call can be made to wait
    reset_projection(slow)
    written = write_accounts("cut", accounts=3, deposits=3)
    trace = tmp_path / "trace"
    monkeypatch.setenv("ORCHESTRIX_TEST_SLOW_TRACE", str(trace))
    monkeypatch.setenv("ORCHESTRIX_TEST_SLOW_SECONDS", "0.5")
    backend: list[int] = []
    results: list[Any] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            backend.append(backend_id())
            results.append(catch_up(slow))
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=runner)
    thread.start()
    # The second handler call of the first batch is running (its batch is open).
    wait_for(lambda: trace.exists() and len(trace.read_text().split()) >= 2, 30, "handler")
    cut(backend[0])
    cut_at = time.monotonic()
    monkeypatch.setenv("ORCHESTRIX_TEST_SLOW_SECONDS", "0")
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    faults = faults_counted(metrics, component="projection", name="test-slow", kind="connection")
    print(
        f"\n{server}: connection cut mid-batch: {len(written)} events, {faults:g} fault(s) "
        f"counted, at the head {time.monotonic() - cut_at:.2f} s after the cut, "
        f"{len(read_model('test-slow'))} applied"
    )
    [result] = results
    assert result.stopped is None and result.lag == 0, result
    applied = read_model("test-slow")
    assert applied == written  # each event once, in log order
    assert_healthy_without_letters("test-slow")
    assert faults >= 1
    # The cut interrupted the batch: its handlers ran again after the reconnection.
    assert Counter(trace.read_text().split())[written[1]] == 2
    assert replay_mismatches(["test-slow"]) == []


def test_a_locked_sqlite_database_in_a_handler_is_waited_out_not_parked(
    metrics: InMemoryMetricsProvider, tmp_path: Path
) -> None:
    """A handler writing to a second SQLite file that another connection holds locked."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own lock")
    side = tmp_path / "side.sqlite3"
    with contextlib.closing(sqlite3.connect(side)) as setup:
        setup.execute("CREATE TABLE seen (event_id TEXT)")
        setup.commit()
    projection = DjangoProjection("test-locked-side")

    @projection.on(AccountOpened)
    def opened(event: AccountOpened) -> None:
        AppliedEvent.objects.create(projection="locked-side", event_id=event.id, position=0)
        with contextlib.closing(sqlite3.connect(side, timeout=0)) as db:
            db.execute("INSERT INTO seen VALUES (?)", (event.id,))
            db.commit()

    written = write_accounts("locked", accounts=3, deposits=0)
    holder = sqlite3.connect(side, timeout=0, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(1.0, holder.rollback)
    release.start()
    try:
        result = catch_up(projection)
    finally:
        release.join()
        holder.close()
    assert result.stopped is None and result.lag == 0
    print(f"\nsqlite: database locked for 1 s: {len(written)} events, {result.faults} fault(s)")
    applied = list(
        AppliedEvent.objects.filter(projection="locked-side")
        .order_by("id")
        .values_list("event_id", flat=True)
    )
    assert applied == written
    with contextlib.closing(sqlite3.connect(side)) as db:
        assert [row[0] for row in db.execute("SELECT event_id FROM seen")] == written
    assert_healthy_without_letters("test-locked-side")
    assert faults_counted(metrics, component="projection", kind="locked") >= 1


def test_the_periodic_tasks_and_the_sweep_note_a_locked_database_and_fail_nothing(
    metrics: InMemoryMetricsProvider,
) -> None:
    """The Celery periodic catch-up, the Celery sweep and the embedded sweep meet a lock."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's own lock")
    from orchestrix_django.sagas.sweep import EmbeddedSagaRunner
    from orchestrix_django.tasks import catch_up_projections, sweep_sagas

    nothing: dict[str, list[str]] = {"timed_out": [], "deadlines": [], "resumed": []}
    sweeper = EmbeddedSagaRunner(poll_interval=1.0)
    holder = sqlite3.connect(connection.settings_dict["NAME"], timeout=0)

    def impatient() -> None:
        """This connection gives up on the lock at once (a fault closes it: set it again)."""
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA busy_timeout = 0")

    try:
        impatient()
        holder.execute("BEGIN EXCLUSIVE")
        assert catch_up_projections() == []
        impatient()
        assert sweep_sagas() == nothing
        impatient()
        assert sweeper.run_pass() == nothing
    finally:
        holder.rollback()
        holder.close()
        connection.close()
    assert sweeper.errors == 0
    assert faults_counted(metrics, component="periodic_catch_up", kind="locked") == 1
    assert faults_counted(metrics, component="saga_sweep", kind="locked") == 2
    # The lock is gone: the next pass works, and counts nothing more.
    assert sweeper.run_pass() == nothing and sweeper.errors == 0
    assert faults_counted(metrics) == 3


# ---------------------------------------------------------------- sagas


def _run_lock_holder(saga_id: str) -> int:
    """The server connection holding the run lock of ``saga_id``."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
                "AND objid = %s AND objsubid = 2 AND granted",
                [PG_NAMESPACE, _pg_key(saga_id) & 0xFFFFFFFF],
            )
        else:
            cursor.execute("SELECT IS_USED_LOCK(%s)", [_mysql_name(saga_id)])
        row = cursor.fetchone()
    assert row is not None and row[0] is not None, f"nobody holds saga {saga_id}'s run lock"
    return int(row[0])


def _run_saga_cut_at(
    marker: str, amount: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, Any, float]:
    """Run a saga in a thread, cut its connection while ``marker`` holds a step; its end."""
    monkeypatch.setenv(MARKERS_ENV, str(tmp_path))
    hold = tmp_path / marker
    hold.touch()
    saga_id = order_fulfillment.start(order_id=f"FAULT-{uuid.uuid4().hex[:8]}", amount=amount)
    results: list[Any] = []
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            results.append(run_saga(saga_id))
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=runner)
    thread.start()
    wait_for((tmp_path / f"entered-{marker}").exists, 30, marker)
    cut(_run_lock_holder(saga_id))
    cut_at = time.monotonic()
    hold.unlink()  # the step goes on, on a connection that is gone
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    [final] = results
    return saga_id, final, time.monotonic() - cut_at


def _calls(saga_id: str) -> dict[tuple[str, str], int]:
    return {(row.step, row.kind): row.calls for row in SagaStepCall.objects.filter(saga_id=saga_id)}


def test_a_connection_cut_mid_saga_step_runs_the_step_again_once(
    server: str, metrics: InMemoryMetricsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saga_id, final, seconds = _run_saga_cut_at(
        "hold-charge_payment-action", 25.0, tmp_path, monkeypatch
    )
    faults = faults_counted(metrics, component="saga", name="order-fulfillment", kind="connection")
    print(f"\n{server}: connection cut mid-step: {faults:g} fault(s), done {seconds:.2f} s after")
    assert final is not None and final.status is SagaStatus.COMPLETED, final
    stored = DjangoSagaStateStore().load(saga_id)
    assert stored is not None and stored.status is SagaStatus.COMPLETED
    assert stored.step("reserve_inventory").attempts == 1
    assert stored.step("charge_payment").attempts == 2  # the cut attempt, then once more
    assert stored.step("ship_order").attempts == 1
    # The cut call never reached its write; nothing was compensated.
    assert _calls(saga_id) == {
        ("reserve_inventory", "action"): 1,
        ("charge_payment", "action"): 1,
        ("ship_order", "action"): 1,
    }
    assert faults >= 1


def test_a_connection_cut_mid_compensation_runs_it_again_once(
    server: str, metrics: InMemoryMetricsProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A declined payment: the reservation's compensation is cut, then runs again once."""
    saga_id, final, seconds = _run_saga_cut_at(
        "hold-reserve_inventory-compensation", 2000.0, tmp_path, monkeypatch
    )
    faults = faults_counted(metrics, component="saga", name="order-fulfillment", kind="connection")
    print(f"\n{server}: connection cut mid-compensation: {faults:g} fault(s), {seconds:.2f} s")
    assert final is not None and final.status is SagaStatus.FAILED, final
    assert final.fully_compensated and "declined" in (final.error or ""), final
    stored = DjangoSagaStateStore().load(saga_id)
    assert stored is not None and stored.fully_compensated
    assert stored.step("reserve_inventory").compensation_attempts == 2
    assert stored.step("charge_payment").attempts == 1  # the decline is not run again
    assert _calls(saga_id) == {
        ("reserve_inventory", "action"): 1,
        ("charge_payment", "action"): 1,
        ("reserve_inventory", "compensation"): 1,
    }
    assert faults >= 1
