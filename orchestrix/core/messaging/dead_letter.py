"""Dead letters: messages whose handling failed for good, parked for a human.

When a handler keeps failing on a message (after its retry policy gave up),
blocking everything behind it is not always acceptable. A consumer configured
to *park* failures records the message here as a :class:`DeadLetter` and moves
on; an operator later inspects it and either retries it (:func:`retry` /
:func:`retry_async`) or discards it.

Life cycle of a dead letter (``status``)::

    PARKED ──mark_retried()──▶ RETRIED      (the message was handled after all)
       │
       └──────discard()──────▶ DISCARDED    (an operator decided to drop it)

A failed retry keeps it ``PARKED`` and records the new error and attempt
(:meth:`DeadLetterQueue.record_failure`). Resolving a letter twice the same
way is a no-op; resolving it the *other* way (discarding a retried letter, or
retrying a discarded one) raises :class:`DeadLetterStateError`, because the
message's effects would then no longer match what the record says.

:class:`DeadLetterQueue` is the storage protocol (:class:`AsyncDeadLetterQueue`
its twin for event-loop code); the in-memory reference
implementation is
:class:`orchestrix.infrastructure.memory.dead_letter.InMemoryDeadLetterQueue`
and every implementation passes
:class:`orchestrix.testing.dead_letter_contract.DeadLetterQueueContract`.
The transition rules live here (:meth:`DeadLetter.resolve`,
:meth:`DeadLetter.with_failed_attempt`) so that every store applies the same.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import inspect
import json
import traceback as traceback_module
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from orchestrix.core.common.clock import utc_now
from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix.core.messaging.message import CLOUDEVENT_FIELDS, Event, Message
from orchestrix.core.serialization.cloudevents import to_cloudevent
from orchestrix.core.serialization.values import encode_value

__all__ = [
    "AnyDeadLetterQueue",
    "AsyncDeadLetterQueue",
    "DeadLetter",
    "DeadLetterError",
    "DeadLetterNotFoundError",
    "DeadLetterQueue",
    "DeadLetterStateError",
    "DeadLetterStatus",
    "describe_error_type",
    "describe_message",
    "retry",
    "retry_async",
]

_T = TypeVar("_T")


def _new_id() -> str:
    return str(uuid.uuid4())


class DeadLetterStatus(enum.StrEnum):
    """Where a dead letter is in its life cycle (the values are what stores persist)."""

    PARKED = "parked"
    RETRIED = "retried"
    DISCARDED = "discarded"


class DeadLetterError(OrchestrixError):
    """Base class of the dead-letter errors."""


class DeadLetterNotFoundError(DeadLetterError, LookupError):
    """No dead letter has this id."""

    def __init__(self, dead_letter_id: str) -> None:
        self.dead_letter_id = dead_letter_id
        super().__init__(f"no dead letter with id {dead_letter_id!r}")


class DeadLetterStateError(DeadLetterError):
    """The operation is not allowed in the dead letter's current status."""

    def __init__(self, dead_letter_id: str, status: DeadLetterStatus, detail: str) -> None:
        self.dead_letter_id = dead_letter_id
        self.status = status
        super().__init__(f"dead letter {dead_letter_id!r} is {status.value}: {detail}")


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A message whose handling failed for good, with everything needed to judge it.

    ``payload`` is a JSON-safe description of the message (CloudEvents JSON for
    events, see :func:`describe_message`), so it can be shown and stored even
    where the message class is not importable; ``message`` is the message
    object itself when it is available (a store that persists only the payload
    rebuilds it with ``from_cloudevent`` when it can, else gives ``None``).

    ``position``, ``stream_id`` and ``version`` locate the event in the store
    when it came from the global log. ``handler`` names the handler that
    failed, when known (for display: a retry re-delivers the whole message).
    ``attempts`` counts every failed call, the original ones included.
    """

    id: str = field(default_factory=_new_id)
    source: str
    message: Message | None = field(default=None, hash=False)
    message_type: str
    message_id: str | None = None
    payload: dict[str, Any] = field(default_factory=dict, hash=False)
    reason: str
    error_type: str
    traceback: str = ""
    handler: str | None = None
    attempts: int = 1
    position: int | None = None
    stream_id: str | None = None
    version: int | None = None
    created_at: datetime = field(default_factory=utc_now)
    status: DeadLetterStatus = DeadLetterStatus.PARKED
    resolved_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("a dead letter needs a source (e.g. 'projection:order-summary')")
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(f"attempts must be an int, got {self.attempts!r}")
        if self.attempts < 0:
            raise ValueError(f"attempts must be >= 0, got {self.attempts}")
        # Stores hand back plain strings from their columns; accept them.
        status: object = self.status
        if not isinstance(status, DeadLetterStatus):
            object.__setattr__(self, "status", DeadLetterStatus(str(status)))
        object.__setattr__(self, "created_at", _as_utc(self.created_at, "created_at"))
        if self.resolved_at is not None:
            object.__setattr__(self, "resolved_at", _as_utc(self.resolved_at, "resolved_at"))

    @classmethod
    def from_failure(
        cls,
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
        """Build a new ``PARKED`` dead letter for ``message`` that failed with ``error``.

        ``message_type`` is only needed when ``message`` is None (the failed
        input could not even be decoded, say); it defaults to the message's
        ``type``.
        """
        if message_type is None:
            message_type = message.type if message is not None else "unknown"
        return cls(
            source=source,
            message=message,
            message_type=message_type,
            message_id=message.id if message is not None else None,
            payload=describe_message(message),
            reason=str(error) or type(error).__name__,
            error_type=describe_error_type(error),
            traceback=_format_traceback(error),
            handler=handler,
            attempts=attempts,
            position=position,
            stream_id=stream_id,
            version=version,
        )

    @property
    def is_parked(self) -> bool:
        """Whether the letter still waits for a decision."""
        return self.status is DeadLetterStatus.PARKED

    def resolve(self, status: DeadLetterStatus, at: datetime | None = None) -> DeadLetter:
        """The letter moved to ``status`` (``RETRIED`` or ``DISCARDED``).

        Returns ``self`` unchanged when it already has that status (resolving
        twice the same way is harmless, e.g. a double-clicked admin action);
        raises :class:`DeadLetterStateError` when it was resolved the other way.
        """
        status = DeadLetterStatus(status)
        if status is DeadLetterStatus.PARKED:
            raise ValueError("resolve() moves a letter out of PARKED; use RETRIED or DISCARDED")
        if self.status is status:
            return self
        if self.status is not DeadLetterStatus.PARKED:
            raise DeadLetterStateError(self.id, self.status, f"it cannot become {status.value}")
        return dataclasses.replace(self, status=status, resolved_at=at or utc_now())

    def with_failed_attempt(self, error: BaseException) -> DeadLetter:
        """The letter after one more failed retry: ``attempts + 1``, the new error recorded."""
        if self.status is not DeadLetterStatus.PARKED:
            raise DeadLetterStateError(self.id, self.status, "only a parked letter is retried")
        return dataclasses.replace(
            self,
            attempts=self.attempts + 1,
            reason=str(error) or type(error).__name__,
            error_type=describe_error_type(error),
            traceback=_format_traceback(error),
        )


def _as_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value}")
    return value.astimezone(UTC) if value.utcoffset() else value


def _format_traceback(error: BaseException) -> str:
    return "".join(traceback_module.format_exception(error))


def describe_error_type(error: BaseException) -> str:
    """The error's class as ``module.QualName`` (just the name for builtins)."""
    cls = type(error)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def describe_message(message: Message | None) -> dict[str, Any]:
    """A JSON-safe description of ``message`` (``{}`` for None).

    Events are described in CloudEvents JSON (:func:`to_cloudevent`), so the
    payload can be re-imported; other messages, and events the codec cannot
    encode (the very reason they failed, perhaps), get a best-effort
    CloudEvents-like dict where unencodable values are shown by ``repr``.
    Describing a message never raises: it runs while handling a failure.
    """
    if message is None:
        return {}
    if isinstance(message, Event):
        try:
            return to_cloudevent(message)
        except Exception:
            pass  # fall through to the best-effort description
    return _best_effort_description(message)


def _best_effort_description(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "specversion": message.specversion,
        "id": message.id,
        "source": message.source,
        "type": message.type,
        "time": message.timestamp.isoformat(),
    }
    for attribute, name in (
        ("subject", "subject"),
        ("correlationid", "correlation_id"),
        ("causationid", "causation_id"),
        ("traceid", "trace_id"),
    ):
        value = getattr(message, name)
        if value is not None:
            out[attribute] = _json_safe(value)
    data: dict[str, Any] = {}
    for message_field in dataclasses.fields(message):
        if message_field.name in CLOUDEVENT_FIELDS and message_field.name != "data":
            continue
        value = getattr(message, message_field.name)
        if message_field.name == "data" and value is None:
            continue
        data[message_field.name] = _json_safe(value)
    out["data"] = data
    return out


def _json_safe(value: Any) -> Any:
    try:
        encoded = encode_value(value)
        json.dumps(encoded, allow_nan=True)
    except Exception:
        return repr(value)  # anything the codec can't encode is shown as text
    return encoded


@runtime_checkable
class DeadLetterQueue(Protocol):
    """Stores dead letters. Methods are synchronous; implementations are thread-safe.

    Unknown ids raise :class:`DeadLetterNotFoundError` (``get`` returns None
    instead); status rules are those of :meth:`DeadLetter.resolve`.
    """

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
        """Record ``message`` as failed with ``error`` and return the new ``PARKED`` letter.

        The arguments are those of :meth:`DeadLetter.from_failure`.
        """
        ...

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        """The letter with this id, or None."""
        ...

    def list(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """Letters oldest first, filtered by ``source`` and ``status`` (None: any).

        ``limit`` caps the number returned (the oldest ones are kept).
        """
        ...

    def count(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
    ) -> int:
        """How many letters match the filters of :meth:`list`."""
        ...

    def mark_retried(self, dead_letter_id: str) -> DeadLetter:
        """The message was handled after all: the letter becomes ``RETRIED``."""
        ...

    def discard(self, dead_letter_id: str) -> DeadLetter:
        """An operator dropped the message: the letter becomes ``DISCARDED``."""
        ...

    def record_failure(self, dead_letter_id: str, error: BaseException) -> DeadLetter:
        """A retry failed: ``attempts + 1`` and ``error`` recorded, the letter stays ``PARKED``."""
        ...


@runtime_checkable
class AsyncDeadLetterQueue(Protocol):
    """The asynchronous twin of :class:`DeadLetterQueue`: the same methods, awaited.

    Consumers running in an event loop (the projection engine) accept either;
    a Django queue offers this one so that its ORM calls run off the loop.
    """

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
        """See :meth:`DeadLetterQueue.park`."""
        ...

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """See :meth:`DeadLetterQueue.get`."""
        ...

    async def list(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """See :meth:`DeadLetterQueue.list`."""
        ...

    async def count(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
    ) -> int:
        """See :meth:`DeadLetterQueue.count`."""
        ...

    async def mark_retried(self, dead_letter_id: str) -> DeadLetter:
        """See :meth:`DeadLetterQueue.mark_retried`."""
        ...

    async def discard(self, dead_letter_id: str) -> DeadLetter:
        """See :meth:`DeadLetterQueue.discard`."""
        ...

    async def record_failure(self, dead_letter_id: str, error: BaseException) -> DeadLetter:
        """See :meth:`DeadLetterQueue.record_failure`."""
        ...


AnyDeadLetterQueue = DeadLetterQueue | AsyncDeadLetterQueue


async def _settle(value: Awaitable[_T] | _T) -> _T:
    """``value``, awaited first if it is awaitable (for sync-or-async store results)."""
    if inspect.isawaitable(value):
        return cast(_T, await value)
    return value


def _check_retryable(dead_letter_id: str, letter: DeadLetter | None) -> Message:
    if letter is None:
        raise DeadLetterNotFoundError(dead_letter_id)
    if not letter.is_parked:
        # Re-running a retried message would apply it twice.
        raise DeadLetterStateError(letter.id, letter.status, "only a parked letter is retried")
    if letter.message is None:
        raise DeadLetterStateError(
            letter.id, letter.status, "its message is not available (only its payload); discard it"
        )
    return letter.message


def retry(queue: DeadLetterQueue, dead_letter_id: str, handler: Callable[[Message], Any]) -> Any:
    """Call ``handler`` with the parked message; mark the letter retried if it succeeds.

    Returns the handler's result. If the handler raises, the error is recorded
    on the letter (:meth:`DeadLetterQueue.record_failure`: ``attempts + 1``,
    still ``PARKED``) and re-raised unchanged. Raises
    :class:`DeadLetterNotFoundError` for an unknown id and
    :class:`DeadLetterStateError` when the letter is not parked or has no
    message object; the handler is not called then. For coroutine handlers use
    :func:`retry_async`.

    Two callers retrying the same letter at the same moment may both run the
    handler: serialise retries of one letter (an admin action, a row lock).
    """
    message = _check_retryable(dead_letter_id, queue.get(dead_letter_id))
    try:
        result = handler(message)
    except Exception as error:
        queue.record_failure(dead_letter_id, error)
        raise
    if inspect.isawaitable(result):
        # A coroutine that is never awaited did nothing: refuse loudly (a misuse,
        # not a failed attempt) instead of marking the letter retried.
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError("the handler returned an awaitable; use retry_async()")
    queue.mark_retried(dead_letter_id)
    return result


async def retry_async(
    queue: AnyDeadLetterQueue, dead_letter_id: str, handler: Callable[[Message], Any]
) -> Any:
    """:func:`retry` for coroutine handlers and async queues (results are awaited)."""
    letter: DeadLetter | None = await _settle(queue.get(dead_letter_id))
    message = _check_retryable(dead_letter_id, letter)
    try:
        result = handler(message)
        if inspect.isawaitable(result):
            result = await result
    except Exception as error:
        await _settle(queue.record_failure(dead_letter_id, error))
        raise
    await _settle(queue.mark_retried(dead_letter_id))
    return result
