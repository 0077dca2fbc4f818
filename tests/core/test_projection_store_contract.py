"""The in-memory projection state store passes the contract, sync and async."""

from __future__ import annotations

from orchestrix.core.eventsourcing.projection import InMemoryProjectionStateStore, ProjectionState
from orchestrix.core.eventsourcing.projection_state import (
    AsyncProjectionStateStore,
    ProjectionStateStore,
)
from orchestrix.testing.projection_contract import ProjectionStateStoreContract


class AsyncWrapperStore:
    """An async store over the in-memory one, to prove the contract runs async stores."""

    def __init__(self) -> None:
        self.inner = InMemoryProjectionStateStore()

    async def load_state(self, projection_id: str) -> ProjectionState | None:
        return self.inner.load_state(projection_id)

    async def save_state(self, state: ProjectionState) -> None:
        self.inner.save_state(state)

    async def delete_state(self, projection_id: str) -> None:
        self.inner.delete_state(projection_id)


class TestInMemoryProjectionStateStore(ProjectionStateStoreContract):
    def create_store(self) -> ProjectionStateStore:
        return InMemoryProjectionStateStore()


class TestAsyncProjectionStateStore(ProjectionStateStoreContract):
    def create_store(self) -> AsyncProjectionStateStore:
        return AsyncWrapperStore()


class TestSharedInMemoryProjectionStateStore(ProjectionStateStoreContract):
    """One store for every test: the contract must not rely on an empty store."""

    shared = InMemoryProjectionStateStore()

    def create_store(self) -> ProjectionStateStore:
        return self.shared


def test_the_stores_satisfy_the_protocols() -> None:
    assert isinstance(InMemoryProjectionStateStore(), ProjectionStateStore)
    assert isinstance(AsyncWrapperStore(), AsyncProjectionStateStore)


def test_in_memory_store_lists_projection_ids() -> None:
    store = InMemoryProjectionStateStore()
    store.save_state(ProjectionState(projection_id="b"))
    store.save_state(ProjectionState(projection_id="a"))
    assert store.projection_ids() == ["a", "b"]
