"""Messages: immutable commands and events with CloudEvents metadata, and the event registry.

Every message is a frozen, keyword-only dataclass. ``id`` and ``timestamp``
are generated, ``type`` defaults to the class name, and the correlation,
causation and trace ids let a handler derive an event from the command that
caused it (see :meth:`Message.caused_by`). Every :class:`Event` subclass is
added to :data:`default_registry` as it is defined: the registry lives here
because an event class and the registry it joins are defined together.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

from orchestrix.core.common.clock import utc_now
from orchestrix.core.common.exceptions import DuplicateEventTypeError, UnknownEventTypeError

__all__ = [
    "CLOUDEVENT_FIELDS",
    "Command",
    "Event",
    "EventRegistry",
    "Message",
    "causal_fields",
    "default_registry",
    "message_type_of",
    "qualified_name",
]

#: The fields every message carries besides its own domain fields.
CLOUDEVENT_FIELDS: tuple[str, ...] = (
    "id",
    "specversion",
    "type",
    "source",
    "timestamp",
    "subject",
    "data",
    "datacontenttype",
    "dataschema",
    "correlation_id",
    "causation_id",
    "trace_id",
)

_F = TypeVar("_F", bound=Callable[..., None])


def _new_id() -> str:
    return str(uuid.uuid4())


def _normalise(message: Message) -> None:
    """Fill ``type`` and put ``timestamp`` in UTC, before any user ``__post_init__``."""
    if not message.type:
        object.__setattr__(message, "type", type(message).__name__)
    stamp = message.timestamp
    if not isinstance(stamp, datetime):
        raise TypeError(f"{type(message).__name__}.timestamp must be a datetime, got {stamp!r}")
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        raise ValueError(
            f"{type(message).__name__}.timestamp must be timezone-aware (got naive {stamp}); "
            "use datetime.now(UTC)"
        )
    if stamp.utcoffset():
        object.__setattr__(message, "timestamp", stamp.astimezone(UTC))


def _with_normalisation(post_init: _F) -> _F:
    if getattr(post_init, "_orchestrix_normalises", False):
        return post_init

    @functools.wraps(post_init)
    def __post_init__(self: Message, *args: Any) -> None:
        _normalise(self)
        post_init(self, *args)

    __post_init__._orchestrix_normalises = True  # type: ignore[attr-defined]
    return __post_init__  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of all messages: an immutable record with CloudEvents metadata."""

    id: str = field(default_factory=_new_id)
    specversion: str = "1.0"
    type: str = ""
    source: str = "orchestrix"
    timestamp: datetime = field(default_factory=utc_now)
    subject: str | None = None
    data: Any = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    trace_id: str | None = None

    def __post_init__(self) -> None:
        _normalise(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass may define its own __post_init__ (for validation) without
        # calling super(); wrapping it keeps `type` and `timestamp` right anyway.
        own = cls.__dict__.get("__post_init__")
        if own is not None:
            cls.__post_init__ = _with_normalisation(own)  # type: ignore[method-assign]

    @classmethod
    def caused_by(cls, cause: Message, **fields: Any) -> Self:
        """Create a message of this class caused by ``cause``.

        The new message joins the cause's conversation: its ``correlation_id``
        is the cause's correlation id (or the cause's id when it starts one),
        its ``causation_id`` is the cause's id, and it keeps the trace id.
        Explicit keyword arguments win over the derived values.
        """
        return cls(**{**causal_fields(cause), **fields})

    def correlated_with(self, cause: Message) -> Self:
        """Return a copy of this message marked as caused by ``cause``."""
        fields: dict[str, Any] = dict(causal_fields(cause))
        return dataclasses.replace(self, **fields)


def causal_fields(cause: Message) -> dict[str, str | None]:
    """The correlation, causation and trace ids of a message caused by ``cause``."""
    return {
        "correlation_id": cause.correlation_id or cause.id,
        "causation_id": cause.id,
        "trace_id": cause.trace_id,
    }


@dataclass(frozen=True, kw_only=True)
class Command(Message):
    """An intent to change state, handled by exactly one command handler."""


@dataclass(frozen=True, kw_only=True)
class Event(Message):
    """A fact that has occurred: an immutable record of a state change.

    ``schema_version`` (a class attribute, 1 by default) is the version of the
    class's shape; older shapes keep their own classes with the same ``type``
    and are brought up to date by upcasters.
    """

    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        default_registry.add(cls)


def message_type_of(message_class: type[Message]) -> str:
    """The ``type`` instances of ``message_class`` get when none is given."""
    # Walk the MRO: during __init_subclass__ @dataclass has not run on the class
    # yet, so its own `type = "..."` is still a plain class attribute.
    for klass in message_class.__mro__:
        own_fields = klass.__dict__.get("__dataclass_fields__")
        if own_fields is not None and "type" in own_fields:
            default = own_fields["type"].default
            declared = default if isinstance(default, str) else ""
            return declared or message_class.__name__
        value = klass.__dict__.get("type")
        if isinstance(value, str):
            return value or message_class.__name__
    return message_class.__name__


# ---------------------------------------------------------------- the registry


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, as used in error messages."""
    return f"{cls.__module__}.{cls.__qualname__}"


class EventRegistry:
    """Maps ``(type, schema_version)`` to event classes, refusing duplicates.

    Stored events are decoded through it. Two classes claiming one key is a
    mistake that must not pass silently: :meth:`register` raises at once; the
    registration of a class as it is defined (:meth:`add`) records the conflict
    instead (raising in a class statement would break imports), every lookup of
    that key then raises, and :meth:`conflicts` lets a start-up check report it.
    """

    def __init__(self) -> None:
        self._classes: dict[tuple[str, int], type[Event]] = {}
        self._latest: dict[str, int] = {}
        self._conflicts: dict[tuple[str, int], list[type[Event]]] = {}
        self._lock = threading.RLock()

    @staticmethod
    def key_of(event_class: type[Event]) -> tuple[str, int]:
        """The ``(type, schema_version)`` an event class is registered under."""
        return message_type_of(event_class), int(getattr(event_class, "schema_version", 1))

    def register(self, event_class: type[Event]) -> type[Event]:
        """Register ``event_class``; raise if another class holds its key.

        Returns the class, so it can be used as a decorator.
        """
        with self._lock:
            key = self.key_of(event_class)
            existing = self._classes.get(key)
            if existing is not None and not _same_definition(existing, event_class):
                raise DuplicateEventTypeError(
                    key[0], key[1], [qualified_name(existing), qualified_name(event_class)]
                )
            self._store(key, event_class)
            return event_class

    def add(self, event_class: type[Event]) -> None:
        """Register a class as it is defined, recording (not raising) a conflict."""
        with self._lock:
            key = self.key_of(event_class)
            existing = self._classes.get(key)
            if existing is not None and not _same_definition(existing, event_class):
                claimants = self._conflicts.setdefault(key, [existing])
                claimants[:] = [c for c in claimants if not _same_definition(c, event_class)]
                claimants.append(event_class)
                return
            self._store(key, event_class)

    def _store(self, key: tuple[str, int], event_class: type[Event]) -> None:
        # The same definition again (a module reloaded, or @dataclass(slots=True)
        # rebuilding the class) replaces the old class object.
        self._classes[key] = event_class
        conflict = self._conflicts.get(key)
        if conflict is not None:
            conflict[:] = [c for c in conflict if not _same_definition(c, event_class)]
            conflict.append(event_class)
            if len(conflict) < 2:
                del self._conflicts[key]
        if key[1] > self._latest.get(key[0], 0):
            self._latest[key[0]] = key[1]

    def unregister(self, event_class: type[Event]) -> None:
        """Remove a class (used by tests that define throw-away events)."""
        with self._lock:
            key = self.key_of(event_class)
            if self._classes.get(key) is event_class:
                del self._classes[key]
                versions = [v for (t, v) in self._classes if t == key[0]]
                if versions:
                    self._latest[key[0]] = max(versions)
                else:
                    self._latest.pop(key[0], None)
            conflict = self._conflicts.get(key)
            if conflict is not None:
                conflict[:] = [c for c in conflict if c is not event_class]
                if len(conflict) < 2:
                    del self._conflicts[key]
                    if conflict and key not in self._classes:
                        self._store(key, conflict[0])

    def resolve(
        self,
        event_type: str,
        schema_version: int | None = None,
        *,
        stream_id: str | None = None,
        version: int | None = None,
    ) -> type[Event]:
        """The class for ``event_type`` at ``schema_version`` (default: the latest).

        ``stream_id`` and ``version`` only make the error message more useful.
        """
        if schema_version is None:
            schema_version = self._latest.get(event_type)
            if schema_version is None:
                raise UnknownEventTypeError(event_type, None, stream_id, version)
        key = (event_type, schema_version)
        conflict = self._conflicts.get(key)
        if conflict:
            raise DuplicateEventTypeError(
                event_type, schema_version, [qualified_name(c) for c in conflict]
            )
        try:
            return self._classes[key]
        except KeyError:
            raise UnknownEventTypeError(event_type, schema_version, stream_id, version) from None

    def latest_version(self, event_type: str) -> int:
        """The highest schema version registered for ``event_type``."""
        try:
            return self._latest[event_type]
        except KeyError:
            raise UnknownEventTypeError(event_type) from None

    def versions(self, event_type: str) -> list[int]:
        """Every schema version registered for ``event_type``, ascending."""
        return sorted(v for (t, v) in self._classes if t == event_type)

    def conflicts(self) -> list[DuplicateEventTypeError]:
        """Every ``(type, schema_version)`` claimed by more than one class."""
        with self._lock:
            return [
                DuplicateEventTypeError(t, v, [qualified_name(c) for c in classes])
                for (t, v), classes in sorted(self._conflicts.items())
            ]

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._latest

    def __iter__(self) -> Iterator[type[Event]]:
        return iter(list(self._classes.values()))

    def __len__(self) -> int:
        return len(self._classes)

    def event_types(self) -> list[str]:
        """Every registered ``type``, sorted."""
        return sorted(self._latest)


def _same_definition(a: type, b: type) -> bool:
    return a is b or (a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__)


#: Every Event subclass is added here as it is defined.
default_registry = EventRegistry()
