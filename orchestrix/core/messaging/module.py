"""The ``Module`` protocol: a unit of wiring for a bounded context.

A module subscribes its command and event handlers to a bus, handing them the
event store they persist to. It needs no base class: any object with a
matching ``register`` method is a module::

    class OrdersModule:
        def register(self, bus: MessageBus, store: EventStore) -> None:
            handler = CreateOrderHandler(bus, store)
            bus.subscribe(CreateOrder, handler.handle)

    OrdersModule().register(bus, store)

It lives with the message bus it wires; ``orchestrix.core.common.module`` is
its documented import path.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix.core.messaging.message_bus import MessageBus

__all__ = ["Module"]


@runtime_checkable
class Module(Protocol):
    """Registers a bounded context's handlers with a message bus.

    Runtime-checkable: ``isinstance(obj, Module)`` is true for any object
    with a ``register`` method (it does not check the signature).
    """

    def register(self, bus: MessageBus, store: EventStore) -> None:
        """Subscribe this module's handlers to ``bus``, giving them ``store``."""
        ...
