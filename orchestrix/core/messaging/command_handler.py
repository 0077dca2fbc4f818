"""The ``CommandHandler`` protocol.

``CommandHandler`` is a Protocol, not a base class: implement it by matching
the method signatures, no inheritance required::

    class CreateUserHandler:
        def __init__(self, bus: MessageBus, store: EventStore) -> None:
            self.bus = bus
            self.store = store

        def handle(self, command: CreateUser) -> None:
            user = UserAggregate(aggregate_id=command.user_id)
            user._apply_event(UserCreated(user_id=command.user_id, email=command.email))
            self._persist_and_publish(command.user_id, user.uncommitted_events)
            user.mark_events_committed()

        def _persist_and_publish(self, aggregate_id: str, events: list[Event]) -> None:
            self.store.save(aggregate_id, events)
            for event in events:
                self.bus.publish(event)
"""

from __future__ import annotations

from typing import Protocol

from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix.core.messaging.message import Command, Event
from orchestrix.core.messaging.message_bus import MessageBus

__all__ = ["CommandHandler"]


class CommandHandler(Protocol):
    """Handles one kind of command: decide, persist the events, publish them.

    This is a structural type, so no inheritance is required: any class with
    these methods is a command handler. It is deliberately not
    runtime-checkable: ``_persist_and_publish`` is a suggested helper that the
    reference example handlers do without, so an ``isinstance`` check would
    wrongly reject them.
    """

    def __init__(self, bus: MessageBus, store: EventStore) -> None:
        """Keep the bus to publish events to and the store to persist them in."""
        ...

    def handle(self, command: Command) -> None:
        """Carry out ``command``: change an aggregate, then persist and publish its events."""
        ...

    def _persist_and_publish(self, aggregate_id: str, events: list[Event]) -> None:
        """Save ``events`` to the stream ``aggregate_id``, then publish each on the bus.

        Saving first means subscribers only ever see events that are stored.
        """
        ...
