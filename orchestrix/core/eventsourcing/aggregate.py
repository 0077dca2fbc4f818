"""Aggregates and the repository that loads and saves them through an event store.

An aggregate changes only by applying events: ``_apply_event`` routes the
event to ``_when_<snake_case_type>`` and records it as uncommitted; the
repository appends the uncommitted events with optimistic locking (expected
version = version before the new events) and rebuilds aggregates from their
events, starting from the latest snapshot when there is one.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar, cast

from orchestrix.core.common.exceptions import (
    AggregateNotFoundError,
    EncodeError,
    MissingEventHandlerError,
)
from orchestrix.core.common.observability import ObservabilityHooks, get_observability
from orchestrix.core.eventsourcing.event_store import AsyncEventStore, EventStore
from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.messaging.message import Event
from orchestrix.core.serialization.json_data import DecodeFailure
from orchestrix.core.serialization.values import dataclass_codec

__all__ = ["AggregateRepository", "AggregateRoot", "snake_case"]

logger = logging.getLogger("orchestrix.aggregate")

_BOUNDARY_1 = re.compile(r"(.)([A-Z][a-z]+)")
_BOUNDARY_2 = re.compile(r"([a-z0-9])([A-Z])")
_NOT_WORD = re.compile(r"\W+")
_UNDERSCORES = re.compile(r"__+")
_snake_cache: dict[str, str] = {}

#: The key under which a snapshot records the aggregate's ``snapshot_version``.
SNAPSHOT_VERSION_KEY = "__snapshot_version__"
_BASE_FIELDS = frozenset({"aggregate_id", "version", "uncommitted_events"})


def snake_case(name: str) -> str:
    """``AccountOpened`` -> ``account_opened``; ``HTTPRequestSent`` -> ``http_request_sent``."""
    cached = _snake_cache.get(name)
    if cached is None:
        text = _BOUNDARY_1.sub(r"\1_\2", name)
        text = _BOUNDARY_2.sub(r"\1_\2", text)
        cached = _NOT_WORD.sub("_", text)
        cached = _UNDERSCORES.sub("_", cached).strip("_").lower()
        _snake_cache[name] = cached
    return cached


@dataclass
class AggregateRoot:
    """Base class of event-sourced aggregates.

    Subclasses are dataclasses whose fields are the aggregate's state, and
    define one ``_when_<snake_case_type>(self, event)`` method per event type
    they apply. Applying an event without such a method is an error that names
    the method to write, unless the event's type (or class) is listed in
    ``ignored_events``.

    ``snapshot_version``: raise it when the meaning of the state changes, so
    that older snapshots are ignored (the stream is replayed instead).
    """

    aggregate_id: str = ""
    version: int = 0
    uncommitted_events: list[Event] = field(
        default_factory=list, init=False, repr=False, compare=False
    )

    ignored_events: ClassVar[tuple[str | type[Event], ...]] = ()
    snapshot_version: ClassVar[int] = 1

    def _apply_event(self, event: Event) -> None:
        """Apply a new event: change state, record it as uncommitted, bump the version."""
        self._when(event)
        self.version += 1
        self.uncommitted_events.append(event)

    def _when(self, event: Event) -> None:
        """Route ``event`` to ``_when_<snake_case_type>``."""
        method_name = "_when_" + snake_case(event.type)
        method: Callable[[Event], None] | None = getattr(self, method_name, None)
        if method is not None:
            method(event)
            return
        if self._ignores(event):
            return
        raise MissingEventHandlerError(type(self).__name__, event.type, method_name)

    def _ignores(self, event: Event) -> bool:
        for ignored in self.ignored_events:
            if isinstance(ignored, str):
                if ignored == event.type:
                    return True
            elif isinstance(event, ignored):
                return True
        return False

    def mark_events_committed(self) -> None:
        """Forget the uncommitted events once they are stored."""
        self.uncommitted_events.clear()

    def _replay_events(self, events: Iterable[Event]) -> None:
        """Rebuild state from stored events (they are not recorded as uncommitted)."""
        for event in events:
            self._when(event)
            self.version += 1

    # -- snapshots ----------------------------------------------------------

    @classmethod
    def snapshot_type(cls) -> str:
        """The ``aggregate_type`` recorded in this class's snapshots."""
        return cls.__qualname__

    def snapshot_state(self) -> dict[str, Any]:
        """The aggregate's state as JSON-compatible data (its dataclass fields).

        Override together with :meth:`restore_snapshot` for state that is not
        made of dataclass fields.
        """
        encoded = dataclass_codec(type(self)).encode(self)
        state = {k: v for k, v in encoded.items() if k not in _BASE_FIELDS}
        state[SNAPSHOT_VERSION_KEY] = self.snapshot_version
        return state

    def restore_snapshot(self, state: dict[str, Any]) -> None:
        """Set the state saved by :meth:`snapshot_state`.

        Raises ``ValueError`` when the snapshot doesn't fit the class (another
        ``snapshot_version``, a field missing): the repository then replays
        the stream instead. A missing field is never filled with its default,
        since the default need not be what the events made of it.
        """
        if state.get(SNAPSHOT_VERSION_KEY) != self.snapshot_version:
            raise ValueError(
                f"snapshot version {state.get(SNAPSHOT_VERSION_KEY)!r} is not "
                f"{type(self).__name__}.snapshot_version {self.snapshot_version}"
            )
        plan = dataclass_codec(type(self))
        wanted = [name for name in plan.decoders if name not in _BASE_FIELDS]
        missing = [name for name in wanted if name not in state]
        if missing:
            raise ValueError(f"snapshot lacks field(s) {', '.join(missing)}")
        try:
            values = plan.decode_fields(state, _BASE_FIELDS)
        except DecodeFailure as failure:
            raise ValueError(f"snapshot does not decode: {failure}") from None
        for name, value in values.items():
            setattr(self, name, value)

    def to_snapshot(self) -> Snapshot:
        """A snapshot of the aggregate at its current version."""
        if self.uncommitted_events:
            raise ValueError("save the aggregate before taking a snapshot of it")
        return Snapshot(
            aggregate_id=self.aggregate_id,
            aggregate_type=self.snapshot_type(),
            version=self.version,
            state=self.snapshot_state(),
        )


T = TypeVar("T", bound=AggregateRoot)


@dataclass
class AggregateRepository(Generic[T]):
    """Loads and saves aggregates of any type through one event store.

    ``snapshot_every``: when set, :meth:`save` also stores a snapshot each time
    an aggregate's version crosses a multiple of it (the store must support
    snapshots). Loading always uses the latest snapshot when one exists.
    """

    event_store: EventStore | AsyncEventStore
    snapshot_every: int | None = field(default=None, kw_only=True)
    observability: ObservabilityHooks | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be >= 1, got {self.snapshot_every}")

    @property
    def _hooks(self) -> ObservabilityHooks:
        return self.observability or get_observability()

    @property
    def _is_async(self) -> bool:
        return inspect.iscoroutinefunction(getattr(self.event_store, "load", None))

    # -- sync ---------------------------------------------------------------

    def load(self, aggregate_type: type[T], aggregate_id: str) -> T:
        """Rebuild ``aggregate_id``; raise AggregateNotFoundError if it has no events."""
        if self._is_async:
            raise TypeError(
                f"{type(self.event_store).__name__} is asynchronous: "
                "use `await repo.load_async(...)`"
            )
        store = cast(EventStore, self.event_store)
        snapshot = None
        load_snapshot = getattr(store, "load_snapshot", None)
        if load_snapshot is not None:
            snapshot = load_snapshot(aggregate_id)
        aggregate, from_version = self._start(aggregate_type, aggregate_id, snapshot)
        events = store.load(aggregate_id, from_version=from_version)
        return self._finish(aggregate, events, aggregate_type, aggregate_id)

    def save(self, aggregate: T) -> None:
        """Append the aggregate's uncommitted events with optimistic locking."""
        if self._is_async:
            raise TypeError(
                f"{type(self.event_store).__name__} is asynchronous: "
                "use `await repo.save_async(...)`"
            )
        events, expected = self._pending(aggregate)
        if not events:
            return
        store = cast(EventStore, self.event_store)
        store.save(
            aggregate.aggregate_id,
            events,
            expected_version=expected,
            **_type_label(store, aggregate),
        )
        aggregate.mark_events_committed()
        if self._snapshot_due(expected, aggregate.version):
            save_snapshot = getattr(store, "save_snapshot", None)
            if save_snapshot is None:
                raise TypeError(f"{type(store).__name__} does not store snapshots")
            snapshot = self._snapshot_of(aggregate)
            if snapshot is not None:
                save_snapshot(snapshot)

    # -- async --------------------------------------------------------------

    async def load_async(self, aggregate_type: type[T], aggregate_id: str) -> T:
        """The async twin of :meth:`load` (works with sync stores too)."""
        store: Any = self.event_store
        snapshot = None
        loader = getattr(store, "load_snapshot_async", None) or getattr(
            store, "load_snapshot", None
        )
        if loader is not None:
            snapshot = await _maybe_await(loader(aggregate_id))
        aggregate, from_version = self._start(aggregate_type, aggregate_id, snapshot)
        events = await _maybe_await(store.load(aggregate_id, from_version=from_version))
        return self._finish(aggregate, events, aggregate_type, aggregate_id)

    async def save_async(self, aggregate: T) -> None:
        """The async twin of :meth:`save` (works with sync stores too)."""
        events, expected = self._pending(aggregate)
        if not events:
            return
        store: Any = self.event_store
        await _maybe_await(
            store.save(
                aggregate.aggregate_id,
                events,
                expected_version=expected,
                **_type_label(store, aggregate),
            )
        )
        aggregate.mark_events_committed()
        if self._snapshot_due(expected, aggregate.version):
            saver = getattr(store, "save_snapshot_async", None) or getattr(
                store, "save_snapshot", None
            )
            if saver is None:
                raise TypeError(f"{type(store).__name__} does not store snapshots")
            snapshot = self._snapshot_of(aggregate)
            if snapshot is not None:
                await _maybe_await(saver(snapshot))

    # -- shared -------------------------------------------------------------

    def _start(
        self, aggregate_type: type[T], aggregate_id: str, snapshot: Snapshot | None
    ) -> tuple[T, int]:
        if not aggregate_id:
            raise ValueError("aggregate_id must be a non-empty string")
        aggregate = aggregate_type(aggregate_id=aggregate_id)
        if snapshot is None:
            return aggregate, 0
        if snapshot.aggregate_type != aggregate_type.snapshot_type():
            self._hooks.record_aggregate_error(
                aggregate_id,
                f"snapshot is of {snapshot.aggregate_type}, not {aggregate_type.snapshot_type()}; "
                "replaying the stream",
            )
            return aggregate, 0
        try:
            aggregate.restore_snapshot(dict(snapshot.state))
        except (ValueError, TypeError) as error:
            self._hooks.record_aggregate_error(
                aggregate_id,
                f"snapshot at version {snapshot.version} unusable ({error}); replaying",
            )
            return aggregate_type(aggregate_id=aggregate_id), 0
        aggregate.version = snapshot.version
        return aggregate, snapshot.version

    def _finish(
        self, aggregate: T, events: list[Event], aggregate_type: type[T], aggregate_id: str
    ) -> T:
        if not events and aggregate.version == 0:
            raise AggregateNotFoundError(aggregate_type.__name__, aggregate_id)
        hooks = self._hooks
        try:
            aggregate._replay_events(events)
        except Exception as error:
            hooks.record_aggregate_error(aggregate_id, f"{type(error).__name__}: {error}")
            raise
        for event in events:
            hooks.record_event_replayed(aggregate_id, event.type)
        return aggregate

    @staticmethod
    def _pending(aggregate: AggregateRoot) -> tuple[list[Event], int]:
        if not aggregate.aggregate_id:
            raise ValueError(
                f"{type(aggregate).__name__} has no aggregate_id; set it before saving"
            )
        events = list(aggregate.uncommitted_events)
        return events, aggregate.version - len(events)

    def _snapshot_of(self, aggregate: AggregateRoot) -> Snapshot | None:
        """The aggregate's snapshot, or None when its state can't be stored as it is.

        A field holding what its annotation does not take (a ``float`` field
        holding a ``Decimal``) could not be restored from the snapshot: none
        is taken and the error is reported. A snapshot is a cache: the save,
        committed already, stands, and loads replay the stream.
        """
        try:
            return aggregate.to_snapshot()
        except EncodeError as error:
            self._hooks.record_aggregate_error(
                aggregate.aggregate_id, f"snapshot not taken: {error}"
            )
            return None

    def _snapshot_due(self, before: int, after: int) -> bool:
        every = self.snapshot_every
        return every is not None and before // every != after // every


def _type_label(store: object, aggregate: AggregateRoot) -> dict[str, str]:
    """``aggregate_type=`` for stores that label streams (``accepts_aggregate_type``)."""
    if getattr(store, "accepts_aggregate_type", False):
        return {"aggregate_type": type(aggregate).__name__}
    return {}


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def aggregate_fields(aggregate_type: type[AggregateRoot]) -> list[str]:
    """The names of an aggregate class's own state fields."""
    return [f.name for f in dataclasses.fields(aggregate_type) if f.name not in _BASE_FIELDS]
