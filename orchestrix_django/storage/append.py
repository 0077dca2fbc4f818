"""What every dialect's append shares: the save on its way in, retry detection, the signal.

The write paths themselves, one per dialect, are in
:mod:`orchestrix_django.storage.postgresql` and
:mod:`orchestrix_django.storage.mysql_sqlite`; the guarantees they give are
described in ``docs/django.md`` ("The event store").
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

from django.db import transaction

from orchestrix.core.common.exceptions import ConcurrencyError, DuplicateEventError
from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.messaging.message import Event
from orchestrix.core.serialization.event_codec import EncodedEvent
from orchestrix_django.models import EventRecord
from orchestrix_django.signals import events_committed
from orchestrix_django.storage.rows import stream_version

__all__ = ["Append", "mismatched", "placed", "refused"]

logger = logging.getLogger("orchestrix.store")


@dataclass(frozen=True)
class Append:
    """One save on its way into the event table, encoded and checked."""

    aggregate_id: str
    events: Sequence[Event]
    encoded: list[EncodedEvent]
    expected_version: int | None
    aggregate_type: str | None
    using: str
    #: Rows per INSERT statement.
    batch_size: int
    #: The store's class: the sender of ``events_committed``.
    sender: type
    hooks: ObservabilityHooks

    @cached_property
    def ids(self) -> list[str]:
        """The events' ids."""
        return [item.event_id for item in self.encoded]


def placed(append: Append, places: Iterable[tuple[int, int]]) -> list[StoredEvent]:
    """The events at their (position, version), announced once the transaction commits."""
    stored = [
        StoredEvent(position, append.aggregate_id, version, event)
        for (position, version), event in zip(places, append.events, strict=True)
    ]
    transaction.on_commit(lambda: _announce(append, stored), using=append.using)
    return stored


def mismatched(append: Append, current: int) -> list[StoredEvent]:
    """The stream is not at the expected version: a retried save stores nothing, else it fails."""
    if _already_stored(append):
        return []  # a retried save: everything is stored already
    expected = append.expected_version
    raise ConcurrencyError(
        append.aggregate_id, expected if expected is not None else current, current
    )


def refused(append: Append) -> list[StoredEvent]:
    """After a unique violation: a retried save (stored already) or a lost race."""
    # The events' ids are stored already (a retried save: the common
    # case, found here rather than by a query on every save), or a
    # writer that bypasses the append lock (another tool, a REPEATABLE
    # READ snapshot taken before the lock) took these versions.
    if _already_stored(append):
        return []
    current = stream_version(append.using, append.aggregate_id)
    expected = append.expected_version
    raise ConcurrencyError(
        append.aggregate_id,
        expected if expected is not None else current,
        current,
        "another writer appended first",
    ) from None


def _announce(append: Append, stored: list[StoredEvent]) -> None:
    """Send ``events_committed``; a failing receiver must not fail the committed save.

    Its error is logged and counted (receivers that deliver further, like
    the message bus, park their own failures as dead letters).
    """
    aggregate_id = append.aggregate_id
    responses = events_committed.send_robust(
        sender=append.sender, stream_id=aggregate_id, events=stored, using=append.using
    )
    for receiver, response in responses:
        if isinstance(response, Exception):
            name = getattr(receiver, "__qualname__", repr(receiver))
            logger.error(
                "events_committed receiver %s failed for stream %s",
                name,
                aggregate_id,
                exc_info=response,
            )
            append.hooks.record_handler_error(
                "events_committed", name, f"{type(response).__name__}: {response}"
            )


def _already_stored(append: Append) -> bool:
    """Whether these events are stored already, as this very save (a retry).

    Raises :class:`DuplicateEventError` when only some of them are, or
    they are stored in another stream or at other versions.
    """
    ids, aggregate_id = append.ids, append.aggregate_id
    known = list(
        EventRecord.objects.using(append.using)
        .filter(event_id__in=ids)
        .order_by()  # no need to sort: the rows are looked up by id
        .values_list("event_id", "stream_id", "version")
    )
    if not known:
        return False
    by_id = {event_id: (stream, version) for event_id, stream, version in known}
    if len(by_id) == len(ids) and all(by_id[i][0] == aggregate_id for i in ids):
        first = by_id[ids[0]][1]
        if [by_id[i][1] for i in ids] == list(range(first, first + len(ids))):
            return True
    raise DuplicateEventError(
        aggregate_id, sorted(by_id), "they are stored elsewhere or only part of this save is"
    )
