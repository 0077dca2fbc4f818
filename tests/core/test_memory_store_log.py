"""The in-memory stores' global log read from before its start."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.messaging.message import Event
from orchestrix.infrastructure.memory import InMemoryAsyncEventStore, InMemoryEventStore


@dataclass(frozen=True, kw_only=True)
class LogLineWritten(Event):
    """One event of the log (its type is its class name)."""

    line: int


def lines(count: int) -> list[Event]:
    return [LogLineWritten(line=n) for n in range(1, count + 1)]


def positions(records: list[StoredEvent]) -> list[int]:
    return [record.position for record in records]


def test_a_negative_position_reads_the_log_from_its_start() -> None:
    store = InMemoryEventStore()
    store.save("log-a", lines(4))
    store.save("log-b", lines(3))
    for after in (-1, -2, -5, -7, -100):
        assert positions(store.read_all(after_position=after, limit=100)) == list(range(1, 8))
        assert positions(store.read_all(after_position=after, limit=2)) == [1, 2]
        assert store.read_all(after_position=after, limit=3) == store.read_all(0, limit=3)


def test_a_negative_position_reads_the_async_log_from_its_start() -> None:
    async def scenario() -> None:
        store = InMemoryAsyncEventStore()
        await store.save("log-a", lines(6))
        for after in (-1, -3, -6):
            assert positions(await store.read_all(after_position=after, limit=100)) == list(
                range(1, 7)
            )
            assert positions(await store.read_all(after_position=after, limit=2)) == [1, 2]

    asyncio.run(scenario())
