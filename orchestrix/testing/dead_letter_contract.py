"""The contract every dead-letter queue passes.

Subclass :class:`DeadLetterQueueContract` in a test module and implement
:meth:`~DeadLetterQueueContract.create_store`::

    class TestInMemoryDeadLetterQueue(DeadLetterQueueContract):
        def create_store(self) -> InMemoryDeadLetterQueue:
            return InMemoryDeadLetterQueue()

Plain methods with plain ``assert`` and no pytest import (the core needs only
the standard library). Sync and async queues both work: the tests call the
queue through a synchronous facade that runs awaitable results with
:func:`asyncio.run`, so they must not run inside an event loop. Every test
parks under its own fresh ``source``, so a queue whose data outlives one test
still passes. A store that persists only the payload must rebuild ``message``
from it (``from_cloudevent``) for events whose class is registered;
:class:`DeadLetterContractEvent` is.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import inspect
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from orchestrix.core.messaging.dead_letter import (
    AnyDeadLetterQueue,
    DeadLetter,
    DeadLetterNotFoundError,
    DeadLetterQueue,
    DeadLetterStateError,
    DeadLetterStatus,
    retry,
    retry_async,
)
from orchestrix.core.messaging.message import Command, Event, Message
from orchestrix.core.serialization.cloudevents import to_cloudevent

__all__ = [
    "DeadLetterContractCommand",
    "DeadLetterContractError",
    "DeadLetterContractEvent",
    "DeadLetterQueueContract",
]


@dataclass(frozen=True, kw_only=True)
class DeadLetterContractEvent(Event):
    """The event the contract parks (prefixed so it never clashes with an application's)."""

    order_id: str
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class DeadLetterContractCommand(Command):
    """A non-event message, parked by a command consumer."""

    order_id: str


_T = TypeVar("_T")


class DeadLetterContractError(Exception):
    """The error the contract's failing handlers raise."""


@contextlib.contextmanager
def _raises(expected: type[BaseException]) -> Iterator[list[BaseException]]:
    """Like ``pytest.raises``: the block must raise ``expected`` (caught into the list)."""
    caught: list[BaseException] = []
    try:
        yield caught
    except expected as error:
        caught.append(error)
    else:
        raise AssertionError(f"{expected.__name__} was not raised")


def _raised(error: Exception) -> Exception:
    """``error`` after a real raise, so it carries a traceback."""
    try:
        raise error
    except Exception as caught:
        return caught


class _SyncQueue:
    """A :class:`DeadLetterQueue` over a sync or async queue (async calls use ``asyncio.run``)."""

    def __init__(self, inner: AnyDeadLetterQueue) -> None:
        self.inner = inner

    def park(
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
        return _resolve(
            self.inner.park(
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
        )

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        return _resolve(self.inner.get(dead_letter_id))

    def list(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        return _resolve(self.inner.list(source=source, status=status, limit=limit))

    def count(
        self, source: str | None = None, status: DeadLetterStatus | None = DeadLetterStatus.PARKED
    ) -> int:
        return _resolve(self.inner.count(source=source, status=status))

    def mark_retried(self, dead_letter_id: str) -> DeadLetter:
        return _resolve(self.inner.mark_retried(dead_letter_id))

    def discard(self, dead_letter_id: str) -> DeadLetter:
        return _resolve(self.inner.discard(dead_letter_id))

    def record_failure(self, dead_letter_id: str, error: BaseException) -> DeadLetter:
        return _resolve(self.inner.record_failure(dead_letter_id, error))


def _resolve(value: Awaitable[_T] | _T) -> _T:
    """The value, or the awaitable's result computed in a fresh event loop."""
    if inspect.isawaitable(value):
        awaitable = value

        async def wait() -> _T:
            return await awaitable

        return asyncio.run(wait())
    return value


class DeadLetterQueueContract:
    """Tests every :class:`DeadLetterQueue` (or :class:`AsyncDeadLetterQueue`) must pass."""

    def create_store(self) -> AnyDeadLetterQueue:
        """Return a queue to test (a new one, or one that may already hold other letters)."""
        raise NotImplementedError("implement create_store() in the test class")

    # -- helpers ----------------------------------------------------------------

    def queue(self) -> _SyncQueue:
        """:meth:`create_store`'s queue behind a synchronous facade (``.inner`` is the queue)."""
        return _SyncQueue(self.create_store())

    def new_source(self) -> str:
        """A source no other test uses."""
        return f"projection:contract-{uuid.uuid4().hex[:12]}"

    def new_event(self, order_id: str = "ORD-1") -> DeadLetterContractEvent:
        """An event to park."""
        return DeadLetterContractEvent(
            order_id=order_id,
            amount=Decimal("12.50"),
            correlation_id=str(uuid.uuid4()),
            subject="orders",
        )

    def park(
        self, queue: DeadLetterQueue, source: str, order_id: str = "ORD-1", attempts: int = 1
    ) -> DeadLetter:
        """Park a new event under ``source``."""
        error = _raised(DeadLetterContractError(f"cannot project {order_id}"))
        return queue.park(self.new_event(order_id), error, source=source, attempts=attempts)

    # -- parking ----------------------------------------------------------------

    def test_park_records_every_field(self) -> None:
        queue = self.queue()
        source = self.new_source()
        event = self.new_event()
        error = _raised(DeadLetterContractError("amount must be positive ✓"))
        before = datetime.now(UTC)
        letter = queue.park(
            event,
            error,
            source=source,
            attempts=3,
            position=2**40 + 1,
            stream_id="order-ORD-1",
            version=7,
            handler="app.projections.on_order_created",
        )
        after = datetime.now(UTC)
        for candidate in (letter, queue.get(letter.id)):
            assert isinstance(candidate, DeadLetter)
            assert str(uuid.UUID(candidate.id)) == candidate.id
            assert candidate.source == source
            assert candidate.message == event
            assert candidate.message_type == "DeadLetterContractEvent"
            assert candidate.message_id == event.id
            assert candidate.payload == to_cloudevent(event)
            assert candidate.reason == "amount must be positive ✓"
            assert candidate.error_type == f"{__name__}.DeadLetterContractError"
            assert "Traceback" in candidate.traceback
            assert "DeadLetterContractError: amount must be positive" in candidate.traceback
            assert candidate.handler == "app.projections.on_order_created"
            assert candidate.attempts == 3
            assert candidate.position == 2**40 + 1
            assert candidate.stream_id == "order-ORD-1"
            assert candidate.version == 7
            assert candidate.created_at.utcoffset() == timedelta(0)
            assert (
                before - timedelta(seconds=1)
                <= candidate.created_at
                <= after + timedelta(seconds=1)
            )
            assert candidate.status is DeadLetterStatus.PARKED
            assert candidate.resolved_at is None
        assert queue.get(letter.id) == letter

    def test_park_defaults(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())
        stored = queue.get(letter.id)
        assert stored is not None
        assert stored.attempts == 1
        assert stored.position is None
        assert stored.stream_id is None
        assert stored.version is None
        assert stored.handler is None

    def test_park_without_message(self) -> None:
        queue = self.queue()
        source = self.new_source()
        error = _raised(ValueError("undecodable"))
        letter = queue.park(None, error, source=source, message_type="OrderShipped", position=5)
        stored = queue.get(letter.id)
        assert stored is not None
        assert stored.message is None
        assert stored.message_id is None
        assert stored.message_type == "OrderShipped"
        assert stored.payload == {}
        assert stored.error_type == "ValueError"
        assert stored.position == 5

    def test_park_a_command(self) -> None:
        queue = self.queue()
        command = DeadLetterContractCommand(order_id="ORD-9")
        letter = queue.park(command, _raised(RuntimeError("no")), source=self.new_source())
        stored = queue.get(letter.id)
        assert stored is not None
        assert stored.message_type == "DeadLetterContractCommand"
        assert stored.message_id == command.id
        assert stored.payload["id"] == command.id
        assert stored.payload["type"] == "DeadLetterContractCommand"
        assert stored.payload["data"]["order_id"] == "ORD-9"

    def test_letters_get_distinct_ids(self) -> None:
        queue = self.queue()
        source = self.new_source()
        ids = {self.park(queue, source).id for _ in range(5)}
        assert len(ids) == 5

    def test_get_missing_returns_none(self) -> None:
        queue = self.queue()
        assert queue.get(str(uuid.uuid4())) is None
        # Ids come from URLs too; no stored id holds a NUL (PostgreSQL cannot even compare one).
        assert queue.get(str(uuid.uuid4()) + "\x00") is None

    def test_payload_is_not_aliased(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())
        fetched = queue.get(letter.id)
        assert fetched is not None
        fetched.payload["data"]["order_id"] = "tampered"
        letter.payload["id"] = "tampered"
        again = queue.get(letter.id)
        assert again is not None
        assert again.payload["data"]["order_id"] == "ORD-1"
        assert again.payload["id"] == again.message_id

    # -- listing and counting ------------------------------------------------------

    def test_list_is_oldest_first(self) -> None:
        queue = self.queue()
        source = self.new_source()
        parked = [self.park(queue, source, order_id=f"ORD-{n}") for n in range(4)]
        listed = queue.list(source=source)
        assert [letter.id for letter in listed] == [letter.id for letter in parked]
        assert [letter.message_id for letter in listed] == [letter.message_id for letter in parked]

    def test_list_filters_by_source(self) -> None:
        queue = self.queue()
        mine, other = self.new_source(), self.new_source()
        first = self.park(queue, mine)
        self.park(queue, other)
        second = self.park(queue, mine)
        assert [letter.id for letter in queue.list(source=mine)] == [first.id, second.id]
        assert len(queue.list(source=other)) == 1
        everything = {letter.id for letter in queue.list()}
        assert {first.id, second.id} <= everything

    def test_list_filters_by_status(self) -> None:
        queue = self.queue()
        source = self.new_source()
        parked, retried, discarded = (self.park(queue, source) for _ in range(3))
        queue.mark_retried(retried.id)
        queue.discard(discarded.id)
        assert [letter.id for letter in queue.list(source=source)] == [parked.id]
        assert [
            letter.id for letter in queue.list(source=source, status=DeadLetterStatus.RETRIED)
        ] == [retried.id]
        assert [
            letter.id for letter in queue.list(source=source, status=DeadLetterStatus.DISCARDED)
        ] == [discarded.id]
        assert [letter.id for letter in queue.list(source=source, status=None)] == [
            parked.id,
            retried.id,
            discarded.id,
        ]

    def test_list_limit_keeps_the_oldest(self) -> None:
        queue = self.queue()
        source = self.new_source()
        parked = [self.park(queue, source) for _ in range(5)]
        assert [letter.id for letter in queue.list(source=source, limit=2)] == [
            parked[0].id,
            parked[1].id,
        ]
        assert queue.list(source=source, limit=0) == []
        assert len(queue.list(source=source, limit=50)) == 5

    def test_count(self) -> None:
        queue = self.queue()
        source, other = self.new_source(), self.new_source()
        assert queue.count(source=source) == 0
        letters = [self.park(queue, source) for _ in range(3)]
        self.park(queue, other)
        queue.discard(letters[0].id)
        assert queue.count(source=source) == 2
        assert queue.count(source=source, status=DeadLetterStatus.DISCARDED) == 1
        assert queue.count(source=source, status=DeadLetterStatus.RETRIED) == 0
        assert queue.count(source=source, status=None) == 3
        assert queue.count(source=other) == 1
        assert queue.count() >= 3

    # -- resolving -----------------------------------------------------------------

    def test_mark_retried(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())
        resolved = queue.mark_retried(letter.id)
        stored = queue.get(letter.id)
        for candidate in (resolved, stored):
            assert candidate is not None
            assert candidate.status is DeadLetterStatus.RETRIED
            assert candidate.resolved_at is not None
            assert candidate.resolved_at.utcoffset() == timedelta(0)
            assert candidate.resolved_at >= letter.created_at
            assert candidate.message == letter.message
            assert candidate.attempts == letter.attempts

    def test_discard(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())
        resolved = queue.discard(letter.id)
        stored = queue.get(letter.id)
        for candidate in (resolved, stored):
            assert candidate is not None
            assert candidate.status is DeadLetterStatus.DISCARDED
            assert candidate.resolved_at is not None

    def test_resolving_twice_the_same_way_is_a_no_op(self) -> None:
        queue = self.queue()
        retried = self.park(queue, self.new_source())
        first = queue.mark_retried(retried.id)
        assert queue.mark_retried(retried.id) == first
        discarded = self.park(queue, self.new_source())
        first = queue.discard(discarded.id)
        assert queue.discard(discarded.id) == first

    def test_resolving_the_other_way_is_refused(self) -> None:
        queue = self.queue()
        retried = self.park(queue, self.new_source())
        queue.mark_retried(retried.id)
        with _raises(DeadLetterStateError):
            queue.discard(retried.id)
        discarded = self.park(queue, self.new_source())
        queue.discard(discarded.id)
        with _raises(DeadLetterStateError):
            queue.mark_retried(discarded.id)
        stored = queue.get(discarded.id)
        assert stored is not None
        assert stored.status is DeadLetterStatus.DISCARDED

    def test_unknown_ids_raise(self) -> None:
        queue = self.queue()
        missing = str(uuid.uuid4())
        with _raises(DeadLetterNotFoundError):
            queue.mark_retried(missing)
        with _raises(DeadLetterNotFoundError):
            queue.discard(missing)
        with _raises(DeadLetterNotFoundError):
            queue.record_failure(missing, ValueError("x"))

    def test_record_failure(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source(), attempts=2)
        updated = queue.record_failure(letter.id, _raised(KeyError("sku")))
        stored = queue.get(letter.id)
        for candidate in (updated, stored):
            assert candidate is not None
            assert candidate.status is DeadLetterStatus.PARKED
            assert candidate.attempts == 3
            assert candidate.error_type == "KeyError"
            assert candidate.reason == "'sku'"
            assert "KeyError" in candidate.traceback
            assert candidate.created_at == letter.created_at
            assert candidate.resolved_at is None

    def test_record_failure_of_a_resolved_letter_is_refused(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())
        queue.discard(letter.id)
        with _raises(DeadLetterStateError):
            queue.record_failure(letter.id, ValueError("late"))

    # -- the retry helpers ---------------------------------------------------------

    def test_retry_helper_success_marks_retried(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())
        received: list[Message] = []

        def handler(message: Message) -> str:
            received.append(message)
            return "done"

        assert retry(queue, letter.id, handler) == "done"
        assert received == [letter.message]
        stored = queue.get(letter.id)
        assert stored is not None
        assert stored.status is DeadLetterStatus.RETRIED
        assert stored.attempts == letter.attempts

    def test_retry_helper_failure_keeps_it_parked(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())

        def handler(message: Message) -> None:
            raise DeadLetterContractError("still broken")

        with _raises(DeadLetterContractError) as caught:
            retry(queue, letter.id, handler)
        assert str(caught[0]) == "still broken"
        stored = queue.get(letter.id)
        assert stored is not None
        assert stored.status is DeadLetterStatus.PARKED
        assert stored.attempts == letter.attempts + 1
        assert stored.reason == "still broken"
        assert queue.count(source=letter.source) == 1

    def test_retry_helper_refuses_a_resolved_letter(self) -> None:
        queue = self.queue()
        letter = self.park(queue, self.new_source())
        queue.mark_retried(letter.id)
        calls: list[Message] = []
        with _raises(DeadLetterStateError):
            retry(queue, letter.id, calls.append)
        with _raises(DeadLetterNotFoundError):
            retry(queue, str(uuid.uuid4()), calls.append)
        assert calls == []

    def test_retry_helper_refuses_a_letter_without_message(self) -> None:
        queue = self.queue()
        letter = queue.park(
            None, ValueError("undecodable"), source=self.new_source(), message_type="X"
        )
        calls: list[Message] = []
        with _raises(DeadLetterStateError):
            retry(queue, letter.id, calls.append)
        assert calls == []

    def test_retry_async_helper(self) -> None:
        queue = self.queue()
        source = self.new_source()
        good = self.park(queue, source)
        bad = self.park(queue, source)
        received: list[Message] = []

        async def handler(message: Message) -> int:
            await asyncio.sleep(0)
            if message.id == bad.message_id:
                raise DeadLetterContractError("async failure")
            received.append(message)
            return 7

        # The queue itself (sync or async), not the facade: retry_async runs in a loop.
        assert asyncio.run(retry_async(queue.inner, good.id, handler)) == 7
        with _raises(DeadLetterContractError):
            asyncio.run(retry_async(queue.inner, bad.id, handler))
        assert received == [good.message]
        stored_good, stored_bad = queue.get(good.id), queue.get(bad.id)
        assert stored_good is not None
        assert stored_bad is not None
        assert stored_good.status is DeadLetterStatus.RETRIED
        assert stored_bad.status is DeadLetterStatus.PARKED
        assert stored_bad.attempts == 2
