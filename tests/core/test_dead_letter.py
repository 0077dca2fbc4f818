"""Dead letters: the record, its status rules, message descriptions and the retry helpers."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix.core.messaging.dead_letter import (
    DeadLetter,
    DeadLetterNotFoundError,
    DeadLetterQueue,
    DeadLetterStateError,
    DeadLetterStatus,
    describe_error_type,
    describe_message,
    retry,
    retry_async,
)
from orchestrix.core.messaging.message import Command, Event, Message
from orchestrix.core.serialization.cloudevents import from_cloudevent, to_cloudevent
from orchestrix.infrastructure.memory.dead_letter import InMemoryDeadLetterQueue


@dataclass(frozen=True, kw_only=True)
class DLPaymentFailed(Event):
    payment_id: str
    amount: float


@dataclass(frozen=True, kw_only=True)
class DLOddEvent(Event):
    """An event the codec cannot encode (a lock in an untyped field)."""

    thing: object


@dataclass(frozen=True, kw_only=True)
class DLRefund(Command):
    payment_id: str


class PaymentDeclined(Exception):
    pass


def raised(error: Exception) -> Exception:
    try:
        raise error
    except Exception as caught:
        return caught


def make_letter(**overrides: Any) -> DeadLetter:
    event = DLPaymentFailed(payment_id="P-1", amount=3.5)
    letter = DeadLetter.from_failure(
        event, raised(PaymentDeclined("card expired")), source="projection:payments"
    )
    return replace(letter, **overrides) if overrides else letter


# ---------------------------------------------------------------- the record


def test_from_failure_describes_message_and_error() -> None:
    event = DLPaymentFailed(payment_id="P-1", amount=3.5)
    letter = DeadLetter.from_failure(
        event,
        raised(PaymentDeclined("card expired")),
        source="projection:payments",
        attempts=4,
        position=12,
        stream_id="payment-P-1",
        version=2,
        handler="mod.on_payment_failed",
    )
    assert letter.message is event
    assert letter.message_type == "DLPaymentFailed"
    assert letter.message_id == event.id
    assert letter.payload == to_cloudevent(event)
    assert from_cloudevent(letter.payload) == event  # the payload can be re-imported
    assert letter.reason == "card expired"
    assert letter.error_type == f"{__name__}.PaymentDeclined"
    assert "raise error" in letter.traceback
    assert (letter.attempts, letter.position, letter.stream_id, letter.version) == (
        4,
        12,
        "payment-P-1",
        2,
    )
    assert letter.handler == "mod.on_payment_failed"
    assert letter.status is DeadLetterStatus.PARKED
    assert letter.is_parked
    assert letter.created_at.tzinfo is UTC
    assert letter.resolved_at is None


def test_error_without_text_uses_its_class_name_and_unraised_errors_work() -> None:
    letter = DeadLetter.from_failure(None, KeyboardInterrupt(), source="s", message_type="T")
    assert letter.reason == "KeyboardInterrupt"
    assert letter.error_type == "KeyboardInterrupt"
    assert "KeyboardInterrupt" in letter.traceback
    assert letter.message_type == "T"
    assert DeadLetter.from_failure(None, ValueError("x"), source="s").message_type == "unknown"


def test_status_strings_are_accepted_and_times_normalised() -> None:
    plus_one = timezone(timedelta(hours=1))
    letter = make_letter(
        status="retried",
        created_at=datetime(2025, 1, 1, 13, 0, tzinfo=plus_one),
        resolved_at=datetime(2025, 1, 1, 14, 0, tzinfo=plus_one),
    )
    assert letter.status is DeadLetterStatus.RETRIED
    assert letter.created_at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert letter.created_at.utcoffset() == timedelta(0)
    assert letter.resolved_at is not None
    assert letter.resolved_at.utcoffset() == timedelta(0)
    assert DeadLetterStatus("parked") is DeadLetterStatus.PARKED
    assert str(DeadLetterStatus.DISCARDED) == "discarded"  # stores persist the plain value


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"source": ""}, ValueError),
        ({"attempts": -1}, ValueError),
        ({"attempts": True}, TypeError),
        ({"created_at": datetime(2025, 1, 1)}, ValueError),  # naive on purpose
        ({"resolved_at": "yesterday"}, TypeError),
        ({"status": "lost"}, ValueError),
    ],
)
def test_invalid_letters_are_refused(overrides: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        make_letter(**overrides)


def test_letters_are_hashable_and_comparable() -> None:
    letter = make_letter()
    assert letter == replace(letter)
    assert hash(letter) == hash(replace(letter))


def test_resolve_rules() -> None:
    letter = make_letter()
    at = datetime(2030, 1, 1, tzinfo=UTC)
    retried = letter.resolve(DeadLetterStatus.RETRIED, at)
    assert (retried.status, retried.resolved_at) == (DeadLetterStatus.RETRIED, at)
    assert retried.resolve(DeadLetterStatus.RETRIED) is retried
    with pytest.raises(DeadLetterStateError, match="retried: it cannot become discarded"):
        retried.resolve(DeadLetterStatus.DISCARDED)
    with pytest.raises(ValueError, match="out of PARKED"):
        letter.resolve(DeadLetterStatus.PARKED)
    with pytest.raises(DeadLetterStateError):
        retried.with_failed_attempt(ValueError("x"))
    failed = letter.with_failed_attempt(raised(ValueError("again")))
    assert (failed.attempts, failed.reason, failed.error_type) == (2, "again", "ValueError")
    assert failed.id == letter.id


def test_errors_are_orchestrix_errors() -> None:
    assert issubclass(DeadLetterNotFoundError, OrchestrixError)
    assert issubclass(DeadLetterNotFoundError, LookupError)
    assert issubclass(DeadLetterStateError, OrchestrixError)
    assert "no dead letter with id 'x'" in str(DeadLetterNotFoundError("x"))


# ---------------------------------------------------------------- descriptions


def test_describe_message() -> None:
    assert describe_message(None) == {}
    event = DLPaymentFailed(payment_id="P", amount=1.0, correlation_id="c-1")
    assert describe_message(event) == to_cloudevent(event)


def test_describe_message_falls_back_for_unencodable_events() -> None:
    lock = threading.Lock()
    event = DLOddEvent(thing=lock, subject="s", data={"k": 1})
    payload = describe_message(event)
    assert payload["id"] == event.id
    assert payload["type"] == "DLOddEvent"
    assert payload["subject"] == "s"
    assert payload["data"]["thing"] == repr(lock)
    assert payload["data"]["data"] == {"k": 1}


def test_describe_message_of_a_command() -> None:
    command = DLRefund(payment_id="P-2", causation_id="cause")
    payload = describe_message(command)
    assert payload["type"] == "DLRefund"
    assert payload["causationid"] == "cause"
    assert payload["data"] == {"payment_id": "P-2"}
    assert payload["time"] == command.timestamp.isoformat()


def test_describe_error_type() -> None:
    assert describe_error_type(ValueError()) == "ValueError"
    assert describe_error_type(PaymentDeclined()) == f"{__name__}.PaymentDeclined"


# ---------------------------------------------------------------- helpers


def test_sync_retry_refuses_coroutine_handlers_without_counting_an_attempt() -> None:
    queue = InMemoryDeadLetterQueue()
    letter = queue.park(DLPaymentFailed(payment_id="P", amount=1.0), ValueError("x"), source="s")

    async def handler(message: Message) -> None:
        return None

    with pytest.raises(TypeError, match="retry_async"):
        retry(queue, letter.id, handler)
    stored = queue.get(letter.id)
    assert stored is not None
    assert (stored.status, stored.attempts) == (DeadLetterStatus.PARKED, 1)


def test_retry_async_accepts_sync_handlers() -> None:
    queue = InMemoryDeadLetterQueue()
    letter = queue.park(DLPaymentFailed(payment_id="P", amount=1.0), ValueError("x"), source="s")
    result = asyncio.run(retry_async(queue, letter.id, lambda message: message.id))
    assert result == letter.message_id
    assert queue.count(source="s", status=DeadLetterStatus.RETRIED) == 1


# ---------------------------------------------------------------- the in-memory queue


def test_in_memory_queue_is_thread_safe() -> None:
    queue = InMemoryDeadLetterQueue()
    errors: list[BaseException] = []

    def park_many() -> None:
        try:
            for n in range(200):
                queue.park(DLPaymentFailed(payment_id=str(n), amount=1.0), ValueError(), source="s")
        except BaseException as error:  # pragma: no cover - only on failure
            errors.append(error)

    threads = [threading.Thread(target=park_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert queue.count(source="s") == 1600

    target = queue.list(source="s", limit=1)[0]
    results: list[DeadLetter] = []
    barrier = threading.Barrier(8)

    def resolve() -> None:
        barrier.wait()
        results.append(queue.mark_retried(target.id))

    threads = [threading.Thread(target=resolve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({letter.resolved_at for letter in results}) == 1  # resolved exactly once


def test_in_memory_queue_rejects_negative_limit_and_can_be_cleared() -> None:
    queue = InMemoryDeadLetterQueue()
    queue.park(None, ValueError(), source="s", message_type="T")
    with pytest.raises(ValueError, match="limit"):
        queue.list(limit=-1)
    queue.clear()
    assert queue.count(status=None) == 0
    assert isinstance(queue, DeadLetterQueue)
