"""The Django message bus: committed events reach in-process subscribers, failures are parked.

Events saved through :class:`DjangoEventStore` reach sync and async
subscribers only after their transaction committed (never for a rolled-back
save); a failing handler breaks neither the save nor the other handlers and is
logged, counted and parked as a dead letter that can be retried; a direct
``publish`` raises ``HandlerError``; modules named in ``ORCHESTRIX["MODULES"]``
are registered once, and the check ``orchestrix.E007`` reports those that
can't be.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, run_checks
from django.db import connection, transaction
from django.test import override_settings

from orchestrix.core.common.exceptions import ConcurrencyError, HandlerError
from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.messaging.dead_letter import (
    DeadLetterNotFoundError,
    DeadLetterStateError,
    DeadLetterStatus,
    retry,
)
from orchestrix.core.messaging.message import Command, Event, Message
from orchestrix.infrastructure.memory.bus import handler_name
from orchestrix.infrastructure.memory.observability import InMemoryMetricsProvider
from orchestrix_django import bus as bus_module
from orchestrix_django.bus import (
    DjangoMessageBus,
    connect_signals,
    get_bus,
    module_problems,
    reset_bus,
    wire_modules,
)
from orchestrix_django.models import DeadLetterRecord, EventRecord
from orchestrix_django.storage.async_events import DjangoAsyncEventStore
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp import modules as testapp_modules
from tests.django.testapp.events import AccountOpened, MoneyDeposited

MODULES = "tests.django.testapp.modules"
ERRORS = "orchestrix.handlers.errors"


class Boom(Exception):
    """What the failing handlers raise."""


@pytest.fixture(autouse=True)
def bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[DjangoMessageBus]:
    """A fresh process-wide bus for each test; the previous one is put back after it."""
    monkeypatch.setattr(bus_module, "_bus", None)
    testapp_modules.reset()
    yield get_bus()
    testapp_modules.reset()


def orchestrix(**overrides: Any) -> dict[str, Any]:
    """The test settings' ``ORCHESTRIX`` with ``overrides``."""
    return {**settings.ORCHESTRIX, **overrides}


def new_id() -> str:
    return f"acc-{uuid.uuid4().hex[:12]}"


def opened(account_id: str) -> AccountOpened:
    return AccountOpened(account_id=account_id, owner="Ann", initial_deposit=10.0)


def deposited(account_id: str, amount: int = 5) -> MoneyDeposited:
    return MoneyDeposited(account_id=account_id, amount=Decimal(amount))


def visible_to_another_connection(event_id: str) -> bool:
    """Whether a fresh connection (another thread's) sees the event's row: it committed."""
    seen: list[bool] = []

    def look() -> None:
        try:
            seen.append(EventRecord.objects.filter(event_id=event_id).exists())
        finally:
            connection.close()  # this thread's connection

    worker = threading.Thread(target=look)
    worker.start()
    worker.join(30)
    assert seen, "the other connection's query did not finish"
    return seen[0]


# -- delivery after commit -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_sync_and_async_subscribers_receive_events_only_after_the_commit(
    bus: DjangoMessageBus,
) -> None:
    received: list[tuple[str, str]] = []
    committed_when_handled: list[bool] = []

    def sync_handler(event: AccountOpened) -> None:
        committed_when_handled.append(visible_to_another_connection(event.id))
        received.append(("sync", event.id))

    async def async_handler(event: Event) -> None:
        await asyncio.sleep(0)
        received.append(("async", event.id))

    bus.subscribe(AccountOpened, sync_handler)
    bus.subscribe(Event, async_handler)
    account = new_id()
    first, second = opened(account), deposited(account)
    store = DjangoEventStore()

    with transaction.atomic():
        store.save(account, [first])
        store.save(account, [second], expected_version=1)
        # Still inside the transaction: nothing is committed, nothing is delivered.
        assert received == []

    assert received == [("sync", first.id), ("async", first.id), ("async", second.id)]
    assert committed_when_handled == [True]


@pytest.mark.django_db(transaction=True)
def test_a_save_outside_a_transaction_is_delivered_when_it_returns(
    bus: DjangoMessageBus,
) -> None:
    received: list[Event] = []
    bus.subscribe(Event, received.append)
    account = new_id()
    events = [opened(account), deposited(account, 1), deposited(account, 2)]

    DjangoEventStore().save(account, events)

    assert received == events  # in version order, as the classes they were saved as


@pytest.mark.django_db(transaction=True)
def test_rolled_back_saves_are_never_delivered(bus: DjangoMessageBus) -> None:
    received: list[Event] = []
    bus.subscribe(Event, received.append)
    store = DjangoEventStore()

    def save_then_fail() -> None:
        with transaction.atomic():
            store.save(new_id(), [opened("a")])
            raise Boom

    # The whole transaction rolls back.
    with pytest.raises(Boom):
        save_then_fail()
    # Only a savepoint rolls back; the outer transaction commits something else.
    kept = new_id()
    with transaction.atomic():
        try:
            with transaction.atomic():
                store.save(new_id(), [opened("b")])
                raise Boom
        except Boom:
            pass
        store.save(kept, [opened(kept)])
    # A save refused by optimistic locking.
    with pytest.raises(ConcurrencyError):
        store.save(kept, [deposited(kept)], expected_version=0)

    assert [e.account_id for e in received if isinstance(e, AccountOpened)] == [kept]
    assert len(received) == 1


@pytest.mark.django_db(transaction=True)
def test_a_subscription_to_a_base_class_receives_its_subclasses(bus: DjangoMessageBus) -> None:
    every_event: list[Event] = []
    only_deposits: list[MoneyDeposited] = []
    bus.subscribe(Event, every_event.append)
    bus.subscribe(MoneyDeposited, only_deposits.append)
    account = new_id()
    events = [opened(account), deposited(account)]

    DjangoEventStore().save(account, events)

    assert every_event == events
    assert only_deposits == [events[1]]


@pytest.mark.django_db(transaction=True)
def test_an_async_save_reaches_async_subscribers(bus: DjangoMessageBus) -> None:
    received: list[Event] = []

    async def async_handler(event: Event) -> None:
        await asyncio.sleep(0)
        received.append(event)

    bus.subscribe(Event, async_handler)
    account = new_id()
    event = opened(account)

    async def main() -> None:
        await DjangoAsyncEventStore().save(account, [event])

    async_to_sync(main)()

    assert received == [event]


@pytest.mark.django_db(transaction=True)
def test_a_handler_may_save_events_which_are_delivered_too(bus: DjangoMessageBus) -> None:
    """A process manager reacting to an event by saving another one."""
    store = DjangoEventStore()
    deposits: list[MoneyDeposited] = []

    def welcome_bonus(event: AccountOpened) -> None:
        store.save(event.account_id, [deposited(event.account_id, 50)], expected_version=1)

    bus.subscribe(AccountOpened, welcome_bonus)
    bus.subscribe(MoneyDeposited, deposits.append)
    account = new_id()

    store.save(account, [opened(account)])

    assert [d.amount for d in deposits] == [Decimal(50)]
    assert store.stream_version(account) == 2


@pytest.mark.django_db(transaction=True)
def test_the_receiver_is_connected_once(bus: DjangoMessageBus) -> None:
    received: list[Event] = []
    bus.subscribe(Event, received.append)
    for _ in range(3):
        connect_signals()
    apps.get_app_config("orchestrix_django").ready()
    account = new_id()

    DjangoEventStore().save(account, [opened(account)])

    assert len(received) == 1


def test_get_bus_returns_one_bus_per_process_until_reset() -> None:
    first = get_bus()
    assert get_bus() is first
    reset_bus()
    found: list[DjangoMessageBus] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        found.append(get_bus())

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(found) == 8
    assert all(b is found[0] for b in found)
    assert found[0] is not first


# -- failing handlers after a commit ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failing_handler_is_logged_counted_and_parked_and_breaks_nothing(
    bus: DjangoMessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    before: list[Event] = []
    after: list[Event] = []
    broken = True
    handled_on_retry: list[Message] = []

    def fragile(event: Event) -> None:
        if broken:
            raise Boom("the mail server is down")
        handled_on_retry.append(event)

    bus.subscribe(Event, before.append)
    bus.subscribe(AccountOpened, fragile)
    bus.subscribe(Event, after.append)
    account = new_id()
    event = opened(account)
    store = DjangoEventStore()
    later_callbacks: list[str] = []

    with (
        override_settings(ORCHESTRIX=orchestrix(OBSERVABILITY=f"{MODULES}.hooks")),
        caplog.at_level(logging.ERROR, logger="orchestrix.bus"),
        transaction.atomic(),
    ):
        store.save(account, [event])
        # Registered after the save: it still runs, the failure did not escape.
        transaction.on_commit(lambda: later_callbacks.append("ran"))

    # The save committed and the other handlers (before and after it) ran.
    assert store.load(account) == [event]
    assert before == [event]
    assert after == [event]
    assert later_callbacks == ["ran"]
    name = handler_name(fragile)
    # Logged with the event's id, type and stream, and the error.
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and name in r.getMessage()]
    assert len(failures) == 1
    text = failures[0].getMessage()
    assert event.id in text
    assert "AccountOpened" in text
    assert account in text
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], Boom)
    # Counted through the configured observability hooks.
    assert testapp_modules.metrics.total(ERRORS, handler=name, message_type="AccountOpened") == 1
    # Parked as a dead letter carrying the event and where it is stored.
    queue = DjangoDeadLetterQueue()
    [letter] = queue.list(source=f"bus:{name}")
    assert letter.message == event
    assert letter.message_type == "AccountOpened"
    assert letter.message_id == event.id
    assert letter.handler == name
    assert letter.stream_id == account
    assert letter.version == 1
    stored_position = EventRecord.objects.get(event_id=event.id).position
    assert letter.position == stored_position
    assert letter.reason == "the mail server is down"
    assert letter.error_type.endswith("Boom")
    assert "Boom" in letter.traceback

    # Retrying before the fix records one more failed attempt…
    with pytest.raises(Boom):
        retry(queue, letter.id, fragile)
    assert queue.get(letter.id).attempts == 2  # type: ignore[union-attr]
    # …and after the fix the event is handled and the letter resolved.
    broken = False
    retry(queue, letter.id, fragile)
    assert handled_on_retry == [event]
    assert queue.get(letter.id).status is DeadLetterStatus.RETRIED  # type: ignore[union-attr]
    assert queue.count() == 0


@pytest.mark.django_db(transaction=True)
def test_the_bus_retries_a_parked_letter_through_the_handler_that_failed(
    bus: DjangoMessageBus,
) -> None:
    broken = True
    handled: list[Event] = []

    async def notify(event: MoneyDeposited) -> None:
        await asyncio.sleep(0)
        if broken:
            raise Boom("no network")
        handled.append(event)

    bus.subscribe(MoneyDeposited, notify)
    account = new_id()
    event = deposited(account)
    DjangoEventStore().save(account, [opened(account), event])
    [letter] = DjangoDeadLetterQueue().list()
    assert letter.handler == handler_name(notify)
    assert letter.version == 2

    with pytest.raises(Boom):
        bus.retry_dead_letter(letter.id)
    broken = False
    bus.retry_dead_letter(letter.id)

    assert handled == [event]
    resolved = DjangoDeadLetterQueue().get(letter.id)
    assert resolved is not None
    assert resolved.status is DeadLetterStatus.RETRIED
    assert resolved.attempts == 2
    # A resolved letter is not run again, an unknown one not at all.
    with pytest.raises(DeadLetterStateError):
        bus.retry_dead_letter(letter.id)
    with pytest.raises(DeadLetterNotFoundError):
        bus.retry_dead_letter(str(uuid.uuid4()))


@pytest.mark.django_db(transaction=True)
def test_a_letter_whose_handler_is_not_subscribed_here_is_left_alone(
    bus: DjangoMessageBus,
) -> None:
    def fragile(event: Event) -> None:
        raise Boom

    bus.subscribe(AccountOpened, fragile)
    account = new_id()
    DjangoEventStore().save(account, [opened(account)])
    [letter] = DjangoDeadLetterQueue().list()
    bus.unsubscribe(AccountOpened, fragile)

    with pytest.raises(LookupError, match="no handler named"):
        bus.retry_dead_letter(letter.id)

    unchanged = DjangoDeadLetterQueue().get(letter.id)
    assert unchanged is not None
    assert unchanged.is_parked
    assert unchanged.attempts == 1


class BrokenQueue:
    """A dead-letter queue whose database is gone."""

    def park(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("dead letter database unreachable")


@pytest.mark.django_db(transaction=True)
def test_a_failure_that_cannot_be_parked_is_still_logged_and_counted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = InMemoryMetricsProvider()
    own_bus = DjangoMessageBus(ObservabilityHooks(metrics), dead_letters=BrokenQueue())  # type: ignore[arg-type]
    monkeypatch.setattr(bus_module, "_bus", own_bus)
    received: list[Event] = []

    def fragile(event: Event) -> None:
        raise Boom("handler bug")

    own_bus.subscribe(Event, fragile)
    own_bus.subscribe(Event, received.append)
    account = new_id()

    with caplog.at_level(logging.ERROR, logger="orchestrix.bus"):
        DjangoEventStore().save(account, [opened(account)])

    assert len(received) == 1
    assert metrics.total(ERRORS, handler=handler_name(fragile)) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not park" in m for m in messages)
    assert any("NOT parked" in m and account in m for m in messages)
    assert DeadLetterRecord.objects.count() == 0


# -- direct publishing -----------------------------------------------------------------


class OpenAccount(Command):
    """A command for direct publishing."""


@pytest.mark.django_db
def test_a_direct_publish_raises_handler_error_after_every_handler_ran() -> None:
    metrics = InMemoryMetricsProvider()
    own_bus = DjangoMessageBus(ObservabilityHooks(metrics))
    ran: list[str] = []

    def first(message: Message) -> None:
        ran.append("first")

    def failing(message: Message) -> None:
        ran.append("failing")
        raise Boom("one")

    async def async_ok(message: Message) -> None:
        await asyncio.sleep(0)
        ran.append("async_ok")

    async def async_failing(message: Message) -> None:
        ran.append("async_failing")
        raise Boom("two")

    for handler in (first, failing, async_ok, async_failing):
        own_bus.subscribe(OpenAccount, handler)

    with pytest.raises(HandlerError) as caught:
        own_bus.publish(OpenAccount())

    assert ran == ["first", "failing", "async_ok", "async_failing"]
    error = caught.value
    assert error.handler_name == handler_name(failing)
    assert error.message_type == "OpenAccount"
    assert isinstance(error.original_error, Boom)
    assert [e.handler_name for e in error.errors] == [
        handler_name(failing),
        handler_name(async_failing),
    ]
    assert metrics.total(ERRORS) == 2
    assert DeadLetterRecord.objects.count() == 0  # the caller got the error: nothing parked


@pytest.mark.django_db(transaction=True)
def test_publish_async_runs_handlers_concurrently_and_sync_ones_off_the_loop() -> None:
    metrics = InMemoryMetricsProvider()
    own_bus = DjangoMessageBus(ObservabilityHooks(metrics))
    first_started = asyncio.Event()
    second_started = asyncio.Event()
    counted: list[int] = []

    async def first(message: Message) -> None:
        first_started.set()
        # Waits for the second: only possible if they run at the same time.
        await asyncio.wait_for(second_started.wait(), 5)

    async def second(message: Message) -> None:
        second_started.set()
        await asyncio.wait_for(first_started.wait(), 5)

    def uses_the_orm(message: Message) -> None:
        # Would raise SynchronousOnlyOperation if it ran in the event loop.
        counted.append(EventRecord.objects.count())

    async def failing(message: Message) -> None:
        raise Boom("async failure")

    for handler in (first, uses_the_orm, failing, second):
        own_bus.subscribe(OpenAccount, handler)

    with pytest.raises(HandlerError) as caught:
        async_to_sync(own_bus.publish_async)(OpenAccount())

    assert first_started.is_set()
    assert second_started.is_set()
    assert counted == [0]
    assert caught.value.handler_name == handler_name(failing)
    assert len(caught.value.errors) == 1
    assert metrics.total(ERRORS, handler=handler_name(failing)) == 1
    # Nothing subscribed: nothing to do.
    async_to_sync(own_bus.publish_async)(deposited("x"))


# -- modules ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_configured_modules_are_registered_once_and_receive_events(
    bus: DjangoMessageBus,
) -> None:
    configured = orchestrix(MODULES=[f"{MODULES}.AccountsModule", f"{MODULES}.deposits_module"])
    with override_settings(ORCHESTRIX=configured):
        wired = wire_modules()
        # Wiring again, or ready() running again, registers nothing twice.
        assert wire_modules() == []
        apps.get_app_config("orchestrix_django").ready()
        apps.get_app_config("orchestrix_django").ready()

    assert [type(m).__name__ for m in wired] == ["AccountsModule", "DepositsModule"]
    assert wired[1] is testapp_modules.deposits_module
    assert len(testapp_modules.registrations) == 2
    for _module, given_bus, store in testapp_modules.registrations:
        assert given_bus is bus
        assert isinstance(store, DjangoEventStore)
    assert set(bus.modules) == set(configured["MODULES"])

    account = new_id()
    events = [opened(account), deposited(account)]
    DjangoEventStore().save(account, events)

    assert testapp_modules.opened == [events[0]]
    assert testapp_modules.deposits == [events[1]]
    assert testapp_modules.everything == events


@pytest.mark.django_db(transaction=True)
def test_modules_are_registered_with_a_given_bus_and_store() -> None:
    own_bus = DjangoMessageBus()
    store = DjangoEventStore()
    with override_settings(ORCHESTRIX=orchestrix(MODULES=[f"{MODULES}.AccountsModule"])):
        [module] = wire_modules(own_bus, store)

    assert testapp_modules.registrations == [(module, own_bus, store)]
    assert get_bus().modules == {}


def test_ready_skips_modules_that_cannot_be_wired(
    bus: DjangoMessageBus, caplog: pytest.LogCaptureFixture
) -> None:
    configured = orchestrix(
        MODULES=[
            f"{MODULES}.Missing",
            "tests.django.testapp.no_such_module.Module",
            f"{MODULES}.NoRegister",
            f"{MODULES}.not_a_module",
            f"{MODULES}.NeedsArguments",
            42,
            f"{MODULES}.AccountsModule",
        ]
    )
    with (
        override_settings(ORCHESTRIX=configured),
        caplog.at_level(logging.WARNING, logger="orchestrix.bus"),
    ):
        apps.get_app_config("orchestrix_django").ready()  # does not raise

    assert list(bus.modules) == [f"{MODULES}.AccountsModule"]
    assert len([r for r in caplog.records if "orchestrix.E007" in r.getMessage()]) == 6


def test_modules_of_the_wrong_kind_are_not_wired(bus: DjangoMessageBus) -> None:
    with override_settings(ORCHESTRIX=orchestrix(MODULES=f"{MODULES}.AccountsModule")):
        assert wire_modules() == []
        apps.get_app_config("orchestrix_django").ready()
    assert bus.modules == {}


def e007(modules: Any) -> list[CheckMessage]:
    with override_settings(ORCHESTRIX=orchestrix(MODULES=modules)):
        messages = run_checks(tags=["orchestrix"])
    return [m for m in messages if m.id == "orchestrix.E007"]


def test_valid_modules_pass_the_checks() -> None:
    with override_settings(
        ORCHESTRIX=orchestrix(MODULES=[f"{MODULES}.AccountsModule", f"{MODULES}.deposits_module"])
    ):
        assert run_checks(tags=["orchestrix"]) == []
    assert testapp_modules.registrations == []  # checking instantiates and registers nothing


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        (f"{MODULES}.Missing", "could not import"),
        ("tests.django.testapp.no_such_module.Module", "could not import"),
        ("NoDots", "could not import"),
        (f"{MODULES}.NoRegister", "no register(bus, store) method"),
        (f"{MODULES}.not_a_module", "no register(bus, store) method"),
        (f"{MODULES}.NeedsArguments", "cannot be instantiated without arguments"),
        (42, "dotted paths (strings)"),
    ],
)
def test_e007_reports_each_module_that_cannot_be_wired(entry: Any, said: str) -> None:
    [message] = e007([f"{MODULES}.AccountsModule", entry])
    assert said in message.msg
    assert repr(entry) in message.msg
    assert message.is_serious()
    assert "register(bus, store)" in (message.hint or "")


def test_e007_reports_modules_that_are_not_a_list() -> None:
    [message] = e007(f"{MODULES}.AccountsModule")
    assert "must be a list of dotted paths" in message.msg


def test_module_problems_lists_every_bad_entry() -> None:
    bad = [f"{MODULES}.NoRegister", f"{MODULES}.AccountsModule", f"{MODULES}.Missing"]
    with override_settings(ORCHESTRIX=orchestrix(MODULES=bad)):
        problems = module_problems()
    assert len(problems) == 2
    assert "NoRegister" in problems[0]
    assert "Missing" in problems[1]
