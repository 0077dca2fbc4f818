"""The repository's guarantees that hold under failure: async optimistic locking, replay errors,
snapshots that fail half-way through their restore."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot
from orchestrix.core.eventsourcing.event_store import AsyncEventStore, EventStore
from orchestrix.core.messaging.message import Event
from orchestrix.infrastructure.memory import InMemoryAsyncEventStore, InMemoryEventStore


@dataclass(frozen=True, kw_only=True)
class TillOpened(Event):
    """A till is opened (these events' types are their class names)."""


@dataclass(frozen=True, kw_only=True)
class CashCounted(Event):
    amount: int


@dataclass(frozen=True, kw_only=True)
class TillJammed(Event):
    """An event whose replay fails: the aggregate's handler raises on it."""


class Jammed(Exception):
    """What replaying TillJammed raises."""


@dataclass
class Till(AggregateRoot):
    total: int = 0
    counts: list[int] = field(default_factory=list)

    def open(self) -> None:
        self._apply_event(TillOpened())

    def count(self, amount: int) -> None:
        self._apply_event(CashCounted(amount=amount))

    def _when_till_opened(self, event: TillOpened) -> None:
        pass

    def _when_cash_counted(self, event: CashCounted) -> None:
        self.total += event.amount
        self.counts.append(event.amount)

    def _when_till_jammed(self, event: TillJammed) -> None:
        raise Jammed("the till jammed")


@dataclass
class HalfRestoringTill(Till):
    """Its snapshot restore sets a field, then finds the snapshot unusable."""

    def restore_snapshot(self, state: dict[str, Any]) -> None:
        self.total = int(state["total"])
        self.counts = [int(n) for n in state["counts"]]
        raise ValueError("the snapshot's counts are of another currency")


def opened_till(till_id: str = "T-1", *amounts: int) -> Till:
    till = Till(aggregate_id=till_id)
    till.open()
    for amount in amounts:
        till.count(amount)
    return till


def sync_store() -> EventStore:
    return InMemoryEventStore()


def async_store() -> AsyncEventStore:
    return InMemoryAsyncEventStore()


STORES = pytest.mark.parametrize("make_store", [async_store, sync_store], ids=["async", "sync"])


# ---------------------------------------------------------------- async optimistic locking


@STORES
def test_an_async_save_of_a_stale_aggregate_is_a_concurrency_error(make_store: Any) -> None:
    async def scenario() -> None:
        repo = AggregateRepository(event_store=make_store())
        await repo.save_async(opened_till("T-1", 1))
        first = await repo.load_async(Till, "T-1")
        second = await repo.load_async(Till, "T-1")
        first.count(10)
        await repo.save_async(first)
        second.count(20)
        with pytest.raises(ConcurrencyError) as caught:
            await repo.save_async(second)
        assert (caught.value.expected_version, caught.value.actual_version) == (2, 3)
        assert second.uncommitted_events  # kept, so the caller can decide again
        reloaded = await repo.load_async(Till, "T-1")
        assert (reloaded.total, reloaded.version) == (11, 3)

    asyncio.run(scenario())


@STORES
def test_async_saves_racing_on_one_aggregate_store_exactly_one(make_store: Any) -> None:
    async def scenario() -> None:
        repo = AggregateRepository(event_store=make_store())
        await repo.save_async(opened_till("T-2"))
        racers = [await repo.load_async(Till, "T-2") for _ in range(4)]
        for n, racer in enumerate(racers):
            racer.count(n + 1)
        outcomes = await asyncio.gather(
            *(repo.save_async(racer) for racer in racers), return_exceptions=True
        )
        assert sum(outcome is None for outcome in outcomes) == 1, outcomes
        assert all(
            isinstance(outcome, ConcurrencyError) for outcome in outcomes if outcome is not None
        )
        reloaded = await repo.load_async(Till, "T-2")
        assert reloaded.version == 2 and len(reloaded.counts) == 1

    asyncio.run(scenario())


@STORES
def test_an_async_save_of_a_new_aggregate_over_an_existing_one_conflicts(make_store: Any) -> None:
    async def scenario() -> None:
        repo = AggregateRepository(event_store=make_store())
        await repo.save_async(opened_till("T-3", 5))
        with pytest.raises(ConcurrencyError) as caught:
            await repo.save_async(opened_till("T-3", 7))
        assert (caught.value.expected_version, caught.value.actual_version) == (0, 2)
        assert (await repo.load_async(Till, "T-3")).total == 5

    asyncio.run(scenario())


# ---------------------------------------------------------------- replay errors


def jammed_store() -> InMemoryEventStore:
    store = InMemoryEventStore()
    store.save(
        "T-9",
        [TillOpened(), CashCounted(amount=1), TillJammed(), CashCounted(amount=2)],
        expected_version=0,
    )
    return store


def test_a_replay_error_is_raised_and_no_half_replayed_aggregate_is_returned() -> None:
    errors: list[tuple[str, str]] = []
    hooks = ObservabilityHooks()
    hooks.on_aggregate_error(lambda aggregate_id, error: errors.append((aggregate_id, error)))
    repo = AggregateRepository(event_store=jammed_store(), observability=hooks)
    loaded: list[Till] = []
    with pytest.raises(Jammed, match="the till jammed"):
        loaded.append(repo.load(Till, "T-9"))
    assert loaded == []
    assert errors == [("T-9", "Jammed: the till jammed")]


def test_an_async_replay_error_is_raised_and_no_half_replayed_aggregate_is_returned() -> None:
    loaded: list[Till] = []

    async def scenario() -> None:
        async_store = InMemoryAsyncEventStore()
        await async_store.save("T-9", jammed_store().load("T-9"), expected_version=0)
        for store in (jammed_store(), async_store):
            repo = AggregateRepository(event_store=store)
            with pytest.raises(Jammed, match="the till jammed"):
                loaded.append(await repo.load_async(Till, "T-9"))

    asyncio.run(scenario())
    assert loaded == []


# ---------------------------------------------------------------- snapshots restored half-way


def test_a_snapshot_that_fails_half_way_is_followed_by_a_clean_full_replay() -> None:
    errors: list[str] = []
    hooks = ObservabilityHooks()
    hooks.on_aggregate_error(lambda aggregate_id, error: errors.append(error))
    store = InMemoryEventStore()
    repo = AggregateRepository(event_store=store, snapshot_every=3, observability=hooks)
    till = HalfRestoringTill(aggregate_id="T-5")
    till.open()
    for amount in (1, 2, 3):
        till.count(amount)
    repo.save(till)  # version 4: a snapshot at 4
    snapshot = store.load_snapshot("T-5")
    assert snapshot is not None and snapshot.version == 4
    loaded = repo.load(HalfRestoringTill, "T-5")
    # Replayed from the first event onto a fresh aggregate: nothing counted twice.
    assert (loaded.total, loaded.counts, loaded.version) == (6, [1, 2, 3], 4)
    assert errors and "unusable" in errors[-1]


def test_an_async_load_after_a_half_restored_snapshot_replays_from_scratch() -> None:
    async def scenario() -> HalfRestoringTill:
        store = InMemoryAsyncEventStore()
        repo = AggregateRepository(event_store=store, snapshot_every=2)
        till = HalfRestoringTill(aggregate_id="T-6")
        till.open()
        till.count(4)
        till.count(5)
        await repo.save_async(till)  # version 3: a snapshot at 3
        assert (await store.load_snapshot_async("T-6")) is not None
        return await repo.load_async(HalfRestoringTill, "T-6")

    loaded = asyncio.run(scenario())
    assert (loaded.total, loaded.counts, loaded.version) == (9, [4, 5], 3)
