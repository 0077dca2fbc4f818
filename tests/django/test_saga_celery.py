"""Sagas and process managers on real Celery workers: the reference's example, SIGKILLs, deadlines.

Workers are real ``celery worker`` processes on the test database and the
test Redis (tests/django/test_celery_projections.py's :class:`Worker`), with
a visibility timeout of 3 s, so that the message of a killed worker is handed
out again soon. Steps pause where a test puts a marker file (see
tests/django/testapp/sagas.py); every test kills the workers it started
before it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from orchestrix.core.execution.saga import SagaState, SagaStatus, StepStatus
from orchestrix_django.sagas import start_saga
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from tests.django.test_celery_projections import Worker, all_logs, queued, running
from tests.django.testapp.models import SagaStepCall
from tests.django.testapp.sagas import OrderPlaced, order_process

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def broker(settings: Any, broker: redis.Redis) -> redis.Redis:
    """The test Redis database, empty; ``WAKE_UP = "celery"`` in this process."""
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "WAKE_UP": "celery"}
    return broker


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    """The directory of the steps' pause markers."""
    directory = tmp_path / "markers"
    directory.mkdir()
    return directory


def worker(name: str, tmp_path: Path, markers: Path, **env: str) -> Worker:
    return Worker(
        name,
        tmp_path,
        {
            "ORCHESTRIX_TEST_VISIBILITY_TIMEOUT": "3",
            "ORCHESTRIX_TEST_SAGA_MARKERS": str(markers),
            "ORCHESTRIX_TEST_SAGA_SWEEP_INTERVAL": "1",
            **env,
        },
    )


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{logs()}")
        time.sleep(0.1)


def state(saga_id: str) -> SagaState:
    found = DjangoSagaStateStore().load(saga_id)
    assert found is not None
    return found


def finished(*saga_ids: str) -> Callable[[], bool]:
    return lambda: all(state(saga_id).is_finished for saga_id in saga_ids)


def calls(saga_id: str) -> dict[str, int]:
    rows = SagaStepCall.objects.filter(saga_id=saga_id)
    return {f"{row.step}:{row.kind}": row.calls for row in rows}


def task_id(client: redis.Redis, saga_id: str) -> str:
    [task] = [q for q in queued(client) if q.task == "orchestrix.run_saga" and q.args == [saga_id]]
    return task.task_id


# ---------------------------------------------------------------- the reference's example


def test_the_reference_example_runs_on_celery(
    broker: redis.Redis, tmp_path: Path, markers: Path
) -> None:
    the_worker = worker("orders", tmp_path, markers)
    with running(the_worker):
        the_worker.start()
        shipped = start_saga(
            "order-fulfillment",
            order_id="ORD-001",
            amount=99.99,
            correlation_id="corr-A",
            trace_id="trace-A",
        )
        unshippable = start_saga("order-fulfillment", order_id="NOSHIP-001", amount=99.99)
        declined = start_saga("order-fulfillment", order_id="ORD-003", amount=2500.0)
        as_core_saga = start_saga("order-fulfillment-core", order_id="ORD-004", amount=5.0)
        sagas = (shipped, unshippable, declined, as_core_saga)
        wait_for(finished(*sagas), 60, "the sagas finish", all_logs(the_worker))
        the_worker.stop()

    assert state(shipped).status is SagaStatus.COMPLETED
    assert state(shipped).results["ship_order"] == {"tracking": "TRK-ORD-001"}
    assert state(as_core_saga).status is SagaStatus.COMPLETED
    assert set(calls(shipped).values()) == {1} and len(calls(shipped)) == 3

    compensated = state(unshippable)
    assert compensated.status is SagaStatus.FAILED and compensated.fully_compensated
    assert compensated.compensated_steps == ["reserve_inventory", "charge_payment"]
    assert calls(unshippable) == {
        "reserve_inventory:action": 1,
        "charge_payment:action": 1,
        "ship_order:action": 1,
        "charge_payment:compensation": 1,
        "reserve_inventory:compensation": 1,
    }
    assert state(declined).failed_step == "charge_payment"
    assert calls(declined)["reserve_inventory:compensation"] == 1

    # The ids went from the start to the task's headers and log, and to the step's event.
    log = the_worker.log()
    assert f"running saga {shipped} (correlation_id=corr-A causation_id=- trace_id=trace-A)" in log
    [event] = DjangoEventStore().load("order-ORD-001")
    assert (event.type, event.correlation_id, event.trace_id) == (
        "OrderShipped",
        "corr-A",
        "trace-A",
    )


# ---------------------------------------------------------------- SIGKILL


def test_a_worker_killed_mid_step_is_resumed_by_another_without_repeating_a_completed_step(
    broker: redis.Redis, tmp_path: Path, markers: Path
) -> None:
    block = markers / "block-charge_payment-action"
    block.touch()
    saga_id = start_saga("order-fulfillment", order_id="K-1", amount=20.0)
    message = task_id(broker, saga_id)
    doomed = worker("doomed", tmp_path, markers)
    survivor = worker("survivor", tmp_path, markers)
    logs = all_logs(doomed, survivor)
    with running(doomed, survivor):
        doomed.start()
        entered = markers / "entered-block-charge_payment-action"
        wait_for(entered.exists, 60, "the payment step starts", logs)
        doomed.kill()  # mid-step: charged, but the step never returned
        interrupted = state(saga_id)
        assert interrupted.status is SagaStatus.IN_PROGRESS
        assert interrupted.step("reserve_inventory").status is StepStatus.COMPLETED
        assert interrupted.step("charge_payment").status is StepStatus.RUNNING
        block.unlink()
        # Nothing but the message the dead worker never acknowledged resumes it.
        survivor.start()
        wait_for(finished(saga_id), 60, "the survivor resumes the saga", logs)
        survivor.stop()
    assert f"orchestrix.run_saga[{message}] received" in survivor.log()
    final = state(saga_id)
    assert final.status is SagaStatus.COMPLETED
    assert calls(saga_id) == {
        "reserve_inventory:action": 1,  # completed: never again
        "charge_payment:action": 2,  # interrupted: again, with the same idempotency key
        "ship_order:action": 1,
    }
    assert final.step("charge_payment").attempts == 2
    assert final.step("reserve_inventory").attempts == 1


def test_a_worker_killed_mid_compensation_is_resumed_and_each_compensation_runs_once(
    broker: redis.Redis, tmp_path: Path, markers: Path
) -> None:
    hold = markers / "hold-reserve_inventory-compensation"
    hold.touch()
    saga_id = start_saga("order-fulfillment", order_id="NOSHIP-K2", amount=20.0)
    doomed = worker("doomed", tmp_path, markers)
    survivor = worker("survivor", tmp_path, markers)
    logs = all_logs(doomed, survivor)
    with running(doomed, survivor):
        doomed.start()
        entered = markers / "entered-hold-reserve_inventory-compensation"
        wait_for(entered.exists, 60, "the last compensation starts", logs)
        doomed.kill()
        interrupted = state(saga_id)
        assert interrupted.status is SagaStatus.COMPENSATING
        assert interrupted.step("charge_payment").status is StepStatus.COMPENSATED
        assert interrupted.step("reserve_inventory").status is StepStatus.COMPENSATING
        hold.unlink()
        survivor.start()
        wait_for(finished(saga_id), 60, "the survivor finishes compensating", logs)
        survivor.stop()
    final = state(saga_id)
    assert final.status is SagaStatus.FAILED and final.fully_compensated
    assert calls(saga_id) == {
        "reserve_inventory:action": 1,
        "charge_payment:action": 1,
        "ship_order:action": 1,
        "charge_payment:compensation": 1,  # done before the kill: never again
        "reserve_inventory:compensation": 1,  # interrupted before its call: once
    }
    assert final.step("reserve_inventory").compensation_attempts == 2
    assert final.step("charge_payment").compensation_attempts == 1


# ---------------------------------------------------------------- deadlines


def test_a_step_that_never_completes_is_compensated_after_its_deadline_across_a_restart(
    broker: redis.Redis, tmp_path: Path, markers: Path
) -> None:
    (markers / "block-charge_payment-action").touch()  # the payment never returns
    saga_id = start_saga("order-with-deadline", order_id="D-1", amount=20.0)
    doomed = worker("doomed", tmp_path, markers)
    restarted = worker("restarted", tmp_path, markers)
    logs = all_logs(doomed, restarted)
    with running(doomed, restarted):
        doomed.start()
        entered = markers / "entered-block-charge_payment-action"
        wait_for(entered.exists, 60, "the payment step starts", logs)
        doomed.kill()
        started = state(saga_id).step("charge_payment").started_at
        assert started is not None
        # The deadline (2 s) passes while no worker runs.
        time.sleep(2.5)
        assert state(saga_id).status is SagaStatus.IN_PROGRESS
        restarted.start(beat=True)
        wait_for(finished(saga_id), 60, "the saga is timed out and compensated", logs)
        restarted.stop()
    final = state(saga_id)
    assert final.status is SagaStatus.FAILED and final.fully_compensated
    assert final.error == "timed out: step 'charge_payment' did not complete within 0:00:02"
    assert final.step("charge_payment").status is StepStatus.FAILED
    assert calls(saga_id) == {
        "reserve_inventory:action": 1,
        "charge_payment:action": 1,  # not run again past its deadline
        "charge_payment:timeout": 1,
        "reserve_inventory:compensation": 1,
    }


def test_an_async_step_that_never_completes_is_compensated_by_a_live_worker(
    broker: redis.Redis, tmp_path: Path, markers: Path
) -> None:
    (markers / "block-confirm_payment-action").touch()
    saga_id = start_saga("order-awaiting-confirmation", order_id="D-2", amount=20.0)
    the_worker = worker("waiting", tmp_path, markers)
    with running(the_worker):
        the_worker.start()
        wait_for(finished(saga_id), 60, "the saga is timed out", all_logs(the_worker))
        the_worker.stop()
    final = state(saga_id)
    assert final.status is SagaStatus.FAILED and final.fully_compensated
    assert final.error == "timed out: step 'confirm_payment' did not complete within 0:00:02"
    assert calls(saga_id) == {
        "reserve_inventory:action": 1,
        "confirm_payment:action": 1,
        "confirm_payment:timeout": 1,
        "reserve_inventory:compensation": 1,
    }


def test_a_process_deadline_fires_after_a_worker_restart(
    broker: redis.Redis, settings: Any, tmp_path: Path, markers: Path
) -> None:
    # This process wakes the process manager on commit, as a web process would.
    settings.ORCHESTRIX = {
        **settings.ORCHESTRIX,
        "PROJECTIONS": [
            *settings.ORCHESTRIX["PROJECTIONS"],
            "tests.django.testapp.sagas.order_process",
        ],
    }
    env = {"ORCHESTRIX_TEST_PROCESS_MANAGERS": "1"}
    doomed = worker("doomed", tmp_path, markers, **env)
    restarted = worker("restarted", tmp_path, markers, **env)
    logs = all_logs(doomed, restarted)
    process_id = order_process.process_id("PM-1")

    def process() -> SagaState | None:
        return DjangoSagaStateStore().load(process_id)

    def types() -> list[str]:
        return [event.type for event in DjangoEventStore().load("order-PM-1")]

    with running(doomed, restarted):
        doomed.start()
        placed = OrderPlaced(order_id="PM-1", amount=30.0, correlation_id="corr-PM")
        DjangoEventStore().save("order-PM-1", [placed])
        wait_for(lambda: process() is not None, 60, "the process starts", logs)
        wait_for(lambda: "PaymentRequested" in types(), 60, "the payment is requested", logs)
        doomed.kill()
        time.sleep(2.5)  # the payment deadline (2 s) passes while no worker runs
        started = process()
        assert started is not None and started.status is SagaStatus.IN_PROGRESS
        restarted.start(beat=True)

        def cancelled() -> bool:
            found = process()
            return found is not None and found.status is SagaStatus.FAILED

        wait_for(cancelled, 60, "the deadline fires", logs)
        restarted.stop()
    assert types() == ["OrderPlaced", "PaymentRequested", "OrderCancelled"]
    cancel = list(DjangoEventStore().load("order-PM-1"))[-1]
    assert cancel.correlation_id == "corr-PM"
    final = process()
    assert final is not None and final.error == "payment not received in time"
    assert [record.name for record in final.steps] == [
        f"OrderPlaced {placed.id}",
        "timeout payment",
    ]
