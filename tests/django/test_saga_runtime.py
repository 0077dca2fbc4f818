"""Django sagas in this process: starting, running, resuming, locks, deadlines, metrics, ids.

The Celery workers are in test_saga_celery.py; the step functions, and the
reference's order fulfilment saga, in tests/django/testapp/sagas.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections, transaction
from django.test import override_settings

from orchestrix.core.common.exceptions import SagaError
from orchestrix.core.common.retry import FixedDelay
from orchestrix.core.execution.saga import SagaState, SagaStatus, SagaStep
from orchestrix.core.execution.saga_state import StepStatus
from orchestrix.core.messaging.message import Command
from orchestrix_django.models import EventRecord, SagaStateRecord
from orchestrix_django.sagas import (
    DjangoSaga,
    current_saga,
    expire_overdue_sagas,
    get_saga,
    resume_sagas,
    run_saga,
    sagas,
    start_saga,
)
from orchestrix_django.sagas.locks import SagaRunLock, saga_is_running
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from tests.django.testapp import modules as testapp_modules
from tests.django.testapp.models import SagaStepCall
from tests.django.testapp.sagas import (
    charge_payment,
    order_fulfillment,
    record_call,
    refund_payment,
    release_inventory,
    reserve_inventory,
    ship_order,
)

ROOT = Path(__file__).resolve().parents[2]
HERE = "tests.django.test_saga_runtime"

db = pytest.mark.django_db(transaction=True)


# ---------------------------------------------------------------- helpers and sagas of this module


class Crash(BaseException):
    """What a step raises to stand for its worker dying mid-call."""


#: Steps named here raise Crash on their first call (per saga id).
CRASH_ON: set[str] = set()
_crashed: set[str] = set()
#: Seconds the ``slow`` step sleeps.
SLOW_SECONDS = [0.0]


def crashing_step(idempotency_key: str) -> str:
    """Records its call; crashes once when its step is in CRASH_ON."""
    record_call(idempotency_key, "action")
    step = idempotency_key.rpartition(":")[2]
    if step in CRASH_ON and idempotency_key not in _crashed:
        _crashed.add(idempotency_key)
        raise Crash(idempotency_key)
    time.sleep(SLOW_SECONDS[0])
    return step


def undo(idempotency_key: str) -> None:
    record_call(idempotency_key, "compensation")


def timed_out(idempotency_key: str, step: str | None, reason: str) -> None:
    record_call(idempotency_key, "timeout")


def steps(*names: str) -> list[SagaStep]:
    return [SagaStep(name, crashing_step, compensation=undo) for name in names]


crashy = DjangoSaga("test-crashy", steps("first", "second", "third"))
punctual = DjangoSaga(
    "test-punctual",
    steps("first", "second", "third"),
    deadlines={"second": timedelta(seconds=0.5)},
    on_timeout=timed_out,
)
hurried = DjangoSaga("test-hurried", steps("first", "second"), timeout=timedelta(seconds=1))


def flaky_step(idempotency_key: str) -> str:
    """Fails its first two calls (a flaky payment provider)."""
    record_call(idempotency_key, "action")
    if SagaStepCall.objects.get(key=f"{idempotency_key}:action").calls <= 2:
        raise ConnectionError("provider unreachable")
    return "ok"


persistent = DjangoSaga(
    "test-persistent",
    [
        SagaStep("first", crashing_step, compensation=undo),
        SagaStep("flaky", flaky_step, retry_policy=FixedDelay(max_retries=2, delay=0.01)),
    ],
)

MODULE_SAGAS = [f"{HERE}.crashy", f"{HERE}.punctual", f"{HERE}.hurried", f"{HERE}.persistent"]


@pytest.fixture(autouse=True)
def _module_sagas(settings: Any) -> Iterator[None]:
    """The test settings' sagas plus this module's; metrics to the test app's hooks."""
    settings.ORCHESTRIX = {
        **settings.ORCHESTRIX,
        "SAGAS": [*settings.ORCHESTRIX["SAGAS"], *MODULE_SAGAS],
        "OBSERVABILITY": "tests.django.testapp.modules.hooks",
    }
    CRASH_ON.clear()
    _crashed.clear()
    SLOW_SECONDS[0] = 0.0
    testapp_modules.metrics.clear()
    yield
    CRASH_ON.clear()


def calls(saga_id: str) -> dict[str, int]:
    """``"<step>:<kind>" -> calls`` of one saga."""
    rows = SagaStepCall.objects.filter(saga_id=saga_id)
    return {f"{row.step}:{row.kind}": row.calls for row in rows}


def stored(saga_id: str) -> SagaState:
    state = DjangoSagaStateStore().load(saga_id)
    assert state is not None
    return state


def deadline_column(saga_id: str) -> datetime | None:
    return SagaStateRecord.objects.get(pk=saga_id).deadline


def metric(name: str, **labels: str) -> float:
    return testapp_modules.metrics.total(f"orchestrix.sagas.{name}", **labels)


class PlaceOrder(Command):
    """The command that starts the order sagas."""


# ---------------------------------------------------------------- the reference's example


@db
def test_the_reference_example_runs_as_written_with_django_saga() -> None:
    saga = DjangoSaga(
        saga_type="order-fulfillment",
        steps=[
            SagaStep(
                name="reserve_inventory",
                action=reserve_inventory,
                compensation=release_inventory,
            ),
            SagaStep(
                name="charge_payment",
                action=charge_payment,
                compensation=refund_payment,
            ),
            SagaStep(name="ship_order", action=ship_order),
        ],
    )

    async def main() -> None:
        await saga.initialize()
        await saga.execute(order_id="ORD-001", amount=99.99)
        assert saga.is_successful()

    async_to_sync(main)()
    saga_id = saga.get_state().saga_id
    assert stored(saga_id).status is SagaStatus.COMPLETED
    assert calls(saga_id) == {
        "reserve_inventory:action": 1,
        "charge_payment:action": 1,
        "ship_order:action": 1,
    }


@db
def test_the_core_saga_of_the_reference_runs_from_the_settings() -> None:
    # ORCHESTRIX["SAGAS"] lists the reference's `Saga(..., state_store=DjangoSagaStateStore())`.
    saga_id = start_saga("order-fulfillment-core", order_id="ORD-002", amount=10.0)
    final = run_saga(saga_id)
    assert final is not None and final.status is SagaStatus.COMPLETED
    assert isinstance(get_saga("order-fulfillment-core"), DjangoSaga)


# ---------------------------------------------------------------- starting and running


@db
def test_start_stores_a_pending_saga_and_the_ids_flow_to_the_events_of_its_steps() -> None:
    command = PlaceOrder(correlation_id="corr-1", trace_id="trace-1")
    saga_id = order_fulfillment.start(order_id="ORD-1", amount=25.5, caused_by=command)
    state = stored(saga_id)
    assert state.status is SagaStatus.PENDING
    assert state.kwargs == {"order_id": "ORD-1", "amount": 25.5}
    assert (state.correlation_id, state.causation_id, state.trace_id) == (
        "corr-1",
        command.id,
        "trace-1",
    )
    assert [record.name for record in state.steps] == [
        "reserve_inventory",
        "charge_payment",
        "ship_order",
    ]
    assert calls(saga_id) == {}  # WAKE_UP is "none": orchestrix_run will run it
    final = run_saga(saga_id)
    assert final is not None and final.status is SagaStatus.COMPLETED
    assert final.results["ship_order"] == {"tracking": "TRK-ORD-1"}
    [shipped] = EventRecord.objects.filter(event_type="OrderShipped")
    assert shipped.event_id == f"{saga_id}:ship_order"  # the idempotency key
    assert (shipped.correlation_id, shipped.causation_id) == ("corr-1", command.id)
    assert shipped.metadata["trace_id"] == "trace-1"
    # A finished saga runs nothing again.
    assert run_saga(saga_id) == final
    assert set(calls(saga_id).values()) == {1}


@db
def test_a_saga_started_without_a_cause_starts_its_own_conversation() -> None:
    saga_id = start_saga("order-fulfillment", order_id="ORD-2", amount=1.0, trace_id="t-2")
    state = stored(saga_id)
    assert (state.correlation_id, state.causation_id, state.trace_id) == (saga_id, None, "t-2")


@db
def test_starting_an_existing_saga_id_again() -> None:
    saga_id = start_saga("order-fulfillment", saga_id="fixed", order_id="ORD-3", amount=1.0)
    assert start_saga("order-fulfillment", saga_id="fixed", order_id="ORD-3", amount=1.0) == "fixed"
    with pytest.raises(SagaError, match="exists already"):
        start_saga("order-fulfillment", saga_id="fixed", order_id="OTHER", amount=1.0)
    with pytest.raises(SagaError, match="exists already"):
        start_saga("test-crashy", saga_id=saga_id)
    with pytest.raises(KeyError, match=r"no saga of type 'nope' .*order-fulfillment"):
        start_saga("nope")
    assert run_saga("no-such-saga") is None


@db
def test_a_failing_step_compensates_the_completed_ones_and_everything_is_reported() -> None:
    good = start_saga("order-fulfillment", order_id="ORD-4", amount=10.0)
    unshippable = start_saga("order-fulfillment", order_id="NOSHIP-4", amount=10.0)
    declined = start_saga("order-fulfillment", order_id="ORD-5", amount=5000.0)
    for saga_id in (good, unshippable, declined):
        run_saga(saga_id)

    state = stored(unshippable)
    assert state.status is SagaStatus.FAILED and state.fully_compensated
    assert state.failed_step == "ship_order"
    assert "no carrier delivers order NOSHIP-4" in (state.error or "")
    assert calls(unshippable) == {
        "reserve_inventory:action": 1,
        "charge_payment:action": 1,
        "ship_order:action": 1,
        "charge_payment:compensation": 1,
        "reserve_inventory:compensation": 1,
    }
    assert calls(declined) == {
        "reserve_inventory:action": 1,
        "charge_payment:action": 1,
        "reserve_inventory:compensation": 1,
    }
    assert stored(declined).failed_step == "charge_payment"

    kind = {"saga_type": "order-fulfillment"}
    assert metric("started", **kind) == 3
    assert metric("completed", **kind) == 1
    assert metric("compensated", **kind) == 2
    assert metric("failed", **kind) == 2
    durations = testapp_modules.metrics.values
    assert len(durations("orchestrix.sagas.step_duration", step="reserve_inventory")) == 3
    assert durations("orchestrix.sagas.step_duration", step="ship_order", outcome="error")
    assert len(durations("orchestrix.sagas.step_duration", step="charge_payment:compensation")) == 1


@db
def test_a_step_is_retried_by_its_retry_policy() -> None:
    saga_id = start_saga("test-persistent")
    final = run_saga(saga_id)
    assert final is not None and final.status is SagaStatus.COMPLETED
    assert final.step("flaky").attempts == 3
    assert calls(saga_id) == {"first:action": 1, "flaky:action": 3}
    durations = testapp_modules.metrics.values
    assert len(durations("orchestrix.sagas.step_duration", step="flaky", outcome="error")) == 2


@db
def test_a_crashed_run_resumes_without_running_a_completed_step_again() -> None:
    CRASH_ON.add("second")
    saga_id = start_saga("test-crashy")
    with pytest.raises(Crash):
        run_saga(saga_id)
    state = stored(saga_id)
    assert state.status is SagaStatus.IN_PROGRESS
    assert [r.status for r in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.RUNNING,
        StepStatus.PENDING,
    ]
    assert not saga_is_running(saga_id)  # the crashed runner let go of it
    final = run_saga(saga_id)
    assert final is not None and final.status is SagaStatus.COMPLETED
    assert calls(saga_id) == {"first:action": 1, "second:action": 2, "third:action": 1}
    assert final.step("second").attempts == 2


@db
def test_a_runner_asked_to_stop_stops_between_steps_and_the_saga_resumes() -> None:
    saga_id = start_saga("test-crashy")
    ran: list[str] = []

    def stop_after_first() -> bool:
        ran.append("asked")
        return bool(calls(saga_id))

    state = run_saga(saga_id, should_stop=stop_after_first)
    assert state is not None and state.status is SagaStatus.IN_PROGRESS
    assert calls(saga_id) == {"first:action": 1}
    final = run_saga(saga_id)
    assert final is not None and final.status is SagaStatus.COMPLETED
    assert calls(saga_id) == {"first:action": 1, "second:action": 1, "third:action": 1}


def test_current_saga_outside_a_step_is_an_error() -> None:
    with pytest.raises(LookupError, match="only available while a DjangoSaga step runs"):
        current_saga()


def test_sagas_are_loaded_from_the_settings() -> None:
    assert set(sagas()) >= {
        "order-fulfillment",
        "order-fulfillment-core",
        "order-with-deadline",
        "test-crashy",
    }
    with pytest.raises(ValueError, match="deadlines name unknown steps"):
        DjangoSaga("x", steps("a"), deadlines={"b": timedelta(seconds=1)})
    with pytest.raises(ValueError, match="positive timedelta"):
        DjangoSaga("x", steps("a"), timeout=timedelta(0))


# ---------------------------------------------------------------- the run lock


@db
def test_a_saga_another_runner_holds_is_left_to_it() -> None:
    saga_id = start_saga("test-crashy")
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        lock = SagaRunLock(saga_id)
        try:
            assert lock.acquire()
            taken.set()
            release.wait(30)
            lock.release()
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30)
        assert saga_is_running(saga_id)
        assert run_saga(saga_id) is None
        assert resume_sagas() == []
        assert calls(saga_id) == {}
    finally:
        release.set()
        holder.join(30)
    assert not saga_is_running(saga_id)
    assert resume_sagas() == [saga_id]
    assert stored(saga_id).status is SagaStatus.COMPLETED


#: Takes the run lock of a saga in a separate process, says "locked", waits.
HOLDER = textwrap.dedent(
    """
    import os, sys, time

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from orchestrix_django.sagas.locks import SagaRunLock

    print("locked" if SagaRunLock(sys.argv[1]).acquire() else "busy", flush=True)
    time.sleep(120)
    """
)


@db
def test_the_lock_of_a_runner_that_dies_is_released_at_once() -> None:
    env = {**os.environ, "ORCHESTRIX_WORKER_DB_NAME": str(connection.settings_dict["NAME"])}
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "saga-x"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "locked"
        assert saga_is_running("saga-x")
        assert not saga_is_running("saga-y")
        process.kill()
        process.wait(30)
        assert not saga_is_running("saga-x")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


# ---------------------------------------------------------------- deadlines


@db
def test_a_step_that_completes_after_its_deadline_is_compensated_with_the_others() -> None:
    SLOW_SECONDS[0] = 0.7  # "second" may take 0.5 s
    saga_id = start_saga("test-punctual")
    final = run_saga(saga_id)
    assert final is not None and final.status is SagaStatus.FAILED
    assert final.error == "timed out: step 'second' completed after its deadline (0:00:00.500000)"
    assert final.compensated_steps == ["first", "second"]
    assert calls(saga_id) == {
        "first:action": 1,
        "second:action": 1,
        "second:timeout": 1,
        "second:compensation": 1,
        "first:compensation": 1,
    }
    assert metric("timed_out", saga_type="test-punctual") == 1
    assert metric("compensated", saga_type="test-punctual") == 1
    assert deadline_column(saga_id) is None


@db
def test_an_abandoned_step_is_timed_out_by_the_sweep_once_its_deadline_passed() -> None:
    CRASH_ON.add("second")
    saga_id = start_saga("test-punctual")
    with pytest.raises(Crash):
        run_saga(saga_id)  # the worker "dies" in "second"
    state = stored(saga_id)
    started = state.step("second").started_at
    assert started is not None
    assert deadline_column(saga_id) == started + timedelta(seconds=0.5)
    assert expire_overdue_sagas() == []  # not due yet
    later = started + timedelta(seconds=1)
    assert expire_overdue_sagas(now=later) == [saga_id]
    final = stored(saga_id)
    assert final.status is SagaStatus.FAILED and final.fully_compensated
    assert final.step("second").status is StepStatus.FAILED
    assert final.step("second").error == (
        "DeadlinePassed: step 'second' did not complete within 0:00:00.500000"
    )
    # The late step's outcome is unknown: it is not compensated, the others are.
    assert calls(saga_id) == {
        "first:action": 1,
        "second:action": 1,
        "second:timeout": 1,
        "first:compensation": 1,
    }
    assert expire_overdue_sagas(now=later) == []


@db
def test_a_resumed_saga_whose_step_deadline_passed_is_timed_out_instead_of_retried() -> None:
    CRASH_ON.add("second")
    saga_id = start_saga("test-punctual")
    with pytest.raises(Crash):
        run_saga(saga_id)
    time.sleep(0.6)
    final = run_saga(saga_id)  # a redelivered task, after the deadline
    assert final is not None and final.status is SagaStatus.FAILED
    assert calls(saga_id)["second:action"] == 1  # not called again
    assert calls(saga_id)["first:compensation"] == 1


@db
def test_a_saga_never_picked_up_fails_at_its_timeout_without_running_anything() -> None:
    saga_id = start_saga("test-hurried")
    assert deadline_column(saga_id) == stored(saga_id).created_at + timedelta(seconds=1)
    assert expire_overdue_sagas(now=datetime.now(UTC) + timedelta(seconds=2)) == [saga_id]
    final = stored(saga_id)
    assert final.status is SagaStatus.FAILED
    assert final.error == "timed out: saga did not finish within 0:00:01"
    assert calls(saga_id) == {}
    assert metric("failed", saga_type="test-hurried") == 1


@db
def test_an_async_step_still_running_at_its_deadline_is_cancelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRIX_TEST_SAGA_MARKERS", str(tmp_path))
    (tmp_path / "block-confirm_payment-action").touch()  # it never confirms
    saga_id = start_saga("order-awaiting-confirmation", order_id="ORD-6", amount=3.0)
    started = time.monotonic()
    final = run_saga(saga_id)
    elapsed = time.monotonic() - started
    assert final is not None and final.status is SagaStatus.FAILED and final.fully_compensated
    assert 1.5 < elapsed < 10
    assert final.step("confirm_payment").error == (
        "DeadlinePassed: step 'confirm_payment' did not complete within 0:00:02"
    )
    assert final.error == "timed out: step 'confirm_payment' did not complete within 0:00:02"
    assert calls(saga_id) == {
        "reserve_inventory:action": 1,
        "confirm_payment:action": 1,
        "confirm_payment:timeout": 1,
        "reserve_inventory:compensation": 1,
    }


# ---------------------------------------------------------------- resuming


@db
def test_resume_runs_unfinished_sagas_nobody_runs_oldest_first() -> None:
    CRASH_ON.add("third")
    crashed = start_saga("test-crashy")
    with pytest.raises(Crash):
        run_saga(crashed)
    CRASH_ON.clear()
    pending = start_saga("test-crashy")
    finished = start_saga("order-fulfillment", order_id="ORD-7", amount=1.0)
    run_saga(finished)
    assert resume_sagas(older_than=3600) == []  # too recent
    assert resume_sagas() == [crashed, pending]
    assert stored(crashed).status is SagaStatus.COMPLETED
    assert stored(pending).status is SagaStatus.COMPLETED
    assert calls(crashed) == {"first:action": 1, "second:action": 1, "third:action": 2}


@db
def test_start_in_a_transaction_that_rolls_back_stores_nothing() -> None:
    def start_then_fail() -> None:
        with transaction.atomic():
            start_saga("order-fulfillment", saga_id="rolled-back", order_id="X", amount=1.0)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        start_then_fail()
    assert not SagaStateRecord.objects.filter(pk="rolled-back").exists()


def test_override_settings_reload_the_registry() -> None:
    with override_settings(ORCHESTRIX={"SAGAS": []}):
        assert sagas() == {}
    assert "order-fulfillment" in sagas()
