"""The in-memory buses: routing by class, order, concurrency, and no swallowed errors."""

import asyncio
import logging
from dataclasses import dataclass

import pytest

from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.messaging.message import Command, Event, Message
from orchestrix.core.messaging.message_bus import AsyncMessageBus, MessageBus
from orchestrix.infrastructure.memory import InMemoryAsyncMessageBus, InMemoryMessageBus
from orchestrix.infrastructure.memory.observability import InMemoryMetricsProvider


@dataclass(frozen=True, kw_only=True)
class Pinged(Event):
    n: int = 0


@dataclass(frozen=True, kw_only=True)
class PingedLoudly(Pinged):
    pass


@dataclass(frozen=True, kw_only=True)
class DoPing(Command):
    pass


def test_buses_satisfy_the_protocols() -> None:
    assert isinstance(InMemoryMessageBus(), MessageBus)
    assert isinstance(InMemoryAsyncMessageBus(), AsyncMessageBus)


def test_handlers_run_in_subscription_order_including_base_class_handlers() -> None:
    bus = InMemoryMessageBus()
    seen: list[str] = []
    bus.subscribe(Event, lambda m: seen.append("any event"))
    bus.subscribe(Pinged, lambda m: seen.append("pinged"))
    bus.subscribe(PingedLoudly, lambda m: seen.append("loudly"))
    bus.subscribe(DoPing, lambda m: seen.append("command"))
    bus.publish(PingedLoudly())
    assert seen == ["any event", "pinged", "loudly"]
    seen.clear()
    bus.publish(Pinged())
    assert seen == ["any event", "pinged"]
    seen.clear()
    bus.publish(DoPing())
    assert seen == ["command"]


def test_publish_without_handlers_is_fine() -> None:
    InMemoryMessageBus().publish(Pinged())


def test_every_handler_runs_and_the_failure_is_raised(caplog: pytest.LogCaptureFixture) -> None:
    metrics = InMemoryMetricsProvider()
    bus = InMemoryMessageBus(observability=ObservabilityHooks(metrics_provider=metrics))
    ran: list[str] = []

    def broken(message: Message) -> None:
        raise RuntimeError("boom")

    def also_broken(message: Message) -> None:
        raise KeyError("k")

    bus.subscribe(Pinged, broken)
    bus.subscribe(Pinged, lambda m: ran.append("after"))
    bus.subscribe(Pinged, also_broken)
    with (
        caplog.at_level(logging.ERROR, logger="orchestrix.bus"),
        pytest.raises(HandlerError) as caught,
    ):
        bus.publish(Pinged())
    assert ran == ["after"]
    error = caught.value
    assert error.message_type == "Pinged"
    assert error.handler_name.endswith("broken")
    assert isinstance(error.original_error, RuntimeError)
    assert [type(e.original_error) for e in error.errors] == [RuntimeError, KeyError]
    assert len([r for r in caplog.records if "failed on Pinged" in r.getMessage()]) == 2
    assert metrics.total("orchestrix.handlers.errors") == 2


def test_unsubscribe() -> None:
    bus = InMemoryMessageBus()
    seen: list[int] = []

    def handler(message: Pinged) -> None:
        seen.append(message.n)

    bus.subscribe(Pinged, handler)
    bus.publish(Pinged(n=1))
    bus.unsubscribe(Pinged, handler)
    bus.publish(Pinged(n=2))
    assert seen == [1]
    with pytest.raises(ValueError, match="not subscribed"):
        bus.unsubscribe(Pinged, handler)


def test_subscribe_validates_arguments() -> None:
    bus = InMemoryMessageBus()
    with pytest.raises(TypeError):
        bus.subscribe(str, print)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.subscribe(Pinged, "not callable")  # type: ignore[arg-type]


def test_async_handler_on_sync_bus_is_reported_not_ignored() -> None:
    bus = InMemoryMessageBus()

    async def handler(message: Pinged) -> None:
        pass

    bus.subscribe(Pinged, handler)
    with pytest.raises(HandlerError, match="InMemoryAsyncMessageBus"):
        bus.publish(Pinged())


def test_async_bus_runs_handlers_concurrently() -> None:
    bus = InMemoryAsyncMessageBus()
    events: list[str] = []
    both_started = asyncio.Event()
    started = 0

    async def handler(name: str) -> None:
        nonlocal started
        started += 1
        events.append(f"start {name}")
        if started == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), timeout=2)
        events.append(f"end {name}")

    bus.subscribe(Pinged, lambda m: handler("a"))
    bus.subscribe(Pinged, lambda m: handler("b"))
    asyncio.run(bus.publish(Pinged()))
    assert events[:2] == ["start a", "start b"]  # b started before a finished


def test_async_bus_raises_failures_after_all_ran() -> None:
    bus = InMemoryAsyncMessageBus()
    done: list[str] = []

    async def broken(message: Message) -> None:
        raise ValueError("nope")

    async def fine(message: Message) -> None:
        await asyncio.sleep(0.01)
        done.append("fine")

    def sync_handler(message: Message) -> None:
        done.append("sync")

    bus.subscribe(Pinged, broken)
    bus.subscribe(Pinged, fine)
    bus.subscribe(Pinged, sync_handler)
    with pytest.raises(HandlerError) as caught:
        asyncio.run(bus.publish(Pinged()))
    assert sorted(done) == ["fine", "sync"]
    assert isinstance(caught.value.original_error, ValueError)
    assert len(caught.value.errors) == 1
