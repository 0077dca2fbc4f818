"""The saga state store contract, run against the in-memory store (and a sync store)."""

from __future__ import annotations

import threading

import pytest

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.execution.saga import (
    InMemorySagaStateStore,
    SagaState,
    SagaStateStore,
    SagaStatus,
)
from orchestrix.core.execution.saga_state import SyncSagaStateStore
from orchestrix.testing.saga_contract import SagaStateStoreContract, assert_raises


class DictSyncSagaStateStore:
    """A minimal synchronous store, to prove the contract drives sync stores too."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, object]] = {}
        self._lock = threading.Lock()

    def save(self, state: SagaState) -> SagaState:
        row = state.to_dict()  # JSON data, as a database store would keep
        with self._lock:
            current = self._rows.get(state.saga_id)
            actual = 0 if current is None else int(current["version"])  # type: ignore[call-overload]
            if actual != state.version:
                raise ConcurrencyError(state.saga_id, state.version, actual)
            row["version"] = actual + 1
            self._rows[state.saga_id] = row
        return SagaState.from_dict(row)

    def load(self, saga_id: str) -> SagaState | None:
        with self._lock:
            row = self._rows.get(saga_id)
        return None if row is None else SagaState.from_dict(row)

    def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> list[SagaState]:
        with self._lock:
            states = [SagaState.from_dict(row) for row in self._rows.values()]
        found = [
            s
            for s in states
            if (status is None or s.status is status)
            and (saga_type is None or s.saga_type == saga_type)
        ]
        return sorted(found, key=lambda s: (s.created_at, s.saga_id))


class TestInMemorySagaStateStore(SagaStateStoreContract):
    def create_store(self) -> InMemorySagaStateStore:
        return InMemorySagaStateStore()

    def test_satisfies_the_protocol(self) -> None:
        assert isinstance(self.create_store(), SagaStateStore)

    def test_clear_and_len(self) -> None:
        store = self.create_store()
        self.call(store.save(self.make_state()))
        assert len(store) == 1
        store.clear()
        assert len(store) == 0


class TestSyncDictSagaStateStore(SagaStateStoreContract):
    def create_store(self) -> DictSyncSagaStateStore:
        return DictSyncSagaStateStore()

    def test_satisfies_the_sync_protocol(self) -> None:
        assert isinstance(self.create_store(), SyncSagaStateStore)


def test_assert_raises_fails_when_nothing_is_raised() -> None:
    with (
        pytest.raises(AssertionError, match="ValueError was not raised"),
        assert_raises(ValueError),
    ):
        pass


def test_assert_raises_keeps_the_error() -> None:
    def fail() -> None:
        raise KeyError("k")

    with assert_raises(KeyError) as raised:
        fail()
    assert isinstance(raised.error, KeyError)
