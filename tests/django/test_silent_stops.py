"""Nothing stops silently: stalled projections and unconsumed Celery queues are reported.

* A projection with events waiting and a checkpoint that has not moved for
  ``ORCHESTRIX["STALLED_AFTER"]`` seconds is *stalled*: ``orchestrix_status``
  says so and ``--check`` exits 1, on every database, in the embedded mode
  (``orchestrix_run``'s runner) and with Celery workers; one a runner keeps
  up with, or one being rebuilt from old events, never is.
* With ``WAKE_UP = "celery"``, ``orchestrix_status --check`` and the deploy
  check ``orchestrix.W020`` name the Orchestrix tasks routed (by the app's
  ``task_routes``) to queues that no running worker consumes, with the
  command to start one, asking real workers (``celery worker`` processes on
  the test broker); an unreachable broker is reported, quickly, never raised.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from django.conf import settings as django_settings
from django.core.checks import run_checks

from orchestrix_django.projections import (
    EmbeddedRunner,
    catch_up,
    get_projection,
    pause,
    projection_status,
    projections,
    reset_projection,
    resume,
)
from orchestrix_django.queues import inspect_queues
from orchestrix_django.storage.events import DjangoEventStore
from tests.celery_app import app as celery_app
from tests.django.ops_helpers import command, failing, open_account
from tests.django.test_celery_projections import Worker, all_logs, free_port, running
from tests.django.test_run_command import start

pytestmark = pytest.mark.django_db(transaction=True)

#: docs/celery.md's routes.
ROUTES = {
    "orchestrix.advance_projection": {"queue": "projections"},
    "orchestrix.catch_up_projections": {"queue": "projections"},
    "orchestrix.run_saga": {"queue": "sagas"},
    "orchestrix.sweep_sagas": {"queue": "sagas"},
}


def stalled_ids() -> set[str]:
    return {pid for pid in projections() if projection_status(pid).stalled}


def catch_up_all() -> None:
    for projection in projections().values():
        catch_up(projection)


@pytest.fixture
def stall_quickly(settings: Any) -> float:
    """``STALLED_AFTER`` of half a second: returns it."""
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "STALLED_AFTER": 0.5}
    return 0.5


# ---------------------------------------------------------------- stalled projections


def test_a_projection_nothing_advances_is_stalled_and_fails_the_check(
    stall_quickly: float,
) -> None:
    open_account(deposits=(5,))
    catch_up_all()
    time.sleep(stall_quickly + 0.1)
    # At the head: idle, not stalled, however long ago it last moved.
    command("orchestrix_status", "--check")

    open_account(deposits=(6,))
    # Fresh events: a runner has not had its chance yet.
    assert stalled_ids() == set()
    command("orchestrix_status", "--check")

    time.sleep(stall_quickly + 0.1)
    assert stalled_ids() == set(projections())
    message = failing("orchestrix_status", "--check")
    assert "projection test-balances is stalled (2 event(s) behind" in message
    out, _ = command("orchestrix_status")
    balances = next(line for line in out.splitlines() if line.strip().startswith("test-balances"))
    assert balances.split()[3] == "stalled"
    assert "nothing is advancing it. Start `python manage.py orchestrix_run`" in out
    report = json.loads(command("orchestrix_status", "--json")[0])
    by_id = {p["projection_id"]: p for p in report["projections"]}
    assert (by_id["test-balances"]["health"], by_id["test-balances"]["stalled"]) == (
        "stalled",
        True,
    )

    # An operator's pause is not a stall.
    for projection in projections().values():
        pause(projection)
    assert stalled_ids() == set()
    command("orchestrix_status", "--check")
    for projection in projections().values():
        resume(projection)
    catch_up_all()
    assert stalled_ids() == set()
    command("orchestrix_status", "--check")


def test_a_projection_never_run_is_stalled_once_its_events_wait_long_enough(
    stall_quickly: float,
) -> None:
    open_account()
    assert projection_status("test-balances").updated_at is None  # no state row yet
    assert stalled_ids() == set()
    time.sleep(stall_quickly + 0.1)
    assert "test-balances" in stalled_ids()


def test_a_rebuild_from_old_events_is_never_stalled(settings: Any) -> None:
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "STALLED_AFTER": 0.3}
    for _ in range(3):
        open_account(deposits=(1, 2))
    time.sleep(0.4)  # every event is older than STALLED_AFTER now
    balances = get_projection("test-balances")
    reset_projection(balances)
    seen: list[bool] = []

    def progress(result: Any) -> None:
        time.sleep(0.15)  # a slow rebuild: two batches take longer than STALLED_AFTER
        seen.append(projection_status("test-balances").stalled)

    balances._batch_size = 1
    try:
        catch_up(balances, on_batch=progress)
    finally:
        balances._batch_size = None
    assert len(seen) == 9
    assert not any(seen)


def test_the_embedded_runner_keeps_a_projection_from_stalling_and_its_absence_is_seen(
    settings: Any,
) -> None:
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "STALLED_AFTER": 1.0}
    balances = get_projection("test-balances")
    runner = EmbeddedRunner([balances], poll_interval=0.2)
    thread, errors = start(runner)
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            open_account(deposits=(3,))
            assert not projection_status("test-balances").stalled
            time.sleep(0.2)
    finally:
        runner.stop()
        thread.join(10)
    assert not thread.is_alive() and not errors, errors
    # At the head when it stopped; then events come and nothing runs it.
    open_account()
    time.sleep(1.1)
    assert projection_status("test-balances").stalled
    assert "projection test-balances is stalled" in failing("orchestrix_status", "--check")


def test_stalled_after_must_be_a_positive_number(settings: Any) -> None:
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "STALLED_AFTER": 0}
    [error] = [e for e in run_checks(tags=["orchestrix"]) if "STALLED_AFTER" in e.msg]
    assert error.id == "orchestrix.E006"
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "STALLED_AFTER": None}
    assert not [e for e in run_checks(tags=["orchestrix"]) if "STALLED_AFTER" in e.msg]


# ---------------------------------------------------------------- Celery queues


@pytest.fixture
def routed(settings: Any, broker: redis.Redis) -> Iterator[Celery]:
    """WAKE_UP = "celery", and a current Celery app routing as docs/celery.md does."""
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "WAKE_UP": "celery"}
    app = Celery("proj", set_as_current=False)
    app.conf.update(
        broker_url=django_settings.TEST_REDIS_URL,
        broker_connection_timeout=2,
        task_routes=ROUTES,
        task_serializer="json",
        accept_content=["json"],
    )
    app.set_current()
    try:
        yield app
    finally:
        celery_app.set_current()


def deploy_checks() -> list[Any]:
    return [
        message
        for message in run_checks(include_deployment_checks=True, tags=["orchestrix"])
        if message.id in ("orchestrix.W020", "orchestrix.W021")
    ]


def test_tasks_routed_to_queues_no_worker_consumes_are_named_with_the_command(
    routed: Celery, tmp_path: Path
) -> None:
    # No worker at all.
    message = failing("orchestrix_status", "--check")
    assert (
        "orchestrix.advance_projection, orchestrix.catch_up_projections are routed to queue "
        "'projections', which no running worker consumes" in message
    )
    assert "orchestrix.run_saga, orchestrix.sweep_sagas are routed to queue 'sagas'" in message
    assert "no Celery worker answered within 1 s" in message
    assert "celery -A proj worker -Q projections,sagas -l info" in message

    # `celery -A proj worker -B` of the single-machine set-up: the default queue only.
    default = Worker("default", tmp_path).start()
    with running(default):
        message = failing("orchestrix_status", "--check")
        assert "the running workers, default@" in message
        assert ", consume celery: start a worker with" in message
        assert "celery -A proj worker -Q projections,sagas" in message
        out, _ = command("orchestrix_status")
        assert "orchestrix.advance_projection    projections  nobody" in out
        warnings = deploy_checks()
        assert [w.id for w in warnings] == ["orchestrix.W020", "orchestrix.W020"]
        assert "queue 'projections', which no running Celery worker consumes" in warnings[0].msg
        assert "celery -A proj worker -Q projections,sagas" in warnings[0].hint
        report = json.loads(command("orchestrix_status", "--json", "--workers-timeout", "0.5")[0])[
            "workers"
        ]
        assert report["routes"] == {name: route["queue"] for name, route in ROUTES.items()}
        assert report["unconsumed"] == {
            "projections": ["orchestrix.advance_projection", "orchestrix.catch_up_projections"],
            "sagas": ["orchestrix.run_saga", "orchestrix.sweep_sagas"],
        }

        # A worker on the routed queues: the wake-ups sent there are consumed.
        both = Worker("routed", tmp_path).start(queues="celery,projections,sagas")
        with running(both):
            open_account(deposits=(4,))
            head = DjangoEventStore().head_position()
            deadline = time.monotonic() + 60
            while projection_status("test-balances").position != head:
                assert time.monotonic() < deadline, all_logs(default, both)()
                time.sleep(0.1)
            assert deploy_checks() == []
            out, _ = command("orchestrix_status")
            assert "Every queue of the Orchestrix tasks has a running worker." in out
            assert "orchestrix.advance_projection    projections  routed@" in out


def test_without_routes_the_default_queue_is_checked(settings: Any, broker: Any) -> None:
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "WAKE_UP": "celery"}
    report = inspect_queues(celery_app, timeout=0.5)
    assert set(report.routes.values()) == {"celery"}
    assert report.unconsumed == {"celery": list(report.routes)}
    # Without sagas configured, their tasks are not Orchestrix's concern.
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "SAGAS": []}
    assert set(inspect_queues(celery_app, timeout=0.5).routes) == {
        "orchestrix.advance_projection",
        "orchestrix.catch_up_projections",
    }


def test_an_unreachable_broker_is_reported_quickly_never_raised(settings: Any) -> None:
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "WAKE_UP": "celery"}
    down = Celery("proj", set_as_current=False)
    down.conf.update(broker_url=f"redis://127.0.0.1:{free_port()}/0", task_routes=ROUTES)
    down.set_current()
    try:
        started = time.monotonic()
        message = failing("orchestrix_status", "--check")
        [warning] = deploy_checks()
        # The ordinary checks (every manage.py command) never ask the broker.
        plain = [m.id for m in run_checks(tags=["orchestrix"])]
        elapsed = time.monotonic() - started
    finally:
        celery_app.set_current()
    assert "cannot reach the Celery broker to ask the workers (OperationalError:" in message
    assert warning.id == "orchestrix.W021"
    assert "orchestrix.W021" not in plain and "orchestrix.W020" not in plain
    assert elapsed < 5


def test_in_the_embedded_mode_no_worker_is_asked(broker: Any) -> None:
    out, _ = command("orchestrix_status")
    assert "Celery workers" not in out
    assert json.loads(command("orchestrix_status", "--json")[0])["workers"] is None
    assert deploy_checks() == []
