"""The registry of event classes, keyed by ``type`` and schema version.

Stored events are decoded through a registry: the stored ``type`` and schema
version name the class to build. Every :class:`~orchestrix.core.messaging.message.Event`
subclass is added to :data:`default_registry` when it is defined.

Two different classes claiming one ``(type, schema_version)`` is a mistake
that must not pass silently. An explicit :meth:`EventRegistry.register` raises
at once; the automatic registration of class definitions records the conflict
instead (raising inside a class statement would break imports) and every
lookup of that type then raises, while :meth:`EventRegistry.conflicts` lets a
start-up check (the Django system check) report it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from orchestrix.core.common.exceptions import DuplicateEventTypeError, UnknownEventTypeError

if TYPE_CHECKING:
    from orchestrix.core.messaging.message import Event

__all__ = ["EventRegistry", "default_registry", "qualified_name"]


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, as used in error messages."""
    return f"{cls.__module__}.{cls.__qualname__}"


class EventRegistry:
    """Maps ``(type, schema_version)`` to event classes, refusing duplicates."""

    def __init__(self) -> None:
        self._classes: dict[tuple[str, int], type[Event]] = {}
        self._latest: dict[str, int] = {}
        self._conflicts: dict[tuple[str, int], list[type[Event]]] = {}
        self._lock = threading.RLock()

    @staticmethod
    def key_of(event_class: type[Event]) -> tuple[str, int]:
        """The ``(type, schema_version)`` an event class is registered under."""
        from orchestrix.core.messaging.message import message_type_of

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
