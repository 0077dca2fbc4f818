"""Dead letters on Django models: the core ``DeadLetterQueue`` protocols.

:class:`DjangoDeadLetterQueue` keeps one
:class:`~orchestrix_django.models.DeadLetterRecord` row per letter. The
status rules are the core's (:meth:`DeadLetter.resolve`,
:meth:`DeadLetter.with_failed_attempt`); the store applies them as a
compare-and-set: it reads the letter, lets the core compute the change, and
writes it with an ``UPDATE … WHERE status = <the status it read>`` (and, for
a failed retry, ``AND attempts = <the attempts it read>``). When another
worker changed the letter in between, nothing is written and the rules run
again on what that worker stored, so two operators resolving one letter at
once see exactly what the core's rules say for the second of them, and no
failed attempt is ever lost.

Only the message's payload (CloudEvents JSON, see
:func:`~orchestrix.core.messaging.dead_letter.describe_message`) is stored.
``get`` and ``list`` rebuild the event from it with
:func:`~orchestrix.core.serialization.cloudevents.from_cloudevent` through the
configured event registry (and upcasters), so a retry handles the current
class; when that is impossible (a command, an unknown or undecodable type)
the letter comes back with ``message=None``.

:class:`DjangoAsyncDeadLetterQueue` is the async twin.
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import QuerySet

from orchestrix.core.common.exceptions import UnknownEventTypeError
from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.messaging.dead_letter import (
    DeadLetter,
    DeadLetterNotFoundError,
    DeadLetterStatus,
)
from orchestrix.core.messaging.message import Event, EventRegistry, Message
from orchestrix.core.serialization.cloudevents import from_cloudevent
from orchestrix_django.models import DeadLetterRecord
from orchestrix_django.storage.configured import EventDecoding

__all__ = ["DjangoAsyncDeadLetterQueue", "DjangoDeadLetterQueue"]

logger = logging.getLogger(__name__)

#: How often a change is re-applied when other writers keep changing the letter first.
MAX_CHANGE_ATTEMPTS = 100

_LETTER_FIELDS = tuple(
    f.name for f in dataclasses.fields(DeadLetter) if f.name not in ("message", "status")
)


class DjangoDeadLetterQueue(EventDecoding):
    """A synchronous :class:`~orchestrix.core.messaging.dead_letter.DeadLetterQueue`
    on the Django ORM (see the module docs). Safe to share between threads
    and processes.

    ``using`` is the database alias and ``registry`` / ``upcasters`` what
    parked events are rebuilt with; each defaults to the ``ORCHESTRIX``
    settings, read when the queue is first used.
    """

    def _records(self) -> QuerySet[DeadLetterRecord]:
        return DeadLetterRecord.objects.using(self.using)

    # -- the protocol -------------------------------------------------------------

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
        letter = DeadLetter.from_failure(
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
        self._records().create(
            **{name: getattr(letter, name) for name in _LETTER_FIELDS},
            status=letter.status.value,
        )
        return _detached(letter)

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        """The letter with this id, or None."""
        if "\x00" in dead_letter_id:  # never stored, and PostgreSQL raises on it
            return None
        record = self._records().filter(pk=dead_letter_id).first()
        return None if record is None else self._to_letter(record)

    def list(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """Letters oldest first, filtered by ``source`` and ``status`` (None: any).

        ``limit`` caps the number returned (the oldest ones are kept). Letters
        parked in the same microsecond come in id order.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        if limit == 0:
            return []
        records = self._filtered(source, status).order_by("created_at", "id")
        if limit is not None:
            records = records[:limit]
        return [self._to_letter(record) for record in records]

    def count(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
    ) -> int:
        """How many letters match the filters of :meth:`list`."""
        return self._filtered(source, status).count()

    def mark_retried(self, dead_letter_id: str) -> DeadLetter:
        """The message was handled after all: the letter becomes ``RETRIED``."""
        return self._change(
            dead_letter_id,
            lambda letter: letter.resolve(DeadLetterStatus.RETRIED),
            ("status", "resolved_at"),
        )

    def discard(self, dead_letter_id: str) -> DeadLetter:
        """An operator dropped the message: the letter becomes ``DISCARDED``."""
        return self._change(
            dead_letter_id,
            lambda letter: letter.resolve(DeadLetterStatus.DISCARDED),
            ("status", "resolved_at"),
        )

    def record_failure(self, dead_letter_id: str, error: BaseException) -> DeadLetter:
        """A retry failed: ``attempts + 1`` and ``error`` recorded, the letter stays ``PARKED``."""
        return self._change(
            dead_letter_id,
            lambda letter: letter.with_failed_attempt(error),
            ("attempts", "reason", "error_type", "traceback"),
        )

    # -- internals ----------------------------------------------------------------

    def _filtered(
        self, source: str | None, status: DeadLetterStatus | None
    ) -> QuerySet[DeadLetterRecord]:
        records = self._records()
        if source is not None:
            records = records.filter(source=source)
        if status is not None:
            records = records.filter(status=DeadLetterStatus(status).value)
        return records

    def _change(
        self,
        dead_letter_id: str,
        change: Callable[[DeadLetter], DeadLetter],
        columns: Iterable[str],
    ) -> DeadLetter:
        """Apply the core's ``change`` to the stored letter as a compare-and-set.

        The update only matches the row as it was read (same status, same
        attempts); when another writer got there first, the change is computed
        again from what it stored (the core's rules then decide: a no-op, a
        refusal, or one more attempt on top of the other's).
        """
        for _ in range(MAX_CHANGE_ATTEMPTS):
            letter = self.get(dead_letter_id)
            if letter is None:
                raise DeadLetterNotFoundError(dead_letter_id)
            changed = change(letter)  # raises DeadLetterStateError per the core's rules
            if changed is letter:
                return letter  # already in the wanted state
            values = {name: _column_value(getattr(changed, name)) for name in columns}
            written = (
                self._records()
                .filter(pk=dead_letter_id, status=letter.status.value, attempts=letter.attempts)
                .update(**values)
            )
            if written == 1:
                return changed
        raise RuntimeError(
            f"dead letter {dead_letter_id!r} kept changing under {MAX_CHANGE_ATTEMPTS} attempts "
            "to update it"
        )

    def _to_letter(self, record: DeadLetterRecord) -> DeadLetter:
        values: dict[str, Any] = {name: getattr(record, name) for name in _LETTER_FIELDS}
        values["created_at"] = _aware_utc(record.created_at)
        if record.resolved_at is not None:
            values["resolved_at"] = _aware_utc(record.resolved_at)
        payload = values["payload"] if isinstance(values["payload"], dict) else {}
        values["payload"] = payload
        return DeadLetter(
            **values,
            status=DeadLetterStatus(record.status),
            message=self._rebuild_message(record.id, payload),
        )

    def _rebuild_message(self, dead_letter_id: str, payload: dict[str, Any]) -> Event | None:
        """The event the payload describes, or None when it cannot be rebuilt."""
        if not payload:
            return None
        try:
            event = from_cloudevent(payload, self.codec)
            upcasters = self.upcasters
            if upcasters is not None:
                event = upcasters.upcast_to_latest(event, self.codec.registry)
        except UnknownEventTypeError as error:
            # A command, or an event type this process does not import: the
            # letter is still worth showing (and discarding, or retrying by hand).
            logger.debug("dead letter %s: message not rebuilt: %s", dead_letter_id, error)
            return None
        except Exception as error:
            # A known type that no longer decodes or upcasts: an operator
            # should learn why before discarding a letter "without message".
            logger.warning(
                "dead letter %s: message not rebuilt from its payload (%s: %s)",
                dead_letter_id,
                type(error).__name__,
                error,
            )
            return None
        return event


def _column_value(value: Any) -> Any:
    return value.value if isinstance(value, DeadLetterStatus) else value


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("Orchestrix needs USE_TZ = True (stored timestamps are naive)")
    return moment.astimezone(UTC)


def _detached(letter: DeadLetter) -> DeadLetter:
    """A copy whose payload shares nothing with ``letter``'s."""
    return dataclasses.replace(letter, payload=copy.deepcopy(letter.payload))


class DjangoAsyncDeadLetterQueue:
    """The async twin of :class:`DjangoDeadLetterQueue`
    (:class:`~orchestrix.core.messaging.dead_letter.AsyncDeadLetterQueue`).

    Each call runs the synchronous queue with ``sync_to_async``, so the ORM
    never runs on the event loop.
    """

    def __init__(
        self,
        using: str | None = None,
        *,
        registry: EventRegistry | None = None,
        upcasters: UpcasterRegistry | None = None,
    ) -> None:
        self.sync_store = DjangoDeadLetterQueue(using, registry=registry, upcasters=upcasters)

    @property
    def using(self) -> str:
        """The database alias."""
        return self.sync_store.using

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
        """See :meth:`DjangoDeadLetterQueue.park`."""
        return await sync_to_async(self.sync_store.park)(
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
        """See :meth:`DjangoDeadLetterQueue.get`."""
        return await sync_to_async(self.sync_store.get)(dead_letter_id)

    async def list(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """See :meth:`DjangoDeadLetterQueue.list`."""
        return await sync_to_async(self.sync_store.list)(source, status, limit)

    async def count(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
    ) -> int:
        """See :meth:`DjangoDeadLetterQueue.count`."""
        return await sync_to_async(self.sync_store.count)(source, status)

    async def mark_retried(self, dead_letter_id: str) -> DeadLetter:
        """See :meth:`DjangoDeadLetterQueue.mark_retried`."""
        return await sync_to_async(self.sync_store.mark_retried)(dead_letter_id)

    async def discard(self, dead_letter_id: str) -> DeadLetter:
        """See :meth:`DjangoDeadLetterQueue.discard`."""
        return await sync_to_async(self.sync_store.discard)(dead_letter_id)

    async def record_failure(self, dead_letter_id: str, error: BaseException) -> DeadLetter:
        """See :meth:`DjangoDeadLetterQueue.record_failure`."""
        return await sync_to_async(self.sync_store.record_failure)(dead_letter_id, error)
