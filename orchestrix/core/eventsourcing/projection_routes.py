"""Which handlers of a projection an event reaches: the registrations and their routing.

A handler registered for a class also receives instances of its subclasses; one
registered for a string receives events whose ``type`` equals it. An event's
handlers run in registration order, and a function registered under two
matching keys runs once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrix.core.messaging.message import Event

__all__ = ["EventKey", "HandlerRoutes", "Registration", "callable_name"]

#: What a handler is registered for: an event class (and its subclasses) or a ``type`` string.
EventKey = type[Event] | str


@dataclass(frozen=True, slots=True)
class Registration:
    """One handler registered for one key; ``name`` is how errors and dead letters name it."""

    key: EventKey
    handler: Callable[[Any], Any]
    name: str


def callable_name(function: Callable[..., Any]) -> str:
    """``module.qualname`` of a function (its ``repr`` when it has no name)."""
    name = getattr(function, "__qualname__", None) or getattr(function, "__name__", None)
    if name is None:
        return repr(function)
    module = getattr(function, "__module__", None)
    return f"{module}.{name}" if module else str(name)


class HandlerRoutes:
    """The registrations of one projection, with the route of each event class and type cached."""

    def __init__(self) -> None:
        self._registrations: list[Registration] = []
        self._routes: dict[tuple[type[Event], str], tuple[Registration, ...]] = {}

    def add(self, key: EventKey, handler: Callable[[Any], Any]) -> None:
        """Register ``handler`` for ``key`` (after the handlers registered before it)."""
        self._registrations.append(Registration(key, handler, callable_name(handler)))
        self._routes.clear()

    def keys(self) -> tuple[EventKey, ...]:
        """The registered event classes and type strings, in registration order, once each."""
        return tuple(dict.fromkeys(registration.key for registration in self._registrations))

    def handlers(self) -> tuple[Callable[[Any], Any], ...]:
        """Every registered handler, in registration order, once each."""
        return tuple(dict.fromkeys(registration.handler for registration in self._registrations))

    def for_event(self, event: Event) -> tuple[Registration, ...]:
        """The registrations ``event`` reaches, in the order they run."""
        key = (type(event), event.type)
        routes = self._routes.get(key)
        if routes is None:
            chosen: dict[int, Registration] = {}
            for registration in self._registrations:
                wanted = registration.key
                matches = (
                    event.type == wanted if isinstance(wanted, str) else isinstance(event, wanted)
                )
                # A function registered under two matching keys runs once.
                if matches and id(registration.handler) not in chosen:
                    chosen[id(registration.handler)] = registration
            routes = self._routes[key] = tuple(chosen.values())
        return routes

    def handles(self, event_type: str, event_class: type[Event] | None) -> bool:
        """Whether events of ``event_type``, decoded as ``event_class``, reach a handler."""
        for registration in self._registrations:
            key = registration.key
            if isinstance(key, str):
                if key == event_type:
                    return True
            elif key is Event or (event_class is not None and issubclass(event_class, key)):
                return True
        return False
