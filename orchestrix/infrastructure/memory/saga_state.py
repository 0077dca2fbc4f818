"""The in-memory saga state store: the reference :class:`SagaStateStore`."""

from __future__ import annotations

import builtins
import threading

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.execution.saga_state import SagaState, SagaStatus

__all__ = ["InMemorySagaStateStore"]


class InMemorySagaStateStore:
    """A :class:`SagaStateStore` in a dict: the reference implementation.

    Thread-safe (one lock around every read and write), and it deep-copies on
    the way in and out, so neither side can change the other's state.
    """

    def __init__(self) -> None:
        self._states: dict[str, SagaState] = {}
        self._lock = threading.Lock()

    async def save(self, state: SagaState) -> SagaState:
        """Store a copy at ``state.version + 1`` if ``state.version`` is current."""
        # Copy before taking the lock: deepcopy may be slow, and it only reads `state`.
        stored = state.copy()
        with self._lock:
            current = self._states.get(state.saga_id)
            actual = 0 if current is None else current.version
            if state.version != actual:
                raise ConcurrencyError(
                    aggregate_id=state.saga_id,
                    expected_version=state.version,
                    actual_version=actual,
                    reason="saga state",
                )
            stored.version = actual + 1
            self._states[state.saga_id] = stored
            return stored.copy()

    async def load(self, saga_id: str) -> SagaState | None:
        """A copy of the stored state, or ``None``."""
        with self._lock:
            state = self._states.get(saga_id)
            return None if state is None else state.copy()

    async def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Copies of the matching states, oldest first."""
        with self._lock:
            matching = [
                state
                for state in self._states.values()
                if (status is None or state.status is status)
                and (saga_type is None or state.saga_type == saga_type)
            ]
            matching.sort(key=lambda s: (s.created_at, s.saga_id))
            return [state.copy() for state in matching]

    def clear(self) -> None:
        """Forget every state (for tests)."""
        with self._lock:
            self._states.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
