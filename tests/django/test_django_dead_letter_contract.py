"""The Django dead-letter queues: the core contract, message rebuilding, status races."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from orchestrix.core.messaging.dead_letter import (
    AsyncDeadLetterQueue,
    DeadLetter,
    DeadLetterQueue,
    DeadLetterStateError,
    DeadLetterStatus,
)
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix.testing.dead_letter_contract import (
    DeadLetterContractEvent,
    DeadLetterQueueContract,
)
from orchestrix_django.models import DeadLetterRecord
from orchestrix_django.storage.dead_letters import DjangoAsyncDeadLetterQueue, DjangoDeadLetterQueue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def close_async_connections() -> Iterator[None]:
    """Close the connection of the thread ``sync_to_async`` ran the ORM in."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


class TestDjangoDeadLetterQueue(DeadLetterQueueContract):
    def create_store(self) -> DjangoDeadLetterQueue:
        return DjangoDeadLetterQueue()

    def test_retry_async_helper(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # retry_async() calls this sync queue inside its event loop, which
        # Django refuses by default (SynchronousOnlyOperation): async code uses
        # DjangoAsyncDeadLetterQueue (tested below). Here the sync queue's own
        # behaviour is what is under test.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        super().test_retry_async_helper()


@pytest.mark.usefixtures("close_async_connections")
class TestDjangoAsyncDeadLetterQueue(DeadLetterQueueContract):
    def create_store(self) -> DjangoAsyncDeadLetterQueue:
        return DjangoAsyncDeadLetterQueue()


def test_the_queues_satisfy_the_protocols() -> None:
    assert isinstance(DjangoDeadLetterQueue(), DeadLetterQueue)
    assert isinstance(DjangoAsyncDeadLetterQueue(), AsyncDeadLetterQueue)


def failure(text: str = "boom") -> Exception:
    try:
        raise RuntimeError(text)
    except RuntimeError as error:
        return error


def event() -> DeadLetterContractEvent:
    return DeadLetterContractEvent(order_id="ORD-1", amount=Decimal("1.50"))


# -- rebuilding the message ----------------------------------------------------------


def test_an_event_whose_type_is_unknown_comes_back_without_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = DjangoDeadLetterQueue(registry=EventRegistry())  # knows no event class
    letter = queue.park(event(), failure(), source="s")
    with caplog.at_level(logging.WARNING, logger="orchestrix_django.storage.dead_letters"):
        stored = queue.get(letter.id)
    assert caplog.records == []  # expected for commands and foreign types: no warning
    assert stored is not None
    assert stored.message is None
    assert stored.payload == letter.payload  # still shown, and still retryable by hand
    assert stored.message_type == "DeadLetterContractEvent"


def test_an_undecodable_payload_comes_back_without_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = DjangoDeadLetterQueue()
    letter = queue.park(event(), failure(), source="s")
    DeadLetterRecord.objects.filter(pk=letter.id).update(payload={"type": "X", "garbage": True})
    with caplog.at_level(logging.WARNING, logger="orchestrix_django.storage.dead_letters"):
        (listed,) = queue.list(source="s")
    assert listed.id == letter.id
    assert listed.message is None
    assert letter.id in caplog.text  # an operator learns why before discarding it


def test_a_parked_event_is_upcast_when_rebuilt() -> None:
    class Upcasters:
        """Stands in for an UpcasterRegistry: the one method the queue calls."""

        def upcast_to_latest(self, stored: Event, registry: Any = None) -> Event:
            assert isinstance(stored, DeadLetterContractEvent)
            return dataclasses.replace(stored, order_id=f"{stored.order_id}-upcast")

    queue = DjangoDeadLetterQueue(upcasters=Upcasters())  # type: ignore[arg-type]
    letter = queue.park(event(), failure(), source="s")
    stored = queue.get(letter.id)
    assert stored is not None
    assert letter.message is not None
    assert stored.message == dataclasses.replace(letter.message, order_id="ORD-1-upcast")


# -- status races ----------------------------------------------------------------------


class InterleavingQueue(DjangoDeadLetterQueue):
    """Lets ``meanwhile`` run after this queue read a letter and before it writes."""

    def __init__(self, meanwhile: Callable[[], object]) -> None:
        super().__init__()
        self.meanwhile: Callable[[], object] | None = meanwhile

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        letter = super().get(dead_letter_id)
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return letter


def test_a_resolution_that_lost_the_race_follows_the_core_rules() -> None:
    other = DjangoDeadLetterQueue()
    letter = other.park(event(), failure(), source="s")
    discarded: list[DeadLetter] = []
    late = InterleavingQueue(lambda: discarded.append(other.discard(letter.id)))
    # It read PARKED, but the letter was discarded before its write: retrying
    # a discarded letter is refused, and the discard stands.
    with pytest.raises(DeadLetterStateError, match="discarded"):
        late.mark_retried(letter.id)
    stored = other.get(letter.id)
    assert stored == discarded[0]
    assert stored is not None
    assert stored.status is DeadLetterStatus.DISCARDED


def test_a_resolution_the_same_way_as_the_winner_returns_the_winners_letter() -> None:
    other = DjangoDeadLetterQueue()
    letter = other.park(event(), failure(), source="s")
    winner: list[DeadLetter] = []
    late = InterleavingQueue(lambda: winner.append(other.mark_retried(letter.id)))
    assert late.mark_retried(letter.id) == winner[0]  # a no-op, with the winner's resolved_at
    assert other.get(letter.id) == winner[0]


def test_failed_attempts_recorded_meanwhile_are_not_lost() -> None:
    other = DjangoDeadLetterQueue()
    letter = other.park(event(), failure(), source="s", attempts=1)
    late = InterleavingQueue(lambda: other.record_failure(letter.id, failure("first")))
    updated = late.record_failure(letter.id, failure("second"))
    assert updated.attempts == 3
    assert updated.reason == "second"
    assert other.get(letter.id) == updated


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` in threads released together; each outcome is a value or the error."""
    outcomes: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        try:
            outcomes[index] = calls[index]()
        except BaseException as error:
            outcomes[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_two_concurrent_retries_both_see_one_resolution() -> None:
    queue = DjangoDeadLetterQueue()
    for _ in range(10):
        letter = queue.park(event(), failure(), source=f"race-{uuid.uuid4().hex[:6]}")
        retry = functools.partial(queue.mark_retried, letter.id)
        outcomes = race(retry, retry)
        assert all(isinstance(o, DeadLetter) for o in outcomes), outcomes
        stored = queue.get(letter.id)
        assert stored is not None
        assert stored.status is DeadLetterStatus.RETRIED
        # One write happened; the other call saw it (resolving twice is a no-op).
        assert outcomes[0].resolved_at == outcomes[1].resolved_at == stored.resolved_at


def test_a_retry_racing_a_discard_has_exactly_one_winner() -> None:
    queue = DjangoDeadLetterQueue()
    for _ in range(10):
        letter = queue.park(event(), failure(), source=f"race-{uuid.uuid4().hex[:6]}")
        retried, discarded = race(
            functools.partial(queue.mark_retried, letter.id),
            functools.partial(queue.discard, letter.id),
        )
        outcomes = [retried, discarded]
        winners = [o for o in outcomes if isinstance(o, DeadLetter)]
        losers = [o for o in outcomes if isinstance(o, DeadLetterStateError)]
        assert (len(winners), len(losers)) == (1, 1), outcomes
        assert queue.get(letter.id) == winners[0]


def test_concurrent_failed_retries_are_all_counted() -> None:
    queue = DjangoDeadLetterQueue()
    letter = queue.park(event(), failure(), source="s", attempts=1)
    writers = 4
    outcomes = race(
        *(lambda n=n: queue.record_failure(letter.id, failure(f"try {n}")) for n in range(writers))
    )
    assert all(isinstance(o, DeadLetter) for o in outcomes), outcomes
    stored = queue.get(letter.id)
    assert stored is not None
    assert stored.attempts == 1 + writers
    assert sorted(o.attempts for o in outcomes) == list(range(2, 2 + writers))
