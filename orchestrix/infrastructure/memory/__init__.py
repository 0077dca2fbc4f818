"""In-memory infrastructure: the reference implementations of the core protocols.

``InMemoryEventStore``, ``InMemoryAsyncEventStore``, ``InMemoryMessageBus`` and
``InMemoryAsyncMessageBus`` are importable from here; the projection, saga and
dead-letter stores live beside the protocols they implement.
"""

from orchestrix.infrastructure.memory.bus import InMemoryAsyncMessageBus, InMemoryMessageBus
from orchestrix.infrastructure.memory.store import InMemoryAsyncEventStore, InMemoryEventStore

__all__ = [
    "InMemoryAsyncEventStore",
    "InMemoryAsyncMessageBus",
    "InMemoryEventStore",
    "InMemoryMessageBus",
]
