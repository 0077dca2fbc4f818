"""Aggregates and the repository: routing, versions, not-found, snapshots, sync and async."""

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from orchestrix.core.common.exceptions import (
    AggregateNotFoundError,
    ConcurrencyError,
    MissingEventHandlerError,
)
from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot, snake_case
from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.messaging.message import Event
from orchestrix.infrastructure.memory import InMemoryAsyncEventStore, InMemoryEventStore
from orchestrix.infrastructure.memory.observability import InMemoryMetricsProvider


@dataclass(frozen=True, kw_only=True)
class WalletOpened(Event):
    wallet_id: str
    owner: str


@dataclass(frozen=True, kw_only=True)
class WalletCredited(Event):
    wallet_id: str
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class WalletAudited(Event):
    wallet_id: str


@dataclass(frozen=True, kw_only=True)
class WalletRenamed(Event):
    wallet_id: str
    owner: str


@dataclass
class Wallet(AggregateRoot):
    owner: str = ""
    balance: Decimal = Decimal("0")
    history: list[Decimal] = field(default_factory=list)

    ignored_events: ClassVar[tuple[str | type[Event], ...]] = (WalletAudited,)

    def open(self, owner: str) -> None:
        self._apply_event(WalletOpened(wallet_id=self.aggregate_id, owner=owner))

    def credit(self, amount: Decimal) -> None:
        self._apply_event(WalletCredited(wallet_id=self.aggregate_id, amount=amount))

    def _when_wallet_opened(self, event: WalletOpened) -> None:
        self.owner = event.owner

    def _when_wallet_credited(self, event: WalletCredited) -> None:
        self.balance += event.amount
        self.history.append(event.amount)


def opened_wallet(wallet_id: str = "W-1", credits: int = 0) -> Wallet:
    wallet = Wallet(aggregate_id=wallet_id)
    wallet.open("Ann")
    for n in range(credits):
        wallet.credit(Decimal(n + 1))
    return wallet


def test_snake_case() -> None:
    assert snake_case("AccountOpened") == "account_opened"
    assert snake_case("HTTPRequestSent") == "http_request_sent"
    assert snake_case("orders.v2.Shipped") == "orders_v2_shipped"


def test_apply_event_changes_state_version_and_uncommitted() -> None:
    wallet = opened_wallet(credits=2)
    assert wallet.owner == "Ann" and wallet.balance == Decimal(3)
    assert wallet.version == 3
    assert [e.type for e in wallet.uncommitted_events] == [
        "WalletOpened",
        "WalletCredited",
        "WalletCredited",
    ]
    wallet.mark_events_committed()
    assert wallet.uncommitted_events == [] and wallet.version == 3


def test_missing_when_method_is_an_error_naming_the_method() -> None:
    wallet = opened_wallet()
    with pytest.raises(MissingEventHandlerError, match="_when_wallet_renamed") as caught:
        wallet._apply_event(WalletRenamed(wallet_id="W-1", owner="Bob"))
    assert caught.value.method_name == "_when_wallet_renamed"
    assert wallet.version == 1  # nothing applied


def test_declared_ignored_events_are_skipped_but_counted() -> None:
    wallet = opened_wallet()
    wallet._apply_event(WalletAudited(wallet_id="W-1"))
    assert wallet.version == 2


def test_repository_round_trip_and_version() -> None:
    store = InMemoryEventStore()
    repo = AggregateRepository(event_store=store)
    wallet = opened_wallet(credits=3)
    repo.save(wallet)
    assert wallet.uncommitted_events == []
    loaded = repo.load(Wallet, "W-1")
    assert loaded == wallet
    assert loaded.version == 4
    loaded.credit(Decimal(10))
    repo.save(loaded)
    assert repo.load(Wallet, "W-1").balance == Decimal(16)


def test_missing_aggregate_is_not_found() -> None:
    repo = AggregateRepository(event_store=InMemoryEventStore())
    with pytest.raises(AggregateNotFoundError, match="Wallet 'nope' not found"):
        repo.load(Wallet, "nope")
    with pytest.raises(LookupError):
        repo.load(Wallet, "nope")


def test_stale_aggregate_save_is_a_concurrency_error() -> None:
    store = InMemoryEventStore()
    repo = AggregateRepository(event_store=store)
    repo.save(opened_wallet())
    first, second = repo.load(Wallet, "W-1"), repo.load(Wallet, "W-1")
    first.credit(Decimal(1))
    repo.save(first)
    second.credit(Decimal(2))
    with pytest.raises(ConcurrencyError) as caught:
        repo.save(second)
    assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
    assert second.uncommitted_events  # kept, so the caller can decide again
    assert repo.load(Wallet, "W-1").balance == Decimal(1)


def test_creating_an_existing_aggregate_again_conflicts() -> None:
    repo = AggregateRepository(event_store=InMemoryEventStore())
    repo.save(opened_wallet())
    with pytest.raises(ConcurrencyError):
        repo.save(opened_wallet())


def test_saving_without_id_or_changes() -> None:
    repo = AggregateRepository(event_store=InMemoryEventStore())
    with pytest.raises(ValueError, match="aggregate_id"):
        repo.save(opened_wallet(wallet_id=""))
    repo.save(Wallet(aggregate_id="W-9"))  # nothing to save: a no-op
    with pytest.raises(AggregateNotFoundError):
        repo.load(Wallet, "W-9")


def test_snapshots_are_taken_and_used() -> None:
    metrics = InMemoryMetricsProvider()
    hooks = ObservabilityHooks(metrics_provider=metrics)
    store = InMemoryEventStore(observability=hooks)
    repo = AggregateRepository(event_store=store, snapshot_every=5, observability=hooks)
    wallet = opened_wallet(credits=6)  # version 7: crosses 5
    repo.save(wallet)
    snapshot = store.load_snapshot("W-1")
    assert snapshot is not None and snapshot.version == 7
    assert snapshot.aggregate_type == "Wallet"
    assert snapshot.state["balance"] == "21"
    wallet.credit(Decimal(100))
    repo.save(wallet)  # version 8: no new snapshot
    assert store.load_snapshot("W-1").version == 7  # type: ignore[union-attr]
    snapshots_loaded_before = metrics.total("orchestrix.snapshots.loaded")
    loaded_events: list[int] = []
    hooks.on_event_loaded(lambda aggregate_id, count: loaded_events.append(count))
    loaded = repo.load(Wallet, "W-1")
    assert loaded == wallet and loaded.version == 8
    assert loaded_events == [1]  # only the event after the snapshot was read
    assert metrics.total("orchestrix.snapshots.loaded") == snapshots_loaded_before + 1


def test_a_state_that_would_not_restore_is_not_snapshotted_and_the_save_stands() -> None:
    store = InMemoryEventStore()
    errors: list[str] = []
    hooks = ObservabilityHooks()
    hooks.on_aggregate_error(lambda aggregate_id, error: errors.append(error))
    repo = AggregateRepository(event_store=store, snapshot_every=2, observability=hooks)
    wallet = opened_wallet(credits=2)
    wallet.owner = 7  # type: ignore[assignment]  # not a str: a snapshot would not restore it
    repo.save(wallet)
    assert store.stream_version("W-1") == 3 and store.load_snapshot("W-1") is None
    assert errors == [
        "snapshot not taken: Wallet.owner: expected str, got int 7",
    ]
    async_store = InMemoryAsyncEventStore()
    async_wallet = opened_wallet("W-2", credits=2)
    async_wallet.owner = 7  # type: ignore[assignment]
    asyncio.run(
        AggregateRepository(event_store=async_store, snapshot_every=2).save_async(async_wallet)
    )
    assert asyncio.run(async_store.stream_version("W-2")) == 3
    assert asyncio.run(async_store.load_snapshot_async("W-2")) is None


def test_unusable_snapshot_falls_back_to_a_full_replay() -> None:
    store = InMemoryEventStore()
    repo = AggregateRepository(event_store=store)
    repo.save(opened_wallet(credits=2))
    errors: list[str] = []
    hooks = ObservabilityHooks()
    hooks.on_aggregate_error(lambda aggregate_id, error: errors.append(error))
    repo = AggregateRepository(event_store=store, observability=hooks)
    # A snapshot taken before a field existed must not be trusted.
    store.save_snapshot(Snapshot("W-1", "Wallet", 2, {"owner": "Ann", "__snapshot_version__": 1}))
    loaded = repo.load(Wallet, "W-1")
    assert loaded.balance == Decimal(3) and loaded.history == [Decimal(1), Decimal(2)]
    assert errors and "lacks field" in errors[0]
    store.save_snapshot(Snapshot("W-1", "OtherType", 3, {}))
    assert repo.load(Wallet, "W-1").balance == Decimal(3)


def test_snapshot_version_bump_invalidates_old_snapshots() -> None:
    @dataclass
    class Wallet2(Wallet):
        snapshot_version: ClassVar[int] = 2

        @classmethod
        def snapshot_type(cls) -> str:
            return "Wallet"

    store = InMemoryEventStore()
    repo = AggregateRepository(event_store=store)
    wallet = opened_wallet(credits=2)
    repo.save(wallet)
    store.save_snapshot(wallet.to_snapshot())
    tampered = dict(wallet.to_snapshot().state, balance="999")
    store.save_snapshot(Snapshot("W-1", "Wallet", 3, tampered))
    assert repo.load(Wallet, "W-1").balance == Decimal(999)  # the snapshot is used
    assert repo.load(Wallet2, "W-1").balance == Decimal(3)  # version 1 snapshots ignored


def test_to_snapshot_refuses_unsaved_changes() -> None:
    with pytest.raises(ValueError, match="save the aggregate"):
        opened_wallet().to_snapshot()


def test_async_repository_with_async_store() -> None:
    async def scenario() -> tuple[Wallet, Any]:
        store = InMemoryAsyncEventStore()
        repo = AggregateRepository(event_store=store, snapshot_every=2)
        wallet = opened_wallet(credits=2)
        await repo.save_async(wallet)
        loaded = await repo.load_async(Wallet, "W-1")
        with pytest.raises(AggregateNotFoundError):
            await repo.load_async(Wallet, "W-404")
        return loaded, await store.load_snapshot_async("W-1")

    loaded, snapshot = asyncio.run(scenario())
    assert loaded.balance == Decimal(3) and loaded.version == 3
    assert snapshot.version == 3


def test_async_repository_works_with_a_sync_store() -> None:
    store = InMemoryEventStore()
    repo = AggregateRepository(event_store=store)
    asyncio.run(repo.save_async(opened_wallet(credits=1)))
    assert asyncio.run(repo.load_async(Wallet, "W-1")).balance == Decimal(1)


def test_sync_methods_refuse_an_async_store() -> None:
    repo = AggregateRepository(event_store=InMemoryAsyncEventStore())
    with pytest.raises(TypeError, match="load_async"):
        repo.load(Wallet, "W-1")
    with pytest.raises(TypeError, match="save_async"):
        repo.save(opened_wallet())


def test_snapshot_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="snapshot_every"):
        AggregateRepository(event_store=InMemoryEventStore(), snapshot_every=0)
