"""The Django projection state stores: the core contract, the row lock, the pause flag."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections, transaction
from django.db.transaction import TransactionManagementError

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection import ProjectionEngine, ProjectionState
from orchestrix.core.eventsourcing.projection_state import (
    AsyncProjectionStateStore,
    ProjectionStateStore,
)
from orchestrix.testing.projection_contract import (
    ProjectionContractItemAdded,
    ProjectionStateStoreContract,
)
from orchestrix_django.models import ProjectionStateRecord
from orchestrix_django.storage.projection_state import (
    DjangoAsyncProjectionStateStore,
    DjangoProjectionStateStore,
    StoredProjectionState,
)
from tests.django.waiting import watching_locks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def close_async_connections() -> Iterator[None]:
    """Close the connection of the thread ``sync_to_async`` ran the ORM in."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


def in_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[BaseException]]:
    """Start ``target`` in a thread that closes its connections; errors are collected."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


class TestDjangoProjectionStateStore(ProjectionStateStoreContract):
    def create_store(self) -> DjangoProjectionStateStore:
        return DjangoProjectionStateStore()

    def test_engine_resumes_from_the_saved_checkpoint(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # The engine is async and calls a sync store inside its event loop,
        # which Django refuses by default (SynchronousOnlyOperation): async
        # code uses DjangoAsyncProjectionStateStore (tested below). Here the
        # sync store's own behaviour is what is under test.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        super().test_engine_resumes_from_the_saved_checkpoint()


@pytest.mark.usefixtures("close_async_connections")
class TestDjangoAsyncProjectionStateStore(ProjectionStateStoreContract):
    def create_store(self) -> DjangoAsyncProjectionStateStore:
        return DjangoAsyncProjectionStateStore()


def test_the_stores_satisfy_the_protocols() -> None:
    assert isinstance(DjangoProjectionStateStore(), ProjectionStateStore)
    assert isinstance(DjangoAsyncProjectionStateStore(), AsyncProjectionStateStore)


def test_the_database_alias_is_read_from_the_settings_lazily(settings: Any) -> None:
    store = DjangoProjectionStateStore()
    settings.ORCHESTRIX = {**settings.ORCHESTRIX, "DATABASE": "other"}
    assert store.using == "other"
    assert DjangoProjectionStateStore(using="default").using == "default"


# -- the pause flag -----------------------------------------------------------------


def test_save_state_keeps_the_pause_flag() -> None:
    store = DjangoProjectionStateStore()
    store.save_state(ProjectionState(projection_id="p", last_processed_position=3))
    store.set_paused("p", True)
    store.save_state(ProjectionState(projection_id="p", last_processed_position=4))
    assert store.is_paused("p")
    loaded = store.load_state("p")
    assert loaded is not None
    assert loaded.last_processed_position == 4
    store.set_paused("p", False)
    assert not store.is_paused("p")
    assert store.load_state("p") == loaded  # pausing leaves the state alone


def test_pausing_a_projection_without_state_creates_a_default_row() -> None:
    store = DjangoProjectionStateStore()
    assert not store.is_paused("new")
    store.set_paused("new", True)
    assert store.is_paused("new")
    loaded = store.load_state("new")
    assert loaded is not None
    assert loaded.last_processed_position == 0
    assert loaded.is_healthy


def test_list_states_with_their_flags() -> None:
    store = DjangoProjectionStateStore()
    store.save_state(ProjectionState(projection_id="b", last_processed_position=2))
    store.save_state(ProjectionState(projection_id="a", last_processed_position=1))
    store.set_paused("b", True)
    listed = store.list_states()
    assert [(item.projection_id, item.paused) for item in listed] == [("a", False), ("b", True)]
    assert [item.state.last_processed_position for item in listed] == [1, 2]
    store.delete_state("b")
    assert [item.projection_id for item in store.list_states()] == ["a"]


def test_async_helpers(close_async_connections: None) -> None:
    store = DjangoAsyncProjectionStateStore()

    async def scenario() -> list[StoredProjectionState]:
        await store.save_state(ProjectionState(projection_id="x"))
        await store.set_paused("x", True)
        assert await store.is_paused("x")
        return await store.list_states()

    (listed,) = asyncio.run(scenario())
    assert listed.paused
    assert listed.state.projection_id == "x"


# -- the row lock ----------------------------------------------------------------------


def test_lock_outside_a_transaction_is_refused() -> None:
    store = DjangoProjectionStateStore()
    with pytest.raises(TransactionManagementError, match=r"transaction\.atomic"), store.lock("p"):
        pass


def test_lock_creates_a_missing_row_and_yields_its_state() -> None:
    store = DjangoProjectionStateStore()
    with transaction.atomic(), store.lock("fresh") as locked:
        assert locked.state.projection_id == "fresh"
        assert locked.state.last_processed_position == 0
        assert locked.paused is False
    assert ProjectionStateRecord.objects.filter(pk="fresh").exists()
    store.save_state(ProjectionState(projection_id="fresh", last_processed_position=7))
    store.set_paused("fresh", True)
    with transaction.atomic(), store.lock("fresh") as locked:
        assert locked.state.last_processed_position == 7
        assert locked.paused is True


def test_update_locked_saves_the_state_and_keeps_the_flag() -> None:
    store = DjangoProjectionStateStore()
    store.set_paused("held", True)
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    saved = ProjectionState(
        projection_id="held",
        last_processed_event_id="e-9",
        last_processed_position=9,
        events_processed=4,
        error_count=1,
        is_healthy=False,
        last_error="boom",
        updated_at=moment,
    )
    with transaction.atomic(), store.lock("held"):
        store.update_locked(saved)
    with transaction.atomic(), store.lock("held") as locked:
        assert locked.state == saved and locked.paused is True
    assert store.load_state("held") == saved
    with pytest.raises(TransactionManagementError, match="lock it first"):
        store.update_locked(ProjectionState(projection_id="never-locked"))


@pytest.mark.parametrize("existing", [True, False], ids=["existing-row", "missing-row"])
def test_a_second_locker_waits_until_the_first_commits(existing: bool) -> None:
    """The runner's guarantee: one advancer per projection, the next one sees its work.

    PostgreSQL and MySQL/MariaDB block the second ``SELECT … FOR UPDATE`` on
    the row lock (or, for a missing row, the second insert on the first's
    uncommitted insert). SQLite has no row locks: ``lock`` writes first, so
    the second locker waits for the database write lock, which the first
    holds until its commit. Either way the same assertions hold: the second
    locker gets in only after the first committed, and sees its checkpoint.
    """
    store = DjangoProjectionStateStore()
    projection_id = f"locked-{uuid.uuid4().hex[:8]}"
    if existing:
        store.save_state(ProjectionState(projection_id=projection_id, last_processed_position=1))
    first_locked, release_first = threading.Event(), threading.Event()
    first_committed_at: list[float] = []
    second_locked_at: list[float] = []
    seen_by_second: list[ProjectionState] = []

    def first() -> None:
        with transaction.atomic(), store.lock(projection_id):
            first_locked.set()
            assert release_first.wait(30)
            store.save_state(
                ProjectionState(projection_id=projection_id, last_processed_position=42)
            )
        first_committed_at.append(time.monotonic())

    def second() -> None:
        with transaction.atomic(), store.lock(projection_id) as locked:
            second_locked_at.append(time.monotonic())
            seen_by_second.append(locked.state)

    first_thread, first_errors = in_thread(first)
    assert first_locked.wait(30)
    watched_second, second_waits = watching_locks(second)
    second_thread, second_errors = in_thread(watched_second)
    second_waits("the second locker waits for the first one's lock")
    assert second_locked_at == [], "the second locker got in while the first held the lock"
    release_first.set()
    first_thread.join(30)
    second_thread.join(30)
    assert first_errors == [] and second_errors == []
    assert len(second_locked_at) == 1
    assert second_locked_at[0] >= first_committed_at[0] - 0.05
    assert seen_by_second[0].last_processed_position == 42


def test_lockers_racing_on_a_new_projection_lose_no_update() -> None:
    """Each locker reads the checkpoint and writes it + 1: a lost update would show."""
    store = DjangoProjectionStateStore()
    projection_id = f"counter-{uuid.uuid4().hex[:8]}"
    lockers, rounds = 4, 5
    barrier = threading.Barrier(lockers)

    def advance() -> None:
        barrier.wait()
        for _ in range(rounds):
            with transaction.atomic(), store.lock(projection_id) as locked:
                current = locked.state
                time.sleep(0.005)  # widen the window a missing lock would open
                store.save_state(
                    dataclasses.replace(
                        current,
                        last_processed_position=current.last_processed_position + 1,
                        events_processed=current.events_processed + 1,
                        updated_at=datetime.now(UTC),
                    )
                )

    started = [in_thread(advance) for _ in range(lockers)]
    for thread, _errors in started:
        thread.join(120)
    assert [error for _thread, errors in started for error in errors] == []
    final = store.load_state(projection_id)
    assert final is not None
    assert final.last_processed_position == lockers * rounds
    assert final.events_processed == lockers * rounds


def test_a_runner_commits_the_checkpoint_in_its_locked_transaction(
    close_async_connections: None,
) -> None:
    """How a runner drives the async engine inside its transaction.

    ``async_to_sync`` called in the thread that holds the transaction makes the
    async store's ``sync_to_async`` calls run back in that thread, on its
    connection: the engine's checkpoint then commits or rolls back with the
    read model's writes and the lock.
    """
    store = DjangoAsyncProjectionStateStore()
    projection_id = f"runner-{uuid.uuid4().hex[:8]}"
    events = [
        StoredEvent(
            position=n, stream_id="cart", version=n, event=ProjectionContractItemAdded(item=str(n))
        )
        for n in (1, 2)
    ]

    class Crash(Exception):
        pass

    def run_batch(crash: bool) -> None:
        engine = ProjectionEngine(projection_id, store, checkpoint_every=None)
        with transaction.atomic(), store.sync_store.lock(projection_id):
            async_to_sync(engine.process_events)(events)
            if crash:
                raise Crash

    with pytest.raises(Crash):
        run_batch(crash=True)
    rolled_back = store.sync_store.load_state(projection_id)
    assert rolled_back is None  # the lock's row and the checkpoint went with the rollback
    run_batch(crash=False)
    committed = store.sync_store.load_state(projection_id)
    assert committed is not None
    assert committed.last_processed_position == 2
    assert committed.events_processed == 2
