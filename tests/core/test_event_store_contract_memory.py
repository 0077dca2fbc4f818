"""The event store contract, run against the in-memory stores."""

from orchestrix.infrastructure.memory import InMemoryAsyncEventStore, InMemoryEventStore
from orchestrix.testing.event_store_contract import (
    AsyncEventStoreContract,
    EventStoreContract,
    GlobalEventLogContract,
)


class TestInMemoryEventStore(EventStoreContract, GlobalEventLogContract):
    def create_store(self) -> InMemoryEventStore:
        return InMemoryEventStore()


class TestInMemoryAsyncEventStore(AsyncEventStoreContract, GlobalEventLogContract):
    def create_async_store(self) -> InMemoryAsyncEventStore:
        return InMemoryAsyncEventStore()
