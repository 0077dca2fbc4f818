"""The core event store contract, run against the Django stores on the test database."""

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from orchestrix.testing.event_store_contract import (
    AsyncEventStoreContract,
    EventStoreContract,
    GlobalEventLogContract,
)
from orchestrix_django.storage.async_events import DjangoAsyncEventStore
from orchestrix_django.storage.events import DjangoEventStore

pytestmark = pytest.mark.django_db(transaction=True)


def closing_connections(call: Callable[[], None]) -> Callable[[], None]:
    """Run ``call`` in a thread, then close that thread's database connections."""

    def run() -> None:
        try:
            call()
        finally:
            connections.close_all()

    return run


class TestDjangoEventStore(EventStoreContract, GlobalEventLogContract):
    def create_store(self) -> DjangoEventStore:
        return DjangoEventStore()

    def race(self, store: Any, calls: Sequence[Callable[[], None]]) -> list[BaseException | None]:
        return super().race(store, [closing_connections(call) for call in calls])


class TestDjangoAsyncEventStore(AsyncEventStoreContract, GlobalEventLogContract):
    def create_async_store(self) -> DjangoAsyncEventStore:
        return DjangoAsyncEventStore()

    def run_coroutine(self, coroutine: Any) -> Any:
        async def run_then_close() -> Any:
            try:
                return await coroutine
            finally:
                # The thread sync_to_async runs the ORM in keeps its connection.
                await sync_to_async(connections.close_all)()

        return asyncio.run(run_then_close())
