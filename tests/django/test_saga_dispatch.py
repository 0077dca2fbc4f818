"""How sagas reach a runner: Celery messages (no worker here), the sweep, orchestrix_run, checks."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.core.checks import CheckMessage, run_checks
from django.core.management import call_command
from django.db import connections, transaction
from django.test import override_settings

from orchestrix.core.execution.saga import InMemorySagaStateStore, Saga, SagaStatus, SagaStep
from orchestrix.core.execution.saga_state import StepStatus
from orchestrix_django.celery import SWEEP_ENTRY, saga_beat_schedule
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.sagas import DjangoSaga, start_saga
from orchestrix_django.sagas.locks import SagaRunLock
from orchestrix_django.sagas.sweep import EmbeddedSagaRunner
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from orchestrix_django.tasks import current_ids, run_saga_task, sweep_sagas
from tests.celery_app import app as celery_app
from tests.django.test_celery_projections import queued
from tests.django.testapp.models import SagaStepCall
from tests.django.testapp.sagas import order_fulfillment, reserve_inventory

db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def celery_mode(settings: Any, broker: redis.Redis) -> redis.Redis:
    """``ORCHESTRIX["WAKE_UP"] = "celery"`` in this process; the broker, empty."""
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "WAKE_UP": "celery"}
    return broker


def saga_tasks(client: redis.Redis) -> list[Any]:
    return [q for q in queued(client) if q.task == "orchestrix.run_saga"]


def status(saga_id: str) -> SagaStatus:
    state = DjangoSagaStateStore().load(saga_id)
    assert state is not None
    return state.status


# ---------------------------------------------------------------- Celery messages


@db
def test_start_sends_one_thin_task_after_the_commit_with_the_ids_in_its_headers(
    celery_mode: redis.Redis,
) -> None:
    with transaction.atomic():
        saga_id = start_saga(
            "order-fulfillment",
            order_id="C-1",
            amount=5.0,
            correlation_id="corr-C",
            causation_id="cause-C",
            trace_id="trace-C",
        )
        assert saga_tasks(celery_mode) == []  # not before the commit
    [task] = saga_tasks(celery_mode)
    assert task.args == [saga_id]
    assert task.headers["orchestrix_saga_id"] == saga_id
    assert task.headers["orchestrix_correlation_id"] == "corr-C"
    assert task.headers["orchestrix_causation_id"] == "cause-C"
    assert task.headers["orchestrix_trace_id"] == "trace-C"


@db
def test_a_rolled_back_start_sends_nothing(celery_mode: redis.Redis) -> None:
    def start_then_fail() -> None:
        with transaction.atomic():
            start_saga("order-fulfillment", order_id="C-2", amount=5.0)
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        start_then_fail()
    assert saga_tasks(celery_mode) == []
    assert SagaStateRecord.objects.count() == 0


@db
def test_without_celery_start_sends_nothing(broker: redis.Redis) -> None:
    start_saga("order-fulfillment", order_id="C-3", amount=5.0)
    assert saga_tasks(broker) == []


def test_the_saga_tasks_are_thin_json_tasks_acknowledged_late() -> None:
    task = celery_app.tasks["orchestrix.run_saga"]
    assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
    assert task.serializer == "json"
    assert celery_app.tasks["orchestrix.sweep_sagas"].serializer == "json"


seen_ids: list[dict[str, str | None]] = []


def remember_ids(order_id: str) -> None:
    seen_ids.append(current_ids())


ids_saga = DjangoSaga("test-ids", [SagaStep("remember", remember_ids)])


@db
def test_the_task_runs_the_saga_with_its_ids_in_the_log_context(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.ORCHESTRIX = {
        **settings.ORCHESTRIX,
        "SAGAS": [*settings.ORCHESTRIX["SAGAS"], "tests.django.test_saga_dispatch.ids_saga"],
    }
    seen_ids.clear()
    saga_id = start_saga("test-ids", order_id="C-4", correlation_id="corr-4", trace_id="tr-4")
    caplog.set_level(logging.INFO, logger="orchestrix")
    headers = {
        "orchestrix_correlation_id": "corr-4",
        "orchestrix_trace_id": "tr-4",
        "orchestrix_saga_id": saga_id,
    }
    outcome = run_saga_task.apply(args=[saga_id], headers=headers).get()
    assert outcome == {"saga_id": saga_id, "status": "completed", "error": None}
    assert seen_ids == [
        {"correlation_id": "corr-4", "causation_id": None, "trace_id": "tr-4", "event_id": None}
    ]
    started = [r for r in caplog.records if r.getMessage().startswith("running saga")]
    assert started and started[0].correlation_id == "corr-4"  # type: ignore[attr-defined]
    assert "correlation_id=corr-4" in started[0].getMessage()
    assert run_saga_task.apply(args=["unknown"]).get() is None


@db
def test_the_sweep_times_out_overdue_sagas_and_resends_lost_ones(
    celery_mode: redis.Redis, settings: Any
) -> None:
    # Every saga is idle long enough: the one timed out in the pass must still
    # not be sent twice (it was resumed too when the pass took over 0.2 s).
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "SAGA_RESUME_AFTER": 0}
    lost = start_saga("order-fulfillment", order_id="S-1", amount=1.0)
    held = start_saga("order-fulfillment", order_id="S-2", amount=1.0)
    overdue = start_saga("order-with-deadline", order_id="S-3", amount=1.0)
    # S-3 "died" in its payment step, long ago.
    state = DjangoSagaStateStore().load(overdue)
    assert state is not None
    state.status = SagaStatus.IN_PROGRESS
    state.current_step = "charge_payment"
    record = state.step("charge_payment")
    record.status, record.attempts = StepStatus.RUNNING, 1
    record.started_at = datetime.now(UTC) - timedelta(minutes=5)
    DjangoSagaStateStore().save(state)
    SagaStateRecord.objects.filter(pk=overdue).update(
        deadline=record.started_at + timedelta(seconds=2)
    )
    celery_mode.flushdb()
    time.sleep(0.3)
    lock = SagaRunLock(held)
    assert lock.acquire()
    try:
        outcome = sweep_sagas.apply().get()
    finally:
        lock.release()
    assert outcome["timed_out"] == [overdue]
    assert outcome["resumed"] == [lost]  # not the held one, nor the one just timed out
    assert sorted(task.args[0] for task in saga_tasks(celery_mode)) == sorted([lost, overdue])
    assert status(overdue) is SagaStatus.COMPENSATING
    assert SagaStepCall.objects.get(key=f"{overdue}:charge_payment:timeout").calls == 1


def test_the_sweep_schedule() -> None:
    assert saga_beat_schedule(3) == {
        SWEEP_ENTRY: {
            "task": "orchestrix.sweep_sagas",
            "schedule": 3.0,
            "options": {"expires": 3.0},
        }
    }
    assert saga_beat_schedule()[SWEEP_ENTRY]["schedule"] == 10.0
    with pytest.raises(ValueError, match="positive"):
        saga_beat_schedule(0)
    celery_app.finalize()
    assert SWEEP_ENTRY in celery_app.conf.beat_schedule


# ---------------------------------------------------------------- orchestrix_run


def run_command(*args: str) -> str:
    out = StringIO()
    call_command("orchestrix_run", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@db
def test_orchestrix_run_once_runs_the_pending_sagas() -> None:
    first = start_saga("order-fulfillment", order_id="R-1", amount=1.0)
    second = start_saga("order-fulfillment", order_id="NOSHIP-R", amount=1.0)
    out = run_command("--once", "--projection", "test-balances")
    assert status(first) is SagaStatus.PENDING  # a chosen projection leaves sagas alone
    out = run_command("--once", "--no-sagas")
    assert "sagas:" not in out and status(first) is SagaStatus.PENDING
    out = run_command("--once")
    assert "  sagas: 2 run, 0 process deadline(s) fired" in out
    assert status(first) is SagaStatus.COMPLETED
    assert status(second) is SagaStatus.FAILED


@db
def test_orchestrix_run_runs_sagas_without_projections(settings: Any) -> None:
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "PROJECTIONS": []}
    saga_id = start_saga("order-fulfillment", order_id="R-2", amount=1.0)
    out = run_command("--once")
    assert "sagas: 1 run" in out and status(saga_id) is SagaStatus.COMPLETED


@db
def test_the_embedded_saga_runner_runs_sagas_started_while_it_runs() -> None:
    passes: list[dict[str, list[str]]] = []
    runner = EmbeddedSagaRunner(poll_interval=0.1, on_pass=passes.append).start()
    try:
        saga_id = start_saga("order-fulfillment", order_id="R-3", amount=1.0)
        deadline = time.monotonic() + 30
        while status(saga_id) is not SagaStatus.COMPLETED:
            assert time.monotonic() < deadline, passes
            time.sleep(0.05)
    finally:
        runner.stop(wait=30)
    assert runner.ran == 1 and runner.errors == 0
    assert any(saga_id in outcome["resumed"] for outcome in passes)
    connections.close_all()


@db
def test_the_embedded_saga_runner_stops_at_once_when_asked() -> None:
    runner = EmbeddedSagaRunner(poll_interval=5)
    stopper = threading.Timer(0.2, runner.stop)
    stopper.start()
    started = time.monotonic()
    runner.run()  # in this thread: it closes its connections when it ends
    assert time.monotonic() - started < 5
    assert runner.errors == 0
    stopper.join()


# ---------------------------------------------------------------- check E010

plain_core = Saga("test-in-memory", [SagaStep("one", reserve_inventory)], InMemorySagaStateStore())
duplicate = DjangoSaga("order-fulfillment", [SagaStep("one", reserve_inventory)])
not_a_saga = object()


def e010(**orchestrix: Any) -> list[CheckMessage]:
    with override_settings(ORCHESTRIX={**django_settings.ORCHESTRIX, **orchestrix}):
        return [m for m in run_checks(tags=["orchestrix"]) if m.id and m.id.endswith("010")]


def test_the_saga_settings_are_checked() -> None:
    here = "tests.django.test_saga_dispatch"
    assert e010() == []
    [bad] = e010(SAGAS=[f"{here}.not_a_saga"])
    assert bad.id == "orchestrix.E010" and "not a saga" in bad.msg
    [memory] = e010(SAGAS=[f"{here}.plain_core"])
    assert "InMemorySagaStateStore" in memory.msg and "saga table" in memory.msg
    [twice] = e010(SAGAS=["tests.django.testapp.sagas.order_fulfillment", f"{here}.duplicate"])
    assert "'order-fulfillment'" in twice.msg
    for name in ("SAGA_SWEEP_INTERVAL", "SAGA_RESUME_AFTER"):
        for value in (0, -1, "5", True):
            [wrong] = e010(**{name: value})
            assert name in wrong.msg, value
    assert order_fulfillment.saga_type == "order-fulfillment"
