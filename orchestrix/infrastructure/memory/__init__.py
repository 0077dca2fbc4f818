"""In-memory infrastructure: the reference implementations of the core protocols.

``InMemoryEventStore``, ``InMemoryAsyncEventStore``, ``InMemoryMessageBus`` and
``InMemoryAsyncMessageBus`` are importable from here; the projection state,
saga state and dead-letter stores from their modules (``projection_state``,
``saga_state``, ``dead_letter``).
"""

from orchestrix.infrastructure.memory.bus import InMemoryAsyncMessageBus, InMemoryMessageBus
from orchestrix.infrastructure.memory.store import InMemoryAsyncEventStore, InMemoryEventStore

__all__ = [
    "InMemoryAsyncEventStore",
    "InMemoryAsyncMessageBus",
    "InMemoryEventStore",
    "InMemoryMessageBus",
]
