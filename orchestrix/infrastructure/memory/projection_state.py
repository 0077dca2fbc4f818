"""The in-memory projection state store: the reference :class:`ProjectionStateStore`."""

from __future__ import annotations

import threading

from orchestrix.core.eventsourcing.projection_state import ProjectionState

__all__ = ["InMemoryProjectionStateStore"]


class InMemoryProjectionStateStore:
    """Projection states in a dict: the reference :class:`ProjectionStateStore`. Thread-safe.

    States are immutable, so they are stored and returned as they are.
    """

    def __init__(self) -> None:
        self._states: dict[str, ProjectionState] = {}
        self._lock = threading.Lock()

    def load_state(self, projection_id: str) -> ProjectionState | None:
        """The saved state of ``projection_id``, or None."""
        with self._lock:
            return self._states.get(projection_id)

    def save_state(self, state: ProjectionState) -> None:
        """Store ``state``, replacing the saved state of its projection."""
        if not isinstance(state, ProjectionState):
            raise TypeError(f"expected a ProjectionState, got {type(state).__name__}")
        with self._lock:
            self._states[state.projection_id] = state

    def delete_state(self, projection_id: str) -> None:
        """Forget ``projection_id``'s state (nothing happens when there is none)."""
        with self._lock:
            self._states.pop(projection_id, None)

    def projection_ids(self) -> list[str]:
        """The ids of every stored state, sorted."""
        with self._lock:
            return sorted(self._states)
