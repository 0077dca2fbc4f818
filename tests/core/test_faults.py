"""Faults are not failures: the core's ``is_fault`` hook of projections and sagas.

An error a runner recognises as a fault of its infrastructure must reach the
runner untouched: no retry of the handler's policy used up, no unhealthy
state, nothing parked, no compensation; the work done again afterwards
completes as if the fault had never happened.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from orchestrix.core.common.retry import FixedDelay
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import (
    InMemoryProjectionStateStore,
    ProjectionEngine,
)
from orchestrix.core.execution.saga import InMemorySagaStateStore, Saga, SagaStatus, SagaStep
from orchestrix.core.execution.saga_state import StepStatus
from orchestrix.core.messaging.message import Event
from orchestrix.infrastructure.memory.dead_letter import InMemoryDeadLetterQueue


class Outage(Exception):
    """Stands in for a lost database connection."""


@dataclass(frozen=True, kw_only=True)
class Ticked(Event):
    n: int


class FaultAwareEngine(ProjectionEngine):
    def is_fault(self, error: BaseException) -> bool:
        return isinstance(error, Outage)


class FaultAwareSaga(Saga):
    def is_fault(self, error: BaseException) -> bool:
        return isinstance(error, Outage)


def stored(n: int) -> StoredEvent:
    return StoredEvent(event=Ticked(n=n), stream_id="s", version=n, position=n)


@pytest.mark.parametrize("on_failure", ["stop", "park"])
def test_a_fault_in_a_handler_reaches_the_runner_and_is_no_failure(on_failure: str) -> None:
    letters = InMemoryDeadLetterQueue()
    engine = FaultAwareEngine(
        "ticks",
        InMemoryProjectionStateStore(),
        retry_policy=FixedDelay(max_retries=3, delay=0),
        dead_letters=letters,
        on_failure=on_failure,  # type: ignore[arg-type]
    )
    calls: list[int] = []
    down = {2}

    @engine.on(Ticked)
    def tick(event: Ticked) -> None:
        calls.append(event.n)
        if event.n in down:
            raise Outage("connection lost")

    batch = [stored(n) for n in (1, 2, 3)]
    with pytest.raises(Outage):
        asyncio.run(engine.process_events(batch))
    # One call of the faulting handler: the policy's three retries are not spent on it.
    assert calls == [1, 2]
    state = engine.get_state()
    assert state.is_healthy and state.error_count == 0 and state.last_error is None
    assert letters.count() == 0
    down.clear()  # the database is back: the runner retries the batch
    assert asyncio.run(engine.process_events(batch)) == 2
    assert calls == [1, 2, 2, 3]
    assert engine.get_state().last_processed_position == 3 and engine.is_healthy()


def test_without_the_hook_the_same_error_is_a_handler_failure() -> None:
    engine = ProjectionEngine("ticks", InMemoryProjectionStateStore())

    @engine.on(Ticked)
    def tick(event: Ticked) -> None:
        raise Outage("connection lost")

    with pytest.raises(Exception, match="connection lost"):
        asyncio.run(engine.process_events([stored(1)]))
    assert not engine.is_healthy()


@pytest.mark.parametrize("where", ["action", "compensation"])
def test_a_fault_in_a_saga_step_leaves_it_resumable_and_it_runs_again_once(where: str) -> None:
    store = InMemorySagaStateStore()
    calls: list[str] = []
    down = {"charge" if where == "action" else "release"}

    def reserve() -> str:
        calls.append("reserve")
        return "R"

    def release() -> None:
        calls.append("release")
        if "release" in down:
            raise Outage("connection lost")

    def charge() -> str:
        calls.append("charge")
        if "charge" in down:
            raise Outage("connection lost")
        if where == "compensation":
            raise ValueError("declined")
        return "C"

    def make() -> FaultAwareSaga:
        return FaultAwareSaga(
            "order",
            [
                SagaStep(name="reserve", action=reserve, compensation=release),
                SagaStep(name="charge", action=charge, retry_policy=FixedDelay(2, 0)),
            ],
            store,
        )

    saga = make()
    asyncio.run(saga.initialize("S-1"))
    with pytest.raises(Outage):
        asyncio.run(saga.execute())
    kept = asyncio.run(store.load("S-1"))
    assert kept is not None
    if where == "action":
        assert kept.status is SagaStatus.IN_PROGRESS
        assert kept.step("charge").status is StepStatus.RUNNING
        assert calls == ["reserve", "charge"]
    else:
        assert kept.status is SagaStatus.COMPENSATING
        assert kept.step("reserve").status is StepStatus.COMPENSATING
        assert calls == ["reserve", "charge", "charge", "charge", "release"]
    down.clear()
    resumed = make()
    asyncio.run(resumed.initialize("S-1"))
    final = asyncio.run(resumed.execute())
    if where == "action":
        assert final.status is SagaStatus.COMPLETED
        assert calls == ["reserve", "charge", "charge"]
    else:
        assert final.status is SagaStatus.FAILED and final.fully_compensated
        assert calls == ["reserve", "charge", "charge", "charge", "release", "release"]
