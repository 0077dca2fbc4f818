"""ProjectionEngine: routing, checkpoints, idempotency, failures, dead letters, reporting."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest

from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.observability import (
    MetricsProvider,
    MetricValue,
    ObservabilityHooks,
    TraceSpan,
    TracingProvider,
)
from orchestrix.core.common.retry import FixedDelay
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import (
    InMemoryProjectionStateStore,
    ProjectionEngine,
    ProjectionState,
)
from orchestrix.core.messaging.dead_letter import (
    AsyncDeadLetterQueue,
    DeadLetterStateError,
    DeadLetterStatus,
    retry_async,
)
from orchestrix.core.messaging.message import Event, Message
from orchestrix.infrastructure.memory.dead_letter import InMemoryDeadLetterQueue

# ---------------------------------------------------------------- events


# Every event type here carries a "projection-test." prefix: event classes
# register themselves by `type` process-wide, and an example project or
# another test module may well define its own `OrderCreated`.
PREFIX = "projection-test."


@dataclass(frozen=True, kw_only=True)
class OrderEvent(Event):
    type: str = PREFIX + "OrderEvent"
    order_id: str


@dataclass(frozen=True, kw_only=True)
class OrderCreated(OrderEvent):
    type: str = PREFIX + "OrderCreated"
    total_amount: float


@dataclass(frozen=True, kw_only=True)
class OrderShipped(OrderEvent):
    type: str = PREFIX + "OrderShipped"
    carrier: str = "post"


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(OrderEvent):
    type: str = PREFIX + "OrderCancelled"


@dataclass(frozen=True, kw_only=True)
class CustomerRenamed(Event):
    type: str = PREFIX + "customer.renamed"
    name: str


def stored(position: int, event: Event, version: int = 1) -> StoredEvent:
    return StoredEvent(
        position=position, stream_id=f"stream-{position}", version=version, event=event
    )


def created(order_id: str, total: float = 10.0) -> OrderCreated:
    return OrderCreated(order_id=order_id, total_amount=total)


class Boom(Exception):
    pass


# ---------------------------------------------------------------- recording doubles


class RecordingMetrics(MetricsProvider):
    def __init__(self) -> None:
        self.metrics: list[MetricValue] = []

    def record_metric(self, metric: MetricValue) -> None:
        self.metrics.append(metric)

    def total(self, name: str) -> float:
        return sum(m.value for m in self.metrics if m.name == name)


class RecordingTracer(TracingProvider):
    def __init__(self) -> None:
        self.ended: list[TraceSpan] = []

    def start_span(self, operation: str) -> TraceSpan:
        return TraceSpan(operation=operation, provider=self)

    def end_span(self, span: TraceSpan) -> None:
        self.ended.append(span)


class CountingStore(InMemoryProjectionStateStore):
    def __init__(self) -> None:
        super().__init__()
        self.saves: list[ProjectionState] = []

    def save_state(self, state: ProjectionState) -> None:
        self.saves.append(state)
        super().save_state(state)


class AsyncStore:
    def __init__(self) -> None:
        self.inner = InMemoryProjectionStateStore()

    async def load_state(self, projection_id: str) -> ProjectionState | None:
        await asyncio.sleep(0)
        return self.inner.load_state(projection_id)

    async def save_state(self, state: ProjectionState) -> None:
        await asyncio.sleep(0)
        self.inner.save_state(state)

    async def delete_state(self, projection_id: str) -> None:
        self.inner.delete_state(projection_id)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# ---------------------------------------------------------------- the reference example


def test_reference_example_as_written() -> None:
    events = [created("ORD-1", 99.99), created("ORD-2", 5.0), created("ORD-1", 120.0)]

    async def main() -> dict[str, float]:
        state_store = InMemoryProjectionStateStore()
        engine = ProjectionEngine("order-summary", state_store)

        order_totals: dict[str, float] = {}

        @engine.on(OrderCreated)
        async def on_order_created(event: OrderCreated) -> None:
            order_totals[event.order_id] = event.total_amount

        await engine.initialize()
        await engine.process_events(events)

        state = engine.get_state()
        assert isinstance(state, ProjectionState)
        assert state.projection_id == "order-summary"
        assert state.last_processed_position == 3
        assert state.last_processed_event_id == events[-1].id
        assert state.updated_at.tzinfo is not None
        assert (state.error_count, state.is_healthy) == (0, True)
        assert engine.is_healthy()
        assert state_store.load_state("order-summary") == state
        return order_totals

    assert run(main()) == {"ORD-1": 120.0, "ORD-2": 5.0}


def test_projection_state_has_the_reference_fields_and_defaults() -> None:
    state = ProjectionState(projection_id="p")
    assert state.last_processed_event_id is None
    assert state.last_processed_position == 0
    assert state.updated_at.utcoffset() is not None
    assert (state.error_count, state.is_healthy, state.last_error, state.events_processed) == (
        0,
        True,
        None,
        0,
    )
    with pytest.raises(ValueError, match="projection_id"):
        ProjectionState(projection_id="")
    with pytest.raises(ValueError, match="last_processed_position"):
        ProjectionState(projection_id="p", last_processed_position=-1)


# ---------------------------------------------------------------- routing


def test_sync_and_async_handlers_run_in_registration_order() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    calls: list[str] = []

    @engine.on(OrderCreated)
    def first(event: OrderCreated) -> None:
        calls.append("first")

    @engine.on(OrderCreated)
    async def second(event: OrderCreated) -> None:
        await asyncio.sleep(0)
        calls.append("second")

    @engine.on(OrderCreated)
    def third(event: OrderCreated) -> None:
        calls.append("third")

    assert run(engine.process_events([created("A")])) == 1
    assert calls == ["first", "second", "third"]


def test_base_class_string_and_catch_all_handlers() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    calls: list[tuple[str, str]] = []

    @engine.on(OrderEvent)
    def any_order(event: OrderEvent) -> None:
        calls.append(("base", event.type))

    @engine.on(PREFIX + "customer.renamed")
    def renamed(event: Event) -> None:
        calls.append(("string", event.type))

    @engine.on(PREFIX + "OrderShipped")
    def shipped(event: Event) -> None:
        calls.append(("string", event.type))

    @engine.on(Event)
    def everything(event: Event) -> None:
        calls.append(("all", event.type))

    run(
        engine.process_events(
            [created("A"), OrderShipped(order_id="A"), CustomerRenamed(name="Bo")]
        )
    )
    assert calls == [
        ("base", PREFIX + "OrderCreated"),
        ("all", PREFIX + "OrderCreated"),
        ("base", PREFIX + "OrderShipped"),
        ("string", PREFIX + "OrderShipped"),
        ("all", PREFIX + "OrderShipped"),
        ("string", PREFIX + "customer.renamed"),
        ("all", PREFIX + "customer.renamed"),
    ]
    assert engine.handled_types() == (
        OrderEvent,
        PREFIX + "customer.renamed",
        PREFIX + "OrderShipped",
        Event,
    )


def test_a_function_registered_under_two_matching_keys_runs_once() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    calls: list[str] = []

    def handler(event: Event) -> None:
        calls.append(event.type)

    engine.on(OrderCreated)(handler)
    engine.on(PREFIX + "OrderCreated")(handler)
    engine.on(OrderEvent)(handler)
    run(engine.process_events([created("A")]))
    assert calls == [PREFIX + "OrderCreated"]
    assert engine.handled_types() == (OrderCreated, PREFIX + "OrderCreated", OrderEvent)


def test_handlers_registered_after_processing_are_routed() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    calls: list[str] = []
    engine.on(OrderCreated)(lambda event: calls.append("early"))
    run(engine.process_events([created("A")]))
    engine.on(OrderCreated)(lambda event: calls.append("late"))
    run(engine.process_events([created("B")]))
    assert calls == ["early", "early", "late"]


def test_events_without_handlers_still_advance_the_checkpoint() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    engine.on(OrderCreated)(lambda event: None)
    shipped = OrderShipped(order_id="A")
    assert run(engine.process_events([stored(3, created("A")), stored(8, shipped)])) == 2
    state = engine.get_state()
    assert (state.last_processed_position, state.last_processed_event_id) == (8, shipped.id)
    assert state.events_processed == 2
    assert engine.lag(8) == 0


def test_on_rejects_what_is_not_an_event_type() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    with pytest.raises(TypeError, match="Event subclass"):
        engine.on(Message)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Event subclass"):
        engine.on(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        engine.on("")
    with pytest.raises(TypeError, match="callable"):
        engine.on(OrderCreated)("not callable")  # type: ignore[type-var]
    with pytest.raises(TypeError, match="Event or StoredEvent"):
        run(engine.process_events(["nope"]))  # type: ignore[list-item]


def test_handlers_for_routes_like_process_events() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())

    def on_created(event: Event) -> None: ...

    def on_any_order(event: Event) -> None: ...

    def on_rename(event: Event) -> None: ...

    engine.on(OrderCreated)(on_created)
    engine.on(OrderEvent)(on_any_order)
    engine.on(PREFIX + "OrderCreated")(on_created)
    engine.on(CustomerRenamed)(on_rename)
    assert engine.handlers_for(created("A")) == (on_created, on_any_order)
    assert engine.handlers_for(OrderShipped(order_id="A")) == (on_any_order,)
    assert engine.handlers() == (on_created, on_any_order, on_rename)


def test_mark_applied_advances_as_process_events_would() -> None:
    """A runner that ran the handlers itself: one save, same state as process_events."""
    store = CountingStore()
    metrics = RecordingMetrics()
    engine = ProjectionEngine(
        "p",
        store,
        observability=ObservabilityHooks(metrics_provider=metrics),
        checkpoint_every=None,
    )
    twin = ProjectionEngine("twin", InMemoryProjectionStateStore(), checkpoint_every=None)
    batch = [stored(2, created("A")), stored(5, created("B")), stored(9, created("C"))]
    run(engine.initialize())
    saves_before = len(store.saves)
    assert run(engine.mark_applied(batch)) == 3
    assert run(twin.process_events(batch)) == 3
    state, expected = engine.get_state(), twin.get_state()
    assert (state.last_processed_position, state.last_processed_event_id) == (9, batch[2].event.id)
    assert state.events_processed == expected.events_processed == 3
    assert len(store.saves) == saves_before + 1
    assert store.load_state("p") == state
    assert metrics.total("orchestrix.projections.events") == 3
    # Behind the checkpoint: nothing moves, and the plain event's id is remembered.
    assert run(engine.mark_applied([stored(5, created("B")), stored(10, created("D"))])) == 1
    plain = created("E")
    assert run(engine.mark_applied([plain])) == 1
    assert run(engine.mark_applied([plain])) == 0
    assert run(engine.process_events([plain])) == 0
    assert engine.get_state().last_processed_position == 11


def test_mark_applied_remembers_only_the_newest_ids_of_the_window() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore(), dedupe_window=2)
    events = [created(f"O-{n}") for n in range(5)]
    assert run(engine.mark_applied([stored(n + 1, e) for n, e in enumerate(events)])) == 5
    # A plain event already processed is skipped only while its id is in the window.
    assert run(engine.mark_applied([events[4]])) == 0
    assert run(engine.mark_applied([events[3]])) == 0
    assert run(engine.mark_applied([events[0]])) == 1
    assert engine.get_state().last_processed_position == 6


def test_mark_applied_makes_a_stopped_projection_healthy_again() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())

    def fail(event: Event) -> None:
        raise Boom("no")

    engine.on(OrderShipped)(fail)
    with pytest.raises(HandlerError):
        run(engine.process_events([stored(1, OrderShipped(order_id="A"))]))
    assert not engine.is_healthy()
    run(engine.mark_applied([stored(1, OrderShipped(order_id="A"))]))
    assert engine.is_healthy()


# ---------------------------------------------------------------- idempotency


def test_stored_events_are_idempotent_by_position() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    seen: list[str] = []
    engine.on(OrderCreated)(lambda event: seen.append(event.order_id))
    first_batch = [stored(1, created("A")), stored(2, created("B")), stored(5, created("C"))]
    assert run(engine.process_events(first_batch)) == 3
    # The same batch again, an older position arriving late, and an overlap.
    assert run(engine.process_events(first_batch)) == 0
    assert run(engine.process_events([stored(4, created("late"))])) == 0
    assert run(engine.handle_event(stored(3, created("late")))) is False
    assert run(engine.process_events([stored(5, created("C")), stored(7, created("D"))])) == 1
    assert seen == ["A", "B", "C", "D"]
    assert engine.get_state().last_processed_position == 7


def test_plain_events_are_deduplicated_by_id() -> None:
    store = InMemoryProjectionStateStore()
    engine = ProjectionEngine("p", store)
    seen: list[str] = []
    engine.on(OrderCreated)(lambda event: seen.append(event.order_id))
    a, b, c = created("A"), created("B"), created("C")
    assert run(engine.process_events([a, b, a])) == 2  # a duplicate inside a batch
    assert run(engine.process_events([a, b, c])) == 1  # a re-delivered batch
    assert run(engine.handle_event(b)) is False
    assert seen == ["A", "B", "C"]
    state = engine.get_state()
    assert (state.last_processed_position, state.last_processed_event_id) == (3, c.id)

    # A new engine remembers only the checkpoint's event id.
    restarted = ProjectionEngine("p", store)
    restarted.on(OrderCreated)(lambda event: seen.append(event.order_id))
    assert run(restarted.process_events([c])) == 0
    assert seen == ["A", "B", "C"]


def test_the_dedupe_window_is_bounded() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore(), dedupe_window=2)
    seen: list[str] = []
    engine.on(OrderCreated)(lambda event: seen.append(event.order_id))
    a, b, c = created("A"), created("B"), created("C")
    run(engine.process_events([a, b, c]))
    run(engine.process_events([b, c]))  # still remembered
    run(engine.process_events([a]))  # fell out of the window: processed again
    assert seen == ["A", "B", "C", "A"]
    with pytest.raises(ValueError, match="dedupe_window"):
        ProjectionEngine("p", InMemoryProjectionStateStore(), dedupe_window=-1)


# ---------------------------------------------------------------- state persistence


def test_a_new_engine_resumes_from_the_persisted_state() -> None:
    store = InMemoryProjectionStateStore()
    seen: list[str] = []

    def build() -> ProjectionEngine:
        engine = ProjectionEngine("resumable", store)
        engine.on(OrderCreated)(lambda event: seen.append(event.order_id))
        return engine

    log = [stored(n, created(f"O{n}")) for n in range(1, 6)]
    run(build().process_events(log[:3]))
    persisted = store.load_state("resumable")
    assert persisted is not None
    assert persisted.last_processed_position == 3
    assert persisted.last_processed_event_id == log[2].event.id

    second = build()
    assert second.get_state().last_processed_position == 0  # not loaded yet
    loaded = run(second.initialize())
    assert loaded == persisted
    assert second.lag(5) == 2
    run(second.process_events(log))
    assert seen == ["O1", "O2", "O3", "O4", "O5"]
    assert store.load_state("resumable") == second.get_state()
    assert second.get_state().events_processed == 5


def test_initialize_creates_and_saves_a_fresh_state() -> None:
    store = CountingStore()
    engine = ProjectionEngine("fresh", store)
    state = run(engine.initialize())
    assert state == ProjectionState(projection_id="fresh", updated_at=state.updated_at)
    assert store.load_state("fresh") == state
    assert len(store.saves) == 1


def test_async_state_stores_are_supported() -> None:
    store = AsyncStore()
    engine = ProjectionEngine("async", store)
    seen: list[str] = []
    engine.on(OrderCreated)(lambda event: seen.append(event.order_id))

    async def main() -> None:
        await engine.initialize()
        await engine.process_events([stored(1, created("A")), stored(2, created("B"))])
        await engine.handle_event(stored(3, created("C")))

    run(main())
    assert seen == ["A", "B", "C"]
    saved = store.inner.load_state("async")
    assert saved is not None
    assert saved.last_processed_position == 3


def test_state_is_saved_after_each_event_by_default_or_once_per_batch() -> None:
    per_event = CountingStore()
    engine = ProjectionEngine("p", per_event)
    run(engine.process_events([stored(n, created(str(n))) for n in range(1, 5)]))
    # 1 for the fresh state, then one per applied event.
    assert [s.last_processed_position for s in per_event.saves] == [0, 1, 2, 3, 4]

    per_batch = CountingStore()
    engine = ProjectionEngine("p", per_batch, checkpoint_every=None)
    run(engine.process_events([stored(n, created(str(n))) for n in range(1, 5)]))
    run(engine.process_events([stored(2, created("old"))]))  # nothing new: no save
    assert [s.last_processed_position for s in per_batch.saves] == [0, 4]

    every_three = CountingStore()
    engine = ProjectionEngine("p", every_three, checkpoint_every=3)
    run(engine.process_events([stored(n, created(str(n))) for n in range(1, 8)]))
    assert [s.last_processed_position for s in every_three.saves] == [0, 3, 6, 7]
    with pytest.raises(ValueError, match="checkpoint_every"):
        ProjectionEngine("p", every_three, checkpoint_every=0)


def test_a_batch_cut_short_keeps_the_checkpoint_of_applied_events() -> None:
    store = InMemoryProjectionStateStore()
    engine = ProjectionEngine("p", store, checkpoint_every=None)
    seen: list[str] = []
    engine.on(OrderCreated)(lambda event: seen.append(event.order_id))

    def feed() -> Iterator[StoredEvent]:
        yield stored(1, created("A"))
        yield stored(2, created("B"))
        raise ConnectionError("log reader lost its connection")

    with pytest.raises(ConnectionError):
        run(engine.process_events(feed()))
    saved = store.load_state("p")
    assert saved is not None
    assert saved.last_processed_position == 2
    assert seen == ["A", "B"]


def test_handle_event_saves_and_reports_whether_it_applied() -> None:
    store = InMemoryProjectionStateStore()
    engine = ProjectionEngine("p", store, checkpoint_every=None)
    event = stored(4, created("A"))
    assert run(engine.handle_event(event)) is True
    assert run(engine.handle_event(event)) is False
    saved = store.load_state("p")
    assert saved is not None
    assert saved.last_processed_position == 4


def test_get_state_before_initialize_is_a_fresh_unsaved_state() -> None:
    store = InMemoryProjectionStateStore()
    engine = ProjectionEngine("p", store)
    assert engine.get_state().last_processed_position == 0
    assert engine.is_healthy()
    assert store.load_state("p") is None
    assert engine.lag(10) == 10
    assert engine.lag(-3) == 0


# ---------------------------------------------------------------- replay and reset


def test_replay_resets_the_read_model_and_the_checkpoint() -> None:
    store = InMemoryProjectionStateStore()
    engine = ProjectionEngine("p", store)
    totals: dict[str, float] = {}
    resets: list[str] = []

    @engine.on(OrderCreated)
    def add(event: OrderCreated) -> None:
        totals[event.order_id] = totals.get(event.order_id, 0.0) + event.total_amount

    @engine.on_reset
    def clear() -> None:
        resets.append("sync")
        totals.clear()

    @engine.on_reset
    async def clear_async() -> None:
        resets.append("async")

    log = [stored(1, created("A", 1.0)), stored(2, created("A", 2.0)), stored(3, created("B"))]
    run(engine.process_events(log))
    assert totals == {"A": 3.0, "B": 10.0}
    # Without the reset the same log would be skipped; replay applies it once again.
    assert run(engine.replay(log)) == 3
    assert totals == {"A": 3.0, "B": 10.0}
    assert resets == ["sync", "async"]
    state = engine.get_state()
    assert (state.last_processed_position, state.events_processed) == (3, 3)
    assert store.load_state("p") == state


def test_reset_starts_a_fresh_state_and_forgets_plain_event_ids() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    seen: list[str] = []
    engine.on(OrderCreated)(lambda event: seen.append(event.order_id))

    @engine.on(OrderShipped)
    def fail(event: OrderShipped) -> None:
        raise Boom("no")

    a = created("A")
    with pytest.raises(HandlerError):
        run(engine.process_events([a, OrderShipped(order_id="A")]))
    assert engine.get_state().error_count == 1
    run(engine.reset())
    assert engine.get_state() == ProjectionState(
        projection_id="p", updated_at=engine.get_state().updated_at
    )
    run(engine.process_events([a]))
    assert seen == ["A", "A"]


def test_a_failing_reset_hook_marks_the_projection_unhealthy() -> None:
    store = InMemoryProjectionStateStore()
    engine = ProjectionEngine("p", store)
    run(engine.process_events([stored(5, created("A"))]))

    @engine.on_reset
    def broken() -> None:
        raise Boom("cannot truncate")

    with pytest.raises(Boom):
        run(engine.replay([]))
    state = engine.get_state()
    assert not state.is_healthy
    assert state.last_processed_position == 5  # the checkpoint was not reset
    assert state.last_error is not None
    assert "reset failed" in state.last_error
    assert "cannot truncate" in state.last_error
    assert store.load_state("p") == state


# ---------------------------------------------------------------- failures: stop


def test_stop_policy_raises_and_keeps_the_checkpoint_before_the_failure() -> None:
    store = InMemoryProjectionStateStore()
    hooks = ObservabilityHooks(metrics_provider=RecordingMetrics())
    engine = ProjectionEngine("p", store, observability=hooks)
    seen: list[str] = []
    broken = {"B"}

    @engine.on(OrderCreated)
    def project(event: OrderCreated) -> None:
        if event.order_id in broken:
            raise Boom(f"bad order {event.order_id}")
        seen.append(event.order_id)

    log = [stored(1, created("A")), stored(2, created("B")), stored(3, created("C"))]
    with pytest.raises(HandlerError) as caught:
        run(engine.process_events(log))
    error = caught.value
    assert error.message_type == PREFIX + "OrderCreated"
    assert error.handler_name.endswith("project")
    assert isinstance(error.original_error, Boom)
    assert error.__cause__ is error.original_error

    assert seen == ["A"]  # C was not processed
    state = engine.get_state()
    assert state.last_processed_position == 1
    assert state.last_processed_event_id == log[0].event.id
    assert not state.is_healthy
    assert not engine.is_healthy()
    assert state.error_count == 1
    assert state.last_error is not None
    assert "bad order B" in state.last_error
    assert "position 2" in state.last_error
    assert store.load_state("p") == state  # saved, so a restart sees it too

    # It fails again on the next run, counting the errors...
    with pytest.raises(HandlerError):
        run(engine.process_events(log))
    assert engine.get_state().error_count == 2
    # ...and recovers once the handler is fixed, starting from the failed event.
    broken.clear()
    assert run(engine.process_events(log)) == 2
    assert seen == ["A", "B", "C"]
    state = engine.get_state()
    assert (state.is_healthy, state.last_processed_position, state.error_count) == (True, 3, 2)
    assert state.last_error is not None  # the last error stays visible after recovery


def test_stop_policy_on_handle_event() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())

    @engine.on(OrderCreated)
    async def project(event: OrderCreated) -> None:
        raise Boom("async failure")

    with pytest.raises(HandlerError) as caught:
        run(engine.handle_event(created("A")))
    assert isinstance(caught.value.original_error, Boom)
    assert engine.get_state().last_processed_position == 0


def test_retry_policy_succeeding_on_the_second_attempt_stays_healthy() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore(), retry_policy=FixedDelay(delay=0))
    attempts: list[str] = []
    earlier: list[str] = []

    @engine.on(OrderCreated)
    def first(event: OrderCreated) -> None:
        earlier.append(event.order_id)

    @engine.on(OrderCreated)
    def flaky(event: OrderCreated) -> None:
        attempts.append(event.order_id)
        if len(attempts) == 1:
            raise ConnectionError("transient")

    assert run(engine.process_events([created("A")])) == 1
    assert attempts == ["A", "A"]
    assert earlier == ["A"]  # a retry re-runs only the failing handler
    state = engine.get_state()
    assert (state.is_healthy, state.error_count, state.last_processed_position) == (True, 0, 1)


def test_retry_policy_gives_up_after_max_retries() -> None:
    engine = ProjectionEngine(
        "p", InMemoryProjectionStateStore(), retry_policy=FixedDelay(max_retries=2, delay=0)
    )
    calls: list[int] = []

    @engine.on(OrderCreated)
    def always(event: OrderCreated) -> None:
        calls.append(1)
        raise Boom("permanent")

    with pytest.raises(HandlerError):
        run(engine.process_events([created("A")]))
    assert len(calls) == 3
    assert "after 3 attempt(s)" in (engine.get_state().last_error or "")


# ---------------------------------------------------------------- failures: park


def make_parking_engine(
    queue: InMemoryDeadLetterQueue, store: InMemoryProjectionStateStore | None = None, **kw: Any
) -> tuple[ProjectionEngine, list[str], set[str]]:
    engine = ProjectionEngine(
        "order-summary",
        store or InMemoryProjectionStateStore(),
        dead_letters=queue,
        on_failure="park",
        **kw,
    )
    seen: list[str] = []
    broken: set[str] = set()

    @engine.on(OrderCreated)
    def project(event: OrderCreated) -> None:
        if event.order_id in broken:
            raise Boom(f"bad order {event.order_id}")
        seen.append(event.order_id)

    return engine, seen, broken


def test_park_policy_parks_the_event_and_continues() -> None:
    queue = InMemoryDeadLetterQueue()
    engine, seen, broken = make_parking_engine(queue, retry_policy=FixedDelay(1, delay=0))
    broken.add("B")
    log = [stored(1, created("A")), stored(2, created("B"), version=4), stored(3, created("C"))]
    assert run(engine.process_events(log)) == 2
    assert seen == ["A", "C"]

    state = engine.get_state()
    assert state.last_processed_position == 3
    assert state.events_processed == 2  # the parked event is not counted
    assert state.error_count == 1
    assert not state.is_healthy  # its read model lacks B
    assert "bad order B" in (state.last_error or "")

    [letter] = queue.list(source="projection:order-summary")
    assert letter.message == log[1].event
    assert letter.message_type == PREFIX + "OrderCreated"
    assert letter.error_type.endswith("Boom")
    assert letter.reason == "bad order B"
    assert letter.attempts == 2  # the first call and one retry
    assert (letter.position, letter.stream_id, letter.version) == (2, "stream-2", 4)
    assert letter.handler is not None
    assert letter.handler.endswith("project")

    # Re-delivering the log parks nothing twice.
    assert run(engine.process_events(log)) == 0
    assert queue.count() == 1


def test_retrying_a_parked_event_applies_it_once_and_heals() -> None:
    queue = InMemoryDeadLetterQueue()
    store = InMemoryProjectionStateStore()
    engine, seen, broken = make_parking_engine(queue, store)
    broken.add("B")
    run(engine.process_events([stored(1, created("A")), stored(2, created("B"))]))
    [letter] = queue.list()

    # Still broken: the letter stays parked with one more attempt, and the error is raised.
    with pytest.raises(HandlerError):
        run(engine.retry_dead_letter(letter.id))
    again = queue.get(letter.id)
    assert again is not None
    assert (again.status, again.attempts) == (DeadLetterStatus.PARKED, 2)
    assert engine.get_state().error_count == 2

    broken.clear()
    run(engine.retry_dead_letter(letter.id))
    assert seen == ["A", "B"]
    resolved = queue.get(letter.id)
    assert resolved is not None
    assert resolved.status is DeadLetterStatus.RETRIED
    state = engine.get_state()
    assert state.is_healthy
    assert (state.last_processed_position, state.events_processed) == (2, 2)
    assert store.load_state("order-summary") == state

    # A retried letter is never applied twice.
    with pytest.raises(DeadLetterStateError):
        run(engine.retry_dead_letter(letter.id))
    assert seen == ["A", "B"]


def test_the_generic_retry_helper_works_with_an_engine() -> None:
    queue = InMemoryDeadLetterQueue()
    engine, seen, broken = make_parking_engine(queue)
    broken.add("A")
    run(engine.process_events([created("A")]))
    [letter] = queue.list()
    broken.clear()

    async def reapply(message: Message) -> None:
        assert isinstance(message, OrderCreated)
        seen.append(message.order_id)

    run(retry_async(queue, letter.id, reapply))
    assert seen == ["A"]
    assert queue.count() == 0
    # Health is settled at the engine's next call.
    assert not engine.is_healthy()
    run(engine.process_events([]))
    assert engine.is_healthy()


def test_the_projection_stays_unhealthy_until_every_letter_is_resolved() -> None:
    queue = InMemoryDeadLetterQueue()
    engine, _seen, broken = make_parking_engine(queue)
    broken.update({"A", "B"})
    run(engine.process_events([created("A"), created("B"), created("C")]))
    first, second = queue.list()
    queue.discard(first.id)
    run(engine.process_events([created("D")]))
    assert not engine.is_healthy()
    queue.discard(second.id)
    run(engine.initialize())
    assert engine.is_healthy()


def test_retry_dead_letter_checks_the_letter() -> None:
    queue = InMemoryDeadLetterQueue()
    engine, _seen, _broken = make_parking_engine(queue)
    other = queue.park(created("X"), Boom("x"), source="projection:other")
    with pytest.raises(ValueError, match="belongs to 'projection:other'"):
        run(engine.retry_dead_letter(other.id))
    with pytest.raises(LookupError):
        run(engine.retry_dead_letter("missing"))
    plain = ProjectionEngine("p", InMemoryProjectionStateStore())
    with pytest.raises(ValueError, match="no dead-letter queue"):
        run(plain.retry_dead_letter(other.id))


def test_reset_discards_the_projections_parked_letters() -> None:
    queue = InMemoryDeadLetterQueue()
    engine, seen, broken = make_parking_engine(queue)
    foreign = queue.park(created("X"), Boom("x"), source="projection:other")
    broken.add("B")
    log = [stored(1, created("A")), stored(2, created("B"))]
    run(engine.process_events(log))
    broken.clear()
    run(engine.replay(log))
    assert seen == ["A", "A", "B"]
    assert queue.count(source=engine.dead_letter_source) == 0
    assert queue.count(source=engine.dead_letter_source, status=DeadLetterStatus.DISCARDED) == 1
    assert queue.get(foreign.id) == foreign  # other projections' letters are untouched
    assert engine.is_healthy()


def test_park_needs_a_dead_letter_queue_and_a_known_policy() -> None:
    with pytest.raises(ValueError, match="dead-letter queue"):
        ProjectionEngine("p", InMemoryProjectionStateStore(), on_failure="park")
    with pytest.raises(ValueError, match="on_failure"):
        ProjectionEngine("p", InMemoryProjectionStateStore(), on_failure="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="projection_id"):
        ProjectionEngine("", InMemoryProjectionStateStore())


def test_when_parking_fails_the_engine_stops_instead_of_skipping() -> None:
    class BrokenQueue(InMemoryDeadLetterQueue):
        def park(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("queue down")

    engine, seen, broken = make_parking_engine(BrokenQueue())
    broken.add("B")
    with pytest.raises(HandlerError):
        run(engine.process_events([stored(1, created("A")), stored(2, created("B"))]))
    state = engine.get_state()
    assert state.last_processed_position == 1
    assert "parking failed" in (state.last_error or "")
    assert seen == ["A"]


# ---------------------------------------------------------------- reporting


def test_observability_counts_processed_events_and_errors() -> None:
    metrics = RecordingMetrics()
    hooks = ObservabilityHooks(metrics_provider=metrics)
    processed: list[tuple[str, int, int]] = []
    errors: list[tuple[str, str]] = []
    hooks.on("projection_processed", lambda *args: processed.append(args))
    hooks.on("projection_error", lambda *args: errors.append(args))
    queue = InMemoryDeadLetterQueue()
    engine, _seen, broken = make_parking_engine(queue, observability=hooks)
    broken.add("B")

    run(engine.process_events([stored(1, created("A")), stored(2, created("B"))]))
    run(engine.handle_event(stored(3, created("C"))))
    run(engine.process_events([stored(3, created("C"))]))  # skipped: nothing reported

    assert processed == [("order-summary", 1, 2), ("order-summary", 1, 3)]
    assert len(errors) == 1
    assert errors[0][0] == "order-summary"
    assert "bad order B" in errors[0][1]
    assert metrics.total("orchestrix.projections.events") == 2
    assert metrics.total("orchestrix.projections.errors") == 1
    engine.lag(10)
    [lag] = [m for m in metrics.metrics if m.name == "orchestrix.projections.lag"]
    assert (lag.value, lag.metric_type, lag.labels) == (
        7.0,
        "gauge",
        {"projection": "order-summary"},
    )


def test_handler_failures_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    engine = ProjectionEngine("logged", InMemoryProjectionStateStore())

    @engine.on(OrderCreated)
    def fail(event: OrderCreated) -> None:
        raise Boom("visible in the log")

    with caplog.at_level("ERROR"), pytest.raises(HandlerError):
        run(engine.process_events([created("A")]))
    [record] = [r for r in caplog.records if "logged" in r.getMessage()]
    assert "visible in the log" in record.getMessage()
    assert record.exc_info is not None


def test_tracing_spans_per_batch_and_event() -> None:
    tracer = RecordingTracer()
    engine = ProjectionEngine("traced", InMemoryProjectionStateStore(), tracer)

    @engine.on(OrderCreated)
    def project(event: OrderCreated) -> None:
        if event.order_id == "bad":
            raise Boom("traced failure")

    run(engine.process_events([stored(1, created("A")), stored(2, created("B"))]))
    by_operation = [span.operation for span in tracer.ended]
    assert by_operation == [
        "projection.handle_event",
        "projection.handle_event",
        "projection.process_events",
    ]
    first, second, batch = tracer.ended
    assert first.parent_span_id == second.parent_span_id == batch.span_id
    assert first.trace_id == batch.trace_id
    assert first.attributes["position"] == 1
    assert first.attributes["event_type"] == PREFIX + "OrderCreated"
    assert first.attributes["outcome"] == "applied"
    assert batch.attributes["applied"] == 2
    assert all(span.status == "ok" for span in tracer.ended)

    tracer.ended.clear()
    with pytest.raises(HandlerError):
        run(engine.handle_event(stored(3, created("bad"))))
    [span] = tracer.ended
    assert span.status == "error"
    assert span.parent_span_id is None


def test_no_tracing_provider_means_no_spans() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    run(engine.process_events([created("A")]))  # nothing to assert beyond "it works"
    assert engine.tracing is None


# ---------------------------------------------------------------- concurrency and extension


def test_concurrent_calls_on_one_engine_are_serialised() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    active: list[int] = []
    overlaps: list[int] = []

    @engine.on(OrderCreated)
    async def slow(event: OrderCreated) -> None:
        active.append(1)
        if len(active) > 1:
            overlaps.append(len(active))
        await asyncio.sleep(0.001)
        active.pop()

    async def main() -> None:
        await asyncio.gather(
            *(engine.handle_event(stored(n, created(str(n)))) for n in range(1, 6))
        )

    run(main())
    assert overlaps == []
    assert engine.get_state().last_processed_position == 5
    assert engine.get_state().events_processed == 5


def test_re_entrant_calls_are_refused() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())

    @engine.on(OrderCreated)
    async def nested(event: OrderCreated) -> None:
        await engine.process_events([])

    with pytest.raises(HandlerError) as caught:
        run(engine.process_events([created("A")]))
    assert isinstance(caught.value.original_error, RuntimeError)
    assert "re-entrantly" in str(caught.value.original_error)


def test_invoke_handler_can_be_overridden_to_wrap_each_attempt() -> None:
    wrapped: list[str] = []

    class Savepointed(ProjectionEngine):
        async def invoke_handler(self, handler: Any, event: Event) -> None:
            wrapped.append(f"begin {event.type.removeprefix(PREFIX)}")
            try:
                await super().invoke_handler(handler, event)
            finally:
                wrapped.append("end")

    engine = Savepointed("p", InMemoryProjectionStateStore(), retry_policy=FixedDelay(1, delay=0))
    failures = iter([True, False])

    @engine.on(OrderCreated)
    def flaky(event: OrderCreated) -> None:
        if next(failures):
            raise Boom("once")

    run(engine.process_events([created("A")]))
    assert wrapped == ["begin OrderCreated", "end", "begin OrderCreated", "end"]


def test_a_handler_returning_an_awaitable_is_awaited() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    seen: list[str] = []

    async def record(event: OrderCreated) -> None:
        seen.append(event.order_id)

    engine.on(OrderCreated)(lambda event: record(event))
    run(engine.process_events([created("A")]))
    assert seen == ["A"]


def test_the_engine_can_be_used_across_event_loops() -> None:
    engine = ProjectionEngine("p", InMemoryProjectionStateStore())
    for n in range(1, 4):
        run(engine.handle_event(stored(n, created(str(n)))))
    assert engine.get_state().last_processed_position == 3
    assert repr(engine) == "<ProjectionEngine 'p'>"


# ---------------------------------------------------------------- operator actions and async queues


def test_skip_event_moves_past_the_failing_event_without_applying_it() -> None:
    store = InMemoryProjectionStateStore()
    engine = ProjectionEngine("p", store)
    seen: list[str] = []

    @engine.on(OrderCreated)
    def project(event: OrderCreated) -> None:
        if event.order_id == "B":
            raise Boom("poison")
        seen.append(event.order_id)

    log = [stored(1, created("A")), stored(2, created("B")), stored(3, created("C"))]
    with pytest.raises(HandlerError):
        run(engine.process_events(log))
    assert run(engine.skip_event(log[1])) is True
    assert run(engine.skip_event(log[1])) is False  # already behind the checkpoint
    state = engine.get_state()
    assert (state.last_processed_position, state.is_healthy, state.error_count) == (2, True, 1)
    assert state.events_processed == 1
    assert store.load_state("p") == state
    run(engine.process_events(log))
    assert seen == ["A", "C"]


def test_async_dead_letter_queues_are_supported() -> None:
    class AsyncQueue:
        """Every method of the in-memory queue, as a coroutine function."""

        def __init__(self) -> None:
            self.inner = InMemoryDeadLetterQueue()

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.inner, name)

            async def call(*args: Any, **kwargs: Any) -> Any:
                await asyncio.sleep(0)
                return method(*args, **kwargs)

            return call

    queue = AsyncQueue()
    engine = ProjectionEngine(
        "p",
        InMemoryProjectionStateStore(),
        dead_letters=cast(AsyncDeadLetterQueue, queue),
        on_failure="park",
    )
    seen: list[str] = []
    broken = {"B"}

    @engine.on(OrderCreated)
    def project(event: OrderCreated) -> None:
        if event.order_id in broken:
            raise Boom("no")
        seen.append(event.order_id)

    run(engine.process_events([stored(1, created("A")), stored(2, created("B"))]))
    [letter] = queue.inner.list()
    assert letter.position == 2
    assert not engine.is_healthy()
    broken.clear()
    run(engine.retry_dead_letter(letter.id))
    assert seen == ["A", "B"]
    assert engine.is_healthy()
    run(engine.replay([]))
    assert queue.inner.count(status=None) == 1


def test_catch_up_from_the_global_log_of_the_in_memory_store() -> None:
    from orchestrix.infrastructure.memory.store import InMemoryEventStore

    log = InMemoryEventStore()
    log.save("order-1", [created("1", 1.0), OrderShipped(order_id="1")])
    log.save("order-2", [created("2", 2.0)])
    engine = ProjectionEngine("catch-up", InMemoryProjectionStateStore())
    totals: dict[str, float] = {}
    engine.on(OrderCreated)(lambda event: totals.__setitem__(event.order_id, event.total_amount))

    async def catch_up(batch_size: int) -> None:
        # What a runner does: read after the checkpoint, in batches, until the head.
        while batch := log.read_all(engine.get_state().last_processed_position, batch_size):
            await engine.process_events(batch)

    run(catch_up(2))
    assert totals == {"1": 1.0, "2": 2.0}
    assert engine.lag(log.head_position()) == 0
    log.save("order-3", [created("3", 3.0)])
    assert engine.lag(log.head_position()) == 1
    run(catch_up(2))
    assert totals["3"] == 3.0
    assert engine.lag(log.head_position()) == 0


# ---------------------------------------------------------------- what a reader decodes


def test_handles_names_the_stored_types_a_reader_must_decode() -> None:
    engine = ProjectionEngine("handles", InMemoryProjectionStateStore())
    engine.on(OrderEvent)(lambda event: None)
    engine.on(PREFIX + "Legacy")(lambda event: None)
    # A class handler takes its subclasses; a string handler its type, registered or not.
    assert engine.handles(PREFIX + "OrderShipped", OrderShipped)
    assert engine.handles(PREFIX + "Legacy", None)
    assert not engine.handles(PREFIX + "Other", None)
    assert not engine.handles("projection-test.Unrelated", Event)
    catch_all = ProjectionEngine("all", InMemoryProjectionStateStore())
    catch_all.on(Event)(lambda event: None)
    # A handler of every event handles types no class is registered for, too.
    assert catch_all.handles("NoSuchType", None)


def test_an_event_left_undecoded_passes_through_like_any_unhandled_event() -> None:
    # A reader of a serialised log gives the events the projection does not
    # handle as their envelope (a plain Event): the checkpoint moves past them.
    seen: list[str] = []
    engine = ProjectionEngine("envelopes", InMemoryProjectionStateStore())
    engine.on(OrderCreated)(lambda event: seen.append(event.order_id))
    envelope = Event(type="projection-test.Unreadable")
    assert not engine.handles(envelope.type, None)
    batch = [
        StoredEvent(1, "o-1", 1, OrderCreated(order_id="o-1", total_amount=1.0)),
        StoredEvent(2, "x-1", 1, envelope),
        StoredEvent(3, "o-2", 1, OrderCreated(order_id="o-2", total_amount=2.0)),
    ]
    assert asyncio.run(engine.process_events(batch)) == 3
    assert seen == ["o-1", "o-2"] and engine.get_state().last_processed_position == 3
