"""Process managers in this process: started and advanced by events, commands, deadlines.

The test app's ``order_process`` (tests/django/testapp/sagas.py) runs on the
projection runner (``catch_up``); its command handlers (``OrderCommands``)
are subscribed to a fresh process-wide bus for each test. A real worker
across a restart is in test_saga_celery.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix.core.execution.saga import SagaState, SagaStatus
from orchestrix.core.messaging.message import Event
from orchestrix_django import bus as bus_module
from orchestrix_django.bus import get_bus
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.projections import (
    catch_up,
    projection_status,
    reset_projection,
    retry_parked,
)
from orchestrix_django.sagas.process_managers import (
    CommandDispatchError,
    Process,
    ProcessManager,
    dispatch_command,
    fire_due_timeouts,
    process_managers,
)
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from tests.django.testapp import modules as testapp_modules
from tests.django.testapp.sagas import (
    OrderCancelled,
    OrderCommands,
    OrderPlaced,
    PaymentReceived,
    RequestPayment,
    ShipOrder,
    order_process,
)

db = pytest.mark.django_db(transaction=True)

HERE = "tests.django.test_saga_process_managers"

# A process manager correlated by the events' correlation_id (the default key).
by_correlation = ProcessManager("test-by-correlation")
seen: list[tuple[str, str]] = []


@by_correlation.starts(OrderPlaced)
def remember_start(process: Process, event: OrderPlaced) -> None:
    seen.append((process.key, event.type))


@by_correlation.on(PaymentReceived)
def remember_payment(process: Process, event: PaymentReceived) -> None:
    seen.append((process.key, event.type))
    process.complete()


@pytest.fixture(autouse=True)
def order_commands(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[OrderCommands]:
    """Both process managers configured; a fresh bus with the command handlers."""
    settings.ORCHESTRIX = {
        **settings.ORCHESTRIX,
        "PROJECTIONS": [
            "tests.django.testapp.sagas.order_process",
            f"{HERE}.by_correlation",
        ],
        "OBSERVABILITY": "tests.django.testapp.modules.hooks",
    }
    monkeypatch.setattr(bus_module, "_bus", None)
    commands = OrderCommands()
    commands.register(get_bus(), DjangoEventStore())
    testapp_modules.metrics.clear()
    seen.clear()
    yield commands
    testapp_modules.metrics.clear()


def place(order_id: str, amount: float = 10.0, **ids: Any) -> OrderPlaced:
    event = OrderPlaced(order_id=order_id, amount=amount, **ids)
    DjangoEventStore().save(f"order-{order_id}", [event])
    return event


def pay(order_id: str, **ids: Any) -> PaymentReceived:
    event = PaymentReceived(order_id=order_id, **ids)
    DjangoEventStore().save(f"order-{order_id}", [event])
    return event


def process(key: str, manager: ProcessManager = order_process) -> SagaState:
    state = DjangoSagaStateStore().load(manager.process_id(key))
    assert state is not None, key
    return state


def events(order_id: str) -> list[Event]:
    return list(DjangoEventStore().load(f"order-{order_id}"))


def types(order_id: str) -> list[str]:
    return [event.type for event in events(order_id)]


def metric(name: str) -> float:
    return testapp_modules.metrics.total(f"orchestrix.sagas.{name}", saga_type="test-order-process")


@db
def test_an_event_starts_a_process_that_sends_a_command_and_waits_with_a_deadline() -> None:
    placed = place("P-1", 12.5, correlation_id="corr-1", trace_id="trace-1")
    result = catch_up(order_process)
    assert result.stopped is None
    state = process("P-1")
    assert state.status is SagaStatus.IN_PROGRESS
    assert state.saga_id == "test-order-process:P-1"
    assert state.kwargs["data"] == {"order_id": "P-1", "amount": 12.5}
    due = state.kwargs["deadlines"]["payment"]
    assert SagaStateRecord.objects.get(pk=state.saga_id).deadline == due
    assert (state.correlation_id, state.causation_id, state.trace_id) == (
        "corr-1",
        placed.id,
        "trace-1",
    )
    assert [record.name for record in state.steps] == [f"OrderPlaced {placed.id}"]
    assert state.steps[0].result == {"commands": ["RequestPayment"]}
    # The command's handler recorded an event caused by the command, in the conversation.
    assert types("P-1") == ["OrderPlaced", "PaymentRequested"]
    requested = events("P-1")[1]
    assert requested.correlation_id == "corr-1" and requested.trace_id == "trace-1"
    assert requested.causation_id not in (None, placed.id)  # the command's id
    assert metric("started") == 1


@db
def test_the_awaited_event_completes_the_process_and_cancels_its_deadline() -> None:
    place("P-2", correlation_id="corr-2")
    catch_up(order_process)
    pay("P-2", correlation_id="corr-2")
    catch_up(order_process)
    state = process("P-2")
    assert state.status is SagaStatus.COMPLETED
    assert state.kwargs["deadlines"] == {}
    assert SagaStateRecord.objects.get(pk=state.saga_id).deadline is None
    assert types("P-2") == ["OrderPlaced", "PaymentRequested", "PaymentReceived", "OrderShipped"]
    assert events("P-2")[-1].correlation_id == "corr-2"
    assert metric("completed") == 1
    durations = testapp_modules.metrics.values(
        "orchestrix.sagas.step_duration", saga_type="test-order-process"
    )
    assert len(durations) == 2
    # Nothing is due any more; a late event for the finished process is ignored.
    assert fire_due_timeouts(now=datetime.now(UTC) + timedelta(hours=1)) == []
    pay("P-2")
    catch_up(order_process)
    assert process("P-2").version == state.version


@db
def test_a_missed_deadline_runs_its_handler_once_and_later_events_are_ignored() -> None:
    place("P-3", correlation_id="corr-3", trace_id="trace-3")
    catch_up(order_process)
    assert fire_due_timeouts() == []  # not due yet
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert fire_due_timeouts(now=later) == ["test-order-process:P-3"]
    assert fire_due_timeouts(now=later) == []
    state = process("P-3")
    assert state.status is SagaStatus.FAILED
    assert state.error == "payment not received in time"
    assert [record.name for record in state.steps][-1] == "timeout payment"
    cancelled = events("P-3")[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.correlation_id, cancelled.trace_id) == ("corr-3", "trace-3")
    assert metric("failed") == 1
    pay("P-3")
    catch_up(order_process)
    assert types("P-3") == ["OrderPlaced", "PaymentRequested", "OrderCancelled", "PaymentReceived"]


@db
def test_events_of_no_process_are_ignored() -> None:
    pay("P-4")  # no process was started for P-4
    DjangoEventStore().save("elsewhere", [PaymentReceived(order_id="")])  # no key
    assert catch_up(order_process).stopped is None
    assert not SagaStateRecord.objects.exists()


@db
def test_the_default_key_is_the_correlation_id() -> None:
    place("K-1", correlation_id="conversation-A")
    pay("K-2", correlation_id="conversation-A")  # another order, the same conversation
    pay("K-3", correlation_id="conversation-B")  # no such process
    catch_up(by_correlation)
    assert seen == [("conversation-A", "OrderPlaced"), ("conversation-A", "PaymentReceived")]
    assert process("conversation-A", by_correlation).status is SagaStatus.COMPLETED


@db
def test_a_failing_command_rolls_the_whole_step_back_and_the_retry_does_it_once(
    order_commands: OrderCommands, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = [RuntimeError("payment provider down")]
    real = order_commands.request_payment

    def flaky(command: RequestPayment) -> None:
        real(command)  # its event is written, then the handler fails
        if failures:
            raise failures.pop()

    monkeypatch.setattr(bus_module, "_bus", None)
    get_bus().subscribe(RequestPayment, flaky)
    place("P-5")
    result = catch_up(order_process)
    assert result.stopped == "handler failed"
    # Nothing of the step remains: no process, no PaymentRequested event.
    assert not SagaStateRecord.objects.exists()
    assert types("P-5") == ["OrderPlaced"]
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-order-process")
    assert "payment provider down" in letter.reason
    retry_parked(order_process, letter.id)
    assert projection_status("test-order-process").healthy
    assert process("P-5").status is SagaStatus.IN_PROGRESS
    assert types("P-5") == ["OrderPlaced", "PaymentRequested"]


@db
def test_a_command_needs_exactly_one_handler() -> None:
    with pytest.raises(CommandDispatchError, match="no handler is subscribed to ShipOrder"):
        dispatch_command(ShipOrder(order_id="x"), bus=type(get_bus())())
    bus = get_bus()
    bus.subscribe(ShipOrder, lambda command: None)
    with pytest.raises(CommandDispatchError, match="2 handlers are subscribed"):
        dispatch_command(ShipOrder(order_id="x"))
    with pytest.raises(TypeError, match="only commands"):
        dispatch_command(PaymentReceived(order_id="x"))  # type: ignore[arg-type]


@db
def test_a_process_manager_is_not_replayed_unless_it_allows_it() -> None:
    place("P-6")
    catch_up(order_process)
    with pytest.raises(OrchestrixError, match="would send every command again"):
        reset_projection(order_process)
    assert SagaStateRecord.objects.count() == 1
    resettable = ProcessManager("test-resettable", allow_reset=True)
    SagaStateRecord.objects.update(saga_type="test-resettable")
    reset_projection(resettable)
    assert not SagaStateRecord.objects.exists()


@db
def test_since_ignores_older_events() -> None:
    recent = ProcessManager("test-recent", since=datetime.now(UTC) + timedelta(seconds=1))

    @recent.starts(OrderPlaced)
    def started(process: Process, event: OrderPlaced) -> None:
        process.data["seen"] = True

    place("P-7")
    catch_up(recent)
    assert not SagaStateRecord.objects.exists()
    with pytest.raises(ValueError, match="timezone-aware"):
        ProcessManager("test-naive", since=datetime(2020, 1, 1))


def test_process_managers_are_found_among_the_projections() -> None:
    assert process_managers() == [order_process, by_correlation]


@db
def test_schedule_takes_a_delay_or_a_moment() -> None:
    state = SagaState(saga_id="x:1", saga_type="x", kwargs={"key": "1"})
    handle = Process(order_process, state, None)
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    assert handle.schedule("a", moment) == moment
    assert handle.schedule("b", timedelta(seconds=1)) > datetime.now(UTC)
    assert set(handle.deadlines) == {"a", "b"}
    assert handle.cancel("a") and not handle.cancel("a")
    with pytest.raises(TypeError, match="aware datetime"):
        handle.schedule("c", datetime(2030, 1, 1))
    sent = handle.send(ShipOrder(order_id="1"))
    assert sent.correlation_id is None  # the process has no ids; nothing to inherit
    handle.complete()
    assert handle.deadlines == {} and handle.is_finished
