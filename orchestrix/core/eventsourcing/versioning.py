"""Event versioning: upcasters bring events stored in an old shape to the current one.

An event class's shape has a ``schema_version`` (class attribute, 1 by
default). When the shape changes, keep the old class under the same ``type``
with its old ``schema_version``, make the new class the next version, and
register an :class:`EventUpcaster` per step (v1→v2, v2→v3, …). Every read path
then upcasts stored events to the latest registered version.

Upcasters are written as ``async def upcast``. Most are pure transformations
that never wait on anything; the synchronous read paths run those directly
(:meth:`EventUpcaster.upcast_sync`). An upcaster that really awaits I/O works
on the async paths only, unless it overrides ``upcast_sync`` as well.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from orchestrix.core.common.exceptions import DowncastError, MissingUpcasterError, UpcastError
from orchestrix.core.messaging.message import Event, EventRegistry, default_registry

__all__ = [
    "EventUpcast",
    "EventUpcaster",
    "UpcasterRegistry",
    "VersionedEvent",
    "schema_version_of",
]

SourceEvent = TypeVar("SourceEvent", bound=Event)
TargetEvent = TypeVar("TargetEvent", bound=Event)
_R = TypeVar("_R")


@dataclass(frozen=True)
class VersionedEvent:
    """An event together with the schema version and type it is stored under."""

    event: Event
    version: int
    event_type: str


def schema_version_of(event: Event | VersionedEvent) -> int:
    """The schema version of an event (its class's ``schema_version``)."""
    if isinstance(event, VersionedEvent):
        return event.version
    return int(getattr(type(event), "schema_version", 1))


def run_sync(coroutine: Coroutine[Any, Any, _R], what: str) -> _R:
    """Run a coroutine that never suspends, without an event loop.

    Raises :class:`UpcastError` if it does suspend (it awaits real I/O).
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise UpcastError(
        f"{what} awaits I/O, so it cannot run on a synchronous read path; "
        "use the async path (load_async) or override upcast_sync()"
    )


class EventUpcaster(ABC, Generic[SourceEvent, TargetEvent]):
    """Transforms events of one type from ``source_version`` to ``target_version``."""

    def __init__(self, source_version: int, target_version: int) -> None:
        if target_version <= source_version:
            raise DowncastError(type(self).__name__, source_version, target_version)
        if source_version < 1:
            raise ValueError(f"schema versions start at 1, got {source_version}")
        self.source_version = source_version
        self.target_version = target_version

    @abstractmethod
    async def upcast(self, event: Event) -> TargetEvent:
        """Return the event in the target version's shape (a new event object)."""

    async def can_upcast(self, event: Event) -> bool:
        """Whether ``event`` is in this upcaster's source version."""
        return schema_version_of(event) == self.source_version

    def upcast_sync(self, event: Event) -> TargetEvent:
        """Run :meth:`upcast` synchronously (see the module docs)."""
        return run_sync(self.upcast(event), f"{type(self).__name__}.upcast")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source_version}→{self.target_version})"


#: What the registry accepts (the reference's name for it).
EventUpcast = EventUpcaster[Any, Any]


class UpcasterRegistry:
    """Upcaster chains per event type.

    ``upcast(event, event_type, target_version)`` follows the chain from the
    event's schema version to ``target_version``; a missing link raises
    :class:`MissingUpcasterError`, a target older than the event
    :class:`DowncastError`. :meth:`check` finds broken chains at start-up.
    """

    def __init__(self) -> None:
        self._chains: dict[str, dict[int, EventUpcast]] = {}
        self._lock = threading.Lock()

    def register(self, event_type: str, upcaster: EventUpcast) -> None:
        """Add ``upcaster`` to the chain of ``event_type`` (one per source version)."""
        if not isinstance(upcaster, EventUpcaster):
            raise TypeError(f"expected an EventUpcaster, got {upcaster!r}")
        with self._lock:
            chain = self._chains.setdefault(event_type, {})
            existing = chain.get(upcaster.source_version)
            if existing is not None and existing is not upcaster:
                raise ValueError(
                    f"{event_type!r} already has an upcaster from version "
                    f"{upcaster.source_version}: {existing!r}"
                )
            chain[upcaster.source_version] = upcaster

    def get_upcaster(
        self, event_type: str, source_version: int, target_version: int
    ) -> EventUpcast | None:
        """The upcaster registered for exactly this step, or None."""
        upcaster = self._chains.get(event_type, {}).get(source_version)
        if upcaster is not None and upcaster.target_version == target_version:
            return upcaster
        return None

    def get_chain_info(self, event_type: str) -> list[tuple[int, int]]:
        """The ``(source, target)`` steps registered for ``event_type``, ascending."""
        chain = self._chains.get(event_type, {})
        return sorted((u.source_version, u.target_version) for u in chain.values())

    def event_types(self) -> list[str]:
        """Every event type with at least one upcaster."""
        return sorted(self._chains)

    def _path(self, event_type: str, source: int, target: int) -> list[EventUpcast]:
        if target < source:
            raise DowncastError(event_type, source, target)
        chain = self._chains.get(event_type, {})
        path: list[EventUpcast] = []
        current = source
        while current < target:
            step = chain.get(current)
            if step is None or step.target_version > target:
                raise MissingUpcasterError(
                    event_type, current, target, self.get_chain_info(event_type)
                )
            path.append(step)
            current = step.target_version
        return path

    async def upcast(self, event: Event, event_type: str, target_version: int) -> Event:
        """Bring ``event`` (or a :class:`VersionedEvent`) to ``target_version``."""
        source, inner = _unwrap(event)
        for step in self._path(event_type, source, target_version):
            inner = await step.upcast(inner)
            _check_result(step, event_type, inner)
        return inner

    def upcast_sync(self, event: Event, event_type: str, target_version: int) -> Event:
        """The synchronous twin of :meth:`upcast` (see the module docs)."""
        source, inner = _unwrap(event)
        for step in self._path(event_type, source, target_version):
            inner = step.upcast_sync(inner)
            _check_result(step, event_type, inner)
        return inner

    def upcast_to_latest(self, event: Event, registry: EventRegistry | None = None) -> Event:
        """Upcast ``event`` (synchronously) to the latest version registered for its type."""
        target = self._latest(event, registry)
        if target is None:
            return event
        return self.upcast_sync(event, event.type, target)

    async def upcast_to_latest_async(
        self, event: Event, registry: EventRegistry | None = None
    ) -> Event:
        """Upcast ``event`` to the latest version registered for its type."""
        target = self._latest(event, registry)
        if target is None:
            return event
        return await self.upcast(event, event.type, target)

    def needs_upcast(self, event: Event, registry: EventRegistry | None = None) -> bool:
        """Whether ``event`` is older than the latest version of its type."""
        return self._latest(event, registry) is not None

    @staticmethod
    def _latest(event: Event, registry: EventRegistry | None) -> int | None:
        registry = registry if registry is not None else default_registry
        if event.type not in registry:
            return None
        latest = registry.latest_version(event.type)
        return latest if latest > schema_version_of(event) else None

    def check(self, registry: EventRegistry | None = None) -> list[UpcastError]:
        """Every broken chain: an event class older than the latest version of its
        type with no path of upcasters to that latest version."""
        registry = registry if registry is not None else default_registry
        problems: list[UpcastError] = []
        for event_type in registry.event_types():
            versions = registry.versions(event_type)
            latest = versions[-1]
            for version in versions[:-1]:
                try:
                    self._path(event_type, version, latest)
                except UpcastError as error:
                    problems.append(error)
        return problems


def _unwrap(event: Event | VersionedEvent) -> tuple[int, Event]:
    if isinstance(event, VersionedEvent):
        return event.version, event.event
    return schema_version_of(event), event


def _check_result(step: EventUpcast, event_type: str, result: object) -> None:
    if not isinstance(result, Event):
        raise UpcastError(
            f"{step!r} for {event_type!r} returned {type(result).__name__}, not an Event"
        )
