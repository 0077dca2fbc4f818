"""A runner's batch path through the engine (``mark_applied``, ``advance_past``, ``adopt_state``):
positions only grow, the checkpoint's event is never applied again, the duplicate-id window holds
exactly ``dedupe_window`` ids, and only the projection's own state is taken."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import (
    InMemoryProjectionStateStore,
    ProjectionEngine,
    ProjectionState,
)
from orchestrix.core.messaging.message import Event


@dataclass(frozen=True, kw_only=True)
class ParcelScanned(Event):
    """One event of these tests (its type is its class name)."""

    parcel: str


def scanned(parcel: str) -> ParcelScanned:
    return ParcelScanned(parcel=parcel)


def at(position: int, event: Event) -> StoredEvent:
    return StoredEvent(position=position, stream_id=f"parcel-{position}", version=1, event=event)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def engine(window: int = 10_000) -> tuple[ProjectionEngine, list[str]]:
    """An engine whose handler records the parcels it sees."""
    projection = ProjectionEngine("parcels", InMemoryProjectionStateStore(), dedupe_window=window)
    seen: list[str] = []
    projection.on(ParcelScanned)(lambda event: seen.append(event.parcel))
    run(projection.initialize())
    return projection, seen


# ---------------------------------------------------------------- positions only grow


def test_a_repeated_position_in_a_batch_moves_the_checkpoint_once() -> None:
    projection, _ = engine()
    batch = [at(1, scanned("A")), at(2, scanned("B")), at(2, scanned("B2")), at(3, scanned("C"))]
    assert run(projection.mark_applied(batch)) == 3
    state = projection.get_state()
    assert (state.last_processed_position, state.events_processed) == (3, 3)
    assert state.last_processed_event_id == batch[3].event.id


def test_a_batch_stepping_back_counts_only_the_events_past_the_checkpoint() -> None:
    projection, _ = engine()
    batch = [at(4, scanned("A")), at(6, scanned("B")), at(5, scanned("late")), at(7, scanned("C"))]
    assert projection.advance_past(batch) == 3
    state = projection.get_state()
    assert (state.last_processed_position, state.events_processed) == (7, 3)


# ---------------------------------------------------------------- the checkpoint's own event


def test_the_event_at_the_checkpoint_is_not_applied_again() -> None:
    projection, _ = engine()
    first, second = at(3, scanned("A")), at(4, scanned("B"))
    assert run(projection.mark_applied([first])) == 1
    assert run(projection.mark_applied([first])) == 0
    assert run(projection.mark_applied([first, second])) == 1
    assert projection.advance_past([second]) == 0
    state = projection.get_state()
    assert (state.last_processed_position, state.events_processed) == (4, 2)
    assert state.last_processed_event_id == second.event.id


def test_a_runner_resuming_at_its_checkpoint_applies_only_what_follows() -> None:
    """The batch a runner reads again from its checkpoint's position (inclusive)."""
    projection, seen = engine()
    log = [at(n, scanned(f"P-{n}")) for n in range(1, 6)]
    assert run(projection.mark_applied(log[:3])) == 3
    # The handlers run through process_events, so an applied event would show in `seen`.
    assert run(projection.process_events(log[2:])) == 2
    assert seen == ["P-4", "P-5"]
    assert projection.get_state().events_processed == 5


# ---------------------------------------------------------------- the duplicate-id window


def test_the_window_of_a_runner_s_pages_holds_exactly_the_newest_ids() -> None:
    projection, seen = engine(window=2)
    parcels = [scanned(f"W-{n}") for n in range(1, 6)]
    assert run(projection.mark_applied([at(1, parcels[0]), at(2, parcels[1])])) == 2
    assert run(projection.mark_applied([at(3, parcels[2])])) == 1
    assert run(projection.mark_applied([at(4, parcels[3])])) == 1
    # Remembered: the newest two ids (W-3, W-4). W-2, just outside, is processed again.
    assert run(projection.process_events([parcels[3], parcels[2]])) == 0
    assert run(projection.process_events([parcels[1]])) == 1
    assert seen == ["W-2"]


def test_the_window_of_plain_events_marked_applied_holds_exactly_the_newest_ids() -> None:
    projection, seen = engine(window=2)
    parcels = [scanned(f"Q-{n}") for n in range(1, 5)]
    assert run(projection.mark_applied(parcels[:3])) == 3
    assert run(projection.mark_applied(parcels[3:])) == 1
    # Remembered: Q-3 and Q-4 (the checkpoint's). Q-2, just outside, is processed again.
    assert run(projection.process_events([parcels[2], parcels[3]])) == 0
    assert run(projection.process_events([parcels[1]])) == 1
    assert seen == ["Q-2"]


def test_a_window_of_one_remembers_the_checkpoint_s_event_only() -> None:
    projection, seen = engine(window=1)
    first, second = scanned("O-1"), scanned("O-2")
    assert run(projection.mark_applied([at(1, first), at(2, second)])) == 2
    assert run(projection.process_events([second])) == 0
    assert run(projection.process_events([first])) == 1
    assert seen == ["O-1"]


# ---------------------------------------------------------------- whose state


def test_another_projection_s_state_is_refused() -> None:
    projection, _ = engine()
    run(projection.mark_applied([at(1, scanned("A"))]))
    foreign = ProjectionState(projection_id="not-parcels", last_processed_position=99)
    with pytest.raises(ValueError, match="not-parcels"):
        projection.adopt_state(foreign)
    assert projection.get_state().projection_id == "parcels"
    assert projection.get_state().last_processed_position == 1


def test_an_adopted_state_is_where_the_batch_continues_from() -> None:
    projection, seen = engine()
    projection.adopt_state(ProjectionState(projection_id="parcels", last_processed_position=7))
    assert projection.advance_past([at(7, scanned("old")), at(8, scanned("new"))]) == 1
    assert projection.get_state().last_processed_position == 8
    assert run(projection.process_events([at(8, scanned("new")), at(9, scanned("next"))])) == 1
    assert seen == ["next"]
