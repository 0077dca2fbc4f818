"""Sagas racing: two starts of one saga id (the loser adopts the winner's saga), and a
compensation that succeeds on a retry (its earlier error is cleared)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from orchestrix.core.common.exceptions import SagaError
from orchestrix.core.common.retry import FixedDelay
from orchestrix.core.execution.saga import (
    InMemorySagaStateStore,
    Saga,
    SagaState,
    SagaStatus,
    SagaStep,
    StepStatus,
)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def shipping_steps(calls: list[str]) -> list[SagaStep]:
    def reserve(order_id: str) -> str:
        calls.append(f"reserve {order_id}")
        return f"reserved {order_id}"

    def ship(order_id: str) -> str:
        calls.append(f"ship {order_id}")
        return f"shipped {order_id}"

    return [SagaStep("reserve", reserve), SagaStep("ship", ship)]


class RacedStore(InMemorySagaStateStore):
    """A store on which another worker creates the saga between a creator's load and its save.

    The first save of a new saga first lets ``winner`` initialize the same saga
    id on this store: the creator then loses the race at its own save.
    """

    def __init__(self) -> None:
        super().__init__()
        self.winner: Saga | None = None
        self.raced = False

    async def save(self, state: SagaState) -> SagaState:
        winner = self.winner
        if state.version == 0 and not self.raced and winner is not None:
            self.raced = True
            await winner.initialize(state.saga_id, correlation_id="the winner's")
        return await super().save(state)


def test_the_loser_of_a_creation_race_adopts_the_winner_s_saga() -> None:
    calls: list[str] = []
    store = RacedStore()
    store.winner = Saga("shipping", shipping_steps(calls), store)
    loser = Saga("shipping", shipping_steps(calls), store)
    state = run(loser.initialize("S-1", correlation_id="the loser's"))
    assert store.raced
    assert (state.saga_id, state.correlation_id, state.version) == ("S-1", "the winner's", 1)
    assert state.status is SagaStatus.PENDING
    assert loser.get_state() == state
    # The adopted saga is the loser's to run: it goes on from the stored version.
    final = run(loser.execute(order_id="O-1"))
    assert final.status is SagaStatus.COMPLETED
    assert calls == ["reserve O-1", "ship O-1"]
    stored = run(store.load("S-1"))
    assert stored is not None and stored.correlation_id == "the winner's"
    assert stored.status is SagaStatus.COMPLETED and stored.version == final.version


def test_the_loser_of_a_creation_race_executing_at_once_adopts_the_winner_s_saga() -> None:
    calls: list[str] = []
    store = RacedStore()
    store.winner = Saga("shipping", shipping_steps(calls), store)
    loser = Saga("shipping", shipping_steps(calls), store, saga_id="S-2")
    final = run(loser.execute(order_id="O-2"))
    assert store.raced
    assert final.status is SagaStatus.COMPLETED and final.correlation_id == "the winner's"
    assert calls == ["reserve O-2", "ship O-2"]


def test_a_creation_race_won_by_another_saga_type_is_an_error() -> None:
    store = RacedStore()
    store.winner = Saga("billing", shipping_steps([]), store)
    loser = Saga("shipping", shipping_steps([]), store)
    with pytest.raises(SagaError, match="'billing' saga, not 'shipping'"):
        run(loser.initialize("S-3"))


class BarrierStore(InMemorySagaStateStore):
    """Every thread's first load waits for the others': all of them find no saga, then save."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = threading.Barrier(parties, timeout=30)
        self.first_load = threading.local()

    async def load(self, saga_id: str) -> SagaState | None:
        loaded = await super().load(saga_id)
        if not getattr(self.first_load, "done", False):
            self.first_load.done = True
            self.barrier.wait()
        return loaded


def test_threads_starting_one_saga_together_all_end_up_with_the_one_stored_saga() -> None:
    parties = 4
    store = BarrierStore(parties)
    results: list[SagaState] = []
    errors: list[BaseException] = []

    def start(n: int) -> None:
        try:
            saga = Saga("shipping", shipping_steps([]), store)
            results.append(run(saga.initialize("S-4", correlation_id=f"starter {n}")))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start, args=(n,)) for n in range(parties)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a starter is stuck"
    assert errors == []
    stored = run(InMemorySagaStateStore.load(store, "S-4"))  # no barrier for this thread
    assert stored is not None and stored.version == 1
    assert len(results) == parties
    assert {state.correlation_id for state in results} == {stored.correlation_id}
    assert all(state.version == 1 for state in results)


# ---------------------------------------------------------------- compensations retried


def test_a_compensation_that_succeeds_on_a_retry_clears_its_error() -> None:
    undo_calls: list[int] = []

    def act() -> str:
        return "done"

    def undo(result: str) -> None:
        undo_calls.append(1)
        if len(undo_calls) < 3:
            raise ConnectionError(f"not yet ({len(undo_calls)})")

    def fail() -> None:
        raise RuntimeError("no")

    store = InMemorySagaStateStore()
    steps = [
        SagaStep("act", act, undo, compensation_retry_policy=FixedDelay(max_retries=2, delay=0)),
        SagaStep("fail", fail),
    ]
    state = run(Saga("retried-undo", steps, store, saga_id="R-1").execute())
    record = state.step("act")
    assert (record.status, record.compensation_attempts) == (StepStatus.COMPENSATED, 3)
    assert record.compensation_error is None
    assert state.failed_compensations == [] and state.fully_compensated
    stored = run(store.load("R-1"))
    assert stored is not None and stored.step("act").compensation_error is None


def test_a_compensation_that_fails_on_every_retry_keeps_its_last_error() -> None:
    def undo(result: str) -> None:
        raise ConnectionError("never")

    def fail() -> None:
        raise RuntimeError("no")

    steps = [
        SagaStep(
            "act",
            lambda: "done",
            undo,
            compensation_retry_policy=FixedDelay(max_retries=1, delay=0),
        ),
        SagaStep("fail", fail),
    ]
    state = run(Saga("failed-undo", steps, InMemorySagaStateStore()).execute())
    record = state.step("act")
    assert record.status is StepStatus.COMPENSATION_FAILED
    assert record.compensation_error == "ConnectionError: never"
