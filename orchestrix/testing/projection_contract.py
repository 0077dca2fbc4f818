"""The contract every projection state store passes.

Subclass :class:`ProjectionStateStoreContract` in a test module and implement
:meth:`~ProjectionStateStoreContract.create_store`::

    class TestInMemoryProjectionStateStore(ProjectionStateStoreContract):
        def create_store(self) -> InMemoryProjectionStateStore:
            return InMemoryProjectionStateStore()

The tests are plain methods with plain ``assert`` (no pytest import: the core
needs only the standard library), so they run under pytest, and under
``unittest`` when mixed into a ``TestCase``. Synchronous and asynchronous
stores both work: awaitable results are run with :func:`asyncio.run`, so the
tests must not run inside an event loop. Every test uses fresh projection
ids, so a store whose data outlives one test still passes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import ProjectionEngine, ProjectionState
from orchestrix.core.eventsourcing.projection_state import (
    AsyncProjectionStateStore,
    ProjectionStateStore,
)
from orchestrix.core.messaging.message import Event

__all__ = ["ProjectionContractItemAdded", "ProjectionStateStoreContract"]

_T = TypeVar("_T")


@dataclass(frozen=True, kw_only=True)
class ProjectionContractItemAdded(Event):
    """The event the engine round-trip test projects (prefixed to never clash)."""

    item: str
    quantity: int = 1


def _resolve(value: Awaitable[_T] | _T) -> _T:
    """The value, or the awaitable's result computed in a fresh event loop."""
    if inspect.isawaitable(value):
        awaitable = value

        async def wait() -> Any:
            return await awaitable

        result: _T = asyncio.run(wait())
        return result
    return value


class ProjectionStateStoreContract:
    """Tests every :class:`ProjectionStateStore` (or async twin) must pass."""

    def create_store(self) -> ProjectionStateStore | AsyncProjectionStateStore:
        """Return a store to test (a new one, or one that may already hold other data)."""
        raise NotImplementedError("implement create_store() in the test class")

    # -- helpers: run sync or async store methods alike ------------------------

    def new_projection_id(self) -> str:
        """A projection id no other test uses."""
        return f"contract-{uuid.uuid4().hex[:12]}"

    def load(
        self, store: ProjectionStateStore | AsyncProjectionStateStore, projection_id: str
    ) -> ProjectionState | None:
        """``store.load_state(projection_id)``, awaited if needed."""
        result: ProjectionState | None = _resolve(store.load_state(projection_id))
        return result

    def save(
        self, store: ProjectionStateStore | AsyncProjectionStateStore, state: ProjectionState
    ) -> None:
        """``store.save_state(state)``, awaited if needed."""
        _resolve(store.save_state(state))

    def delete(
        self, store: ProjectionStateStore | AsyncProjectionStateStore, projection_id: str
    ) -> None:
        """``store.delete_state(projection_id)``, awaited if needed."""
        _resolve(store.delete_state(projection_id))

    def full_state(self, projection_id: str) -> ProjectionState:
        """A state whose every field differs from its default."""
        return ProjectionState(
            projection_id=projection_id,
            last_processed_event_id=str(uuid.uuid4()),
            last_processed_position=2**40 + 7,
            updated_at=datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=UTC),
            error_count=3,
            is_healthy=False,
            last_error="handlers.on_item failed: KeyError: 'sku' — ünïcödé ✓\nsecond line",
            events_processed=12345,
        )

    # -- tests ----------------------------------------------------------------

    def test_load_missing_returns_none(self) -> None:
        store = self.create_store()
        assert self.load(store, self.new_projection_id()) is None
        # Ids come from URLs too; no stored id holds a NUL (PostgreSQL cannot even compare one).
        assert self.load(store, self.new_projection_id() + "\x00") is None

    def test_round_trip_of_every_field(self) -> None:
        store = self.create_store()
        state = self.full_state(self.new_projection_id())
        self.save(store, state)
        loaded = self.load(store, state.projection_id)
        assert isinstance(loaded, ProjectionState)
        for state_field in dataclasses.fields(ProjectionState):
            name = state_field.name
            assert getattr(loaded, name) == getattr(state, name), name
        assert loaded == state
        assert loaded.updated_at.utcoffset() == timedelta(0)
        assert type(loaded.last_processed_position) is int
        assert type(loaded.is_healthy) is bool

    def test_round_trip_of_defaults(self) -> None:
        store = self.create_store()
        state = ProjectionState(projection_id=self.new_projection_id())
        self.save(store, state)
        loaded = self.load(store, state.projection_id)
        assert loaded == state
        assert loaded is not None
        assert loaded.last_processed_event_id is None
        assert loaded.last_error is None
        assert loaded.is_healthy is True

    def test_updated_at_comes_back_as_utc(self) -> None:
        store = self.create_store()
        plus_two = timezone(timedelta(hours=2))
        state = ProjectionState(
            projection_id=self.new_projection_id(),
            updated_at=datetime(2025, 6, 1, 12, 0, 0, 500, tzinfo=plus_two),
        )
        self.save(store, state)
        loaded = self.load(store, state.projection_id)
        assert loaded is not None
        assert loaded.updated_at == datetime(2025, 6, 1, 10, 0, 0, 500, tzinfo=UTC)
        assert loaded.updated_at.utcoffset() == timedelta(0)

    def test_long_error_text_round_trips(self) -> None:
        store = self.create_store()
        error = "Traceback (most recent call last):\n" + "x" * 20_000
        state = ProjectionState(projection_id=self.new_projection_id(), last_error=error)
        self.save(store, state)
        loaded = self.load(store, state.projection_id)
        assert loaded is not None
        assert loaded.last_error == error

    def test_save_overwrites(self) -> None:
        store = self.create_store()
        projection_id = self.new_projection_id()
        self.save(store, ProjectionState(projection_id=projection_id))
        newer = self.full_state(projection_id)
        self.save(store, newer)
        assert self.load(store, projection_id) == newer
        healthy_again = dataclasses.replace(newer, is_healthy=True, last_error=None)
        self.save(store, healthy_again)
        assert self.load(store, projection_id) == healthy_again

    def test_states_are_kept_per_projection(self) -> None:
        store = self.create_store()
        first = self.full_state(self.new_projection_id())
        second = ProjectionState(projection_id=self.new_projection_id(), last_processed_position=9)
        self.save(store, first)
        self.save(store, second)
        assert self.load(store, first.projection_id) == first
        assert self.load(store, second.projection_id) == second

    def test_delete_state(self) -> None:
        store = self.create_store()
        kept = ProjectionState(projection_id=self.new_projection_id(), last_processed_position=4)
        dropped = ProjectionState(projection_id=self.new_projection_id(), last_processed_position=5)
        self.save(store, kept)
        self.save(store, dropped)
        self.delete(store, dropped.projection_id)
        assert self.load(store, dropped.projection_id) is None
        assert self.load(store, kept.projection_id) == kept

    def test_delete_missing_is_a_no_op(self) -> None:
        store = self.create_store()
        self.delete(store, self.new_projection_id())

    def test_save_after_delete_starts_over(self) -> None:
        store = self.create_store()
        state = self.full_state(self.new_projection_id())
        self.save(store, state)
        self.delete(store, state.projection_id)
        fresh = ProjectionState(projection_id=state.projection_id)
        self.save(store, fresh)
        assert self.load(store, state.projection_id) == fresh

    def test_loaded_state_is_not_aliased(self) -> None:
        store = self.create_store()
        state = self.full_state(self.new_projection_id())
        self.save(store, state)
        first = self.load(store, state.projection_id)
        self.save(store, dataclasses.replace(state, last_processed_position=1, error_count=0))
        assert first == state  # what was loaded earlier did not change with the store
        second = self.load(store, state.projection_id)
        assert second is not None
        assert second.last_processed_position == 1
        assert state.last_processed_position == 2**40 + 7  # the saved object is untouched

    def test_engine_resumes_from_the_saved_checkpoint(self) -> None:
        store = self.create_store()
        projection_id = self.new_projection_id()
        events = [
            StoredEvent(
                position=10 * n,
                stream_id="contract-cart",
                version=n,
                event=ProjectionContractItemAdded(item=f"item-{n}", quantity=n),
            )
            for n in range(1, 5)
        ]
        seen: list[str] = []

        def build() -> ProjectionEngine:
            engine = ProjectionEngine(projection_id, store)

            @engine.on(ProjectionContractItemAdded)
            def on_item(event: ProjectionContractItemAdded) -> None:
                seen.append(event.item)

            return engine

        asyncio.run(build().process_events(events[:2]))
        saved = self.load(store, projection_id)
        assert saved is not None
        assert saved.last_processed_position == 20
        assert saved.last_processed_event_id == events[1].event.id
        assert saved.events_processed == 2

        asyncio.run(build().process_events(events))  # a new engine, the whole log again
        assert seen == ["item-1", "item-2", "item-3", "item-4"]
        resumed = self.load(store, projection_id)
        assert resumed is not None
        assert resumed.last_processed_position == 40
        assert resumed.events_processed == 4
