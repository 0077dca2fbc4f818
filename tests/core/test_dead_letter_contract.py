"""The in-memory dead-letter queue passes the contract, directly and behind an async facade."""

from __future__ import annotations

import asyncio
import builtins

from orchestrix.core.messaging.dead_letter import (
    AnyDeadLetterQueue,
    AsyncDeadLetterQueue,
    DeadLetter,
    DeadLetterQueue,
    DeadLetterStatus,
)
from orchestrix.core.messaging.message import Message
from orchestrix.infrastructure.memory.dead_letter import InMemoryDeadLetterQueue
from orchestrix.testing.dead_letter_contract import DeadLetterQueueContract


class AsyncWrapperQueue:
    """An async queue over the in-memory one, to prove async queues are supported."""

    def __init__(self) -> None:
        self.inner = InMemoryDeadLetterQueue()

    async def park(
        self,
        message: Message | None,
        error: BaseException,
        *,
        source: str,
        attempts: int = 1,
        position: int | None = None,
        stream_id: str | None = None,
        version: int | None = None,
        handler: str | None = None,
        message_type: str | None = None,
    ) -> DeadLetter:
        await asyncio.sleep(0)
        return self.inner.park(
            message,
            error,
            source=source,
            attempts=attempts,
            position=position,
            stream_id=stream_id,
            version=version,
            handler=handler,
            message_type=message_type,
        )

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        return self.inner.get(dead_letter_id)

    async def list(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        return self.inner.list(source, status, limit)

    async def count(
        self, source: str | None = None, status: DeadLetterStatus | None = DeadLetterStatus.PARKED
    ) -> int:
        return self.inner.count(source, status)

    async def mark_retried(self, dead_letter_id: str) -> DeadLetter:
        return self.inner.mark_retried(dead_letter_id)

    async def discard(self, dead_letter_id: str) -> DeadLetter:
        return self.inner.discard(dead_letter_id)

    async def record_failure(self, dead_letter_id: str, error: BaseException) -> DeadLetter:
        return self.inner.record_failure(dead_letter_id, error)


class TestInMemoryDeadLetterQueue(DeadLetterQueueContract):
    def create_store(self) -> AnyDeadLetterQueue:
        return InMemoryDeadLetterQueue()


class TestSharedInMemoryDeadLetterQueue(DeadLetterQueueContract):
    """One queue for every test: the contract must not rely on an empty queue."""

    shared = InMemoryDeadLetterQueue()

    def create_store(self) -> AnyDeadLetterQueue:
        return self.shared


class TestAsyncDeadLetterQueue(DeadLetterQueueContract):
    def create_store(self) -> AnyDeadLetterQueue:
        return AsyncWrapperQueue()


def test_the_queues_satisfy_the_protocols() -> None:
    assert isinstance(InMemoryDeadLetterQueue(), DeadLetterQueue)
    assert isinstance(AsyncWrapperQueue(), AsyncDeadLetterQueue)
