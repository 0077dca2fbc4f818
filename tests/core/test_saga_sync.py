"""``Saga.execute_sync``: the core's engine run in the caller's thread, without an event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from orchestrix.core.common.retry import FixedDelay
from orchestrix.core.execution.saga import (
    InMemorySagaStateStore,
    Saga,
    SagaState,
    SagaStatus,
    SagaStep,
    StepStatus,
)


class SyncStore:
    """A sync saga state store (the ``SyncSagaStateStore`` protocol) in a dict."""

    def __init__(self) -> None:
        self.states: dict[str, SagaState] = {}
        self.saves = 0
        self.threads: set[str] = set()

    def save(self, state: SagaState) -> SagaState:
        self.saves += 1
        self.threads.add(threading.current_thread().name)
        stored = state.copy()
        stored.version = state.version + 1
        self.states[state.saga_id] = stored
        return stored.copy()

    def load(self, saga_id: str) -> SagaState | None:
        found = self.states.get(saga_id)
        return None if found is None else found.copy()

    def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> list[SagaState]:
        return list(self.states.values())


def in_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_steps_and_saves_run_in_this_thread_without_an_event_loop() -> None:
    store = SyncStore()
    seen: list[tuple[str, bool]] = []

    def step(order_id: str) -> str:
        seen.append((threading.current_thread().name, in_a_loop()))
        return f"done {order_id}"

    async def never_used(function: Any) -> Any:
        raise AssertionError("run_sync is not used without an event loop")

    saga = Saga("t", [SagaStep("a", step), SagaStep("b", step)], store, run_sync=never_used)
    state = saga.execute_sync(order_id="o-1")
    assert state.status is SagaStatus.COMPLETED
    assert state.step("b").result == "done o-1"
    here = threading.current_thread().name
    assert seen == [(here, False), (here, False)]
    assert store.threads == {here}
    assert store.load(state.saga_id) is not None
    assert saga.is_successful()


def test_initialize_sync_then_execute_sync_resume_from_the_store() -> None:
    store = SyncStore()
    calls: list[str] = []

    def first() -> None:
        calls.append("first")

    def second() -> None:
        raise RuntimeError("boom")

    def undo_first() -> None:
        calls.append("undo first")

    saga = Saga("t", [SagaStep("first", first, undo_first), SagaStep("second", second)], store)
    initial = saga.initialize_sync("saga-1", correlation_id="corr")
    assert initial.status is SagaStatus.PENDING and initial.correlation_id == "corr"
    final = saga.execute_sync()
    assert final.status is SagaStatus.FAILED
    assert final.step("first").status is StepStatus.COMPENSATED
    assert calls == ["first", "undo first"]
    again = Saga("t", [SagaStep("first", first, undo_first), SagaStep("second", second)], store)
    again.initialize_sync("saga-1")
    assert again.execute_sync().status is SagaStatus.FAILED
    assert calls == ["first", "undo first"]  # a finished saga runs nothing


def test_retry_delays_sleep_in_this_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")

    saga = Saga("t", [SagaStep("flaky", flaky, retry_policy=FixedDelay(3, 0.5))], SyncStore())
    assert saga.execute_sync().status is SagaStatus.COMPLETED
    assert slept == [0.5, 0.5]


def test_async_steps_or_stores_are_refused_before_anything_runs() -> None:
    async def step() -> None:
        raise AssertionError("must not run")

    store = SyncStore()
    with pytest.raises(TypeError, match="sync steps"):
        Saga("t", [SagaStep("s", step)], store).execute_sync()
    assert store.saves == 0

    def sync_step() -> None:
        raise AssertionError("must not run")

    with pytest.raises(TypeError, match="state store"):
        Saga("t", [SagaStep("s", sync_step)], InMemorySagaStateStore()).execute_sync()
    with pytest.raises(TypeError, match="state store"):
        Saga("t", [SagaStep("s", sync_step)], InMemorySagaStateStore()).initialize_sync()
