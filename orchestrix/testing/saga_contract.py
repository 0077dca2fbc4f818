"""The contract every saga state store passes.

Subclass :class:`SagaStateStoreContract` in a pytest test module and implement
:meth:`~SagaStateStoreContract.create_store` (returning a fresh, empty store,
sync or async)::

    class TestInMemorySagaStateStore(SagaStateStoreContract):
        def create_store(self) -> InMemorySagaStateStore:
            return InMemorySagaStateStore()

The methods are plain sync ``test_*`` methods (no pytest import, no plugin):
an async store's coroutines are run with :func:`asyncio.run`. A store whose
racing writers need something other than two threads (a database test case,
say) overrides :meth:`~SagaStateStoreContract.run_in_parallel`.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.execution.saga import SagaState, SagaStatus
from orchestrix.core.execution.saga_state import StepRecord, StepStatus

__all__ = ["SagaStateStoreContract", "assert_raises"]


class _Raised:
    """What :func:`assert_raises` caught (``error`` is set once the block has raised)."""

    error: BaseException | None = None


@contextmanager
def assert_raises(kind: type[BaseException]) -> Iterator[_Raised]:
    """Fail unless the block raises ``kind``; the error is kept for inspection."""
    caught = _Raised()
    try:
        yield caught
    except kind as error:
        caught.error = error
    else:
        raise AssertionError(f"{kind.__name__} was not raised")


async def _await(awaitable: Any) -> Any:
    return await awaitable


class SagaStateStoreContract(ABC):
    """Tests of the :class:`~orchestrix.core.execution.saga.SagaStateStore` semantics."""

    @abstractmethod
    def create_store(self) -> Any:
        """A new, empty store (a SagaStateStore or a SyncSagaStateStore)."""

    # -- helpers -------------------------------------------------------------

    def call(self, result: Any) -> Any:
        """The value of a store call, running it to completion if it is awaitable."""
        if inspect.isawaitable(result):
            return asyncio.run(_await(result))
        return result

    def run_in_parallel(self, *functions: Callable[[], Any]) -> list[Any]:
        """Run ``functions`` at the same time; each outcome is a value or the exception.

        Threads started together behind a barrier, by default.
        """
        outcomes: list[Any] = [None] * len(functions)
        barrier = threading.Barrier(len(functions))

        def run(index: int, function: Callable[[], Any]) -> None:
            barrier.wait()
            try:
                outcomes[index] = function()
            except BaseException as error:
                outcomes[index] = error

        threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(functions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return outcomes

    def make_state(
        self,
        saga_id: str = "saga-1",
        saga_type: str = "order-fulfillment",
        status: SagaStatus = SagaStatus.IN_PROGRESS,
        created_at: datetime | None = None,
    ) -> SagaState:
        """A state with every field set, including results that are nested dicts."""
        created = created_at or datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
        return SagaState(
            saga_id=saga_id,
            saga_type=saga_type,
            status=status,
            current_step="charge_payment",
            steps=[
                StepRecord(
                    name="reserve_inventory",
                    status=StepStatus.COMPLETED,
                    attempts=2,
                    result={"reservation": {"id": "R-1", "items": [1, 2, 3]}, "ok": True},
                    started_at=created + timedelta(seconds=1),
                    finished_at=created + timedelta(seconds=2),
                ),
                StepRecord(
                    name="charge_payment",
                    status=StepStatus.COMPENSATION_FAILED,
                    attempts=1,
                    result={"charged": Decimal("99.99"), "at": created},
                    error="RuntimeError: card declined",
                    started_at=created + timedelta(seconds=3),
                    finished_at=created + timedelta(seconds=4),
                    compensated_at=None,
                    compensation_attempts=3,
                    compensation_error="TimeoutError: gateway",
                ),
                StepRecord(
                    name="ship_order",
                    status=StepStatus.COMPENSATED,
                    result=None,
                    compensated_at=created + timedelta(seconds=5),
                ),
                StepRecord(name="notify"),
            ],
            kwargs={"order_id": "ORD-001", "amount": 99.99, "lines": [{"sku": "A", "qty": 2}]},
            error="step 'charge_payment' failed: RuntimeError: card declined",
            correlation_id="corr-1",
            causation_id="cause-1",
            trace_id="trace-1",
            created_at=created,
            updated_at=created + timedelta(seconds=6),
        )

    # -- round trip ------------------------------------------------------------

    def test_save_and_load_round_trip_every_field(self) -> None:
        store = self.create_store()
        state = self.make_state()
        saved = self.call(store.save(state))
        assert isinstance(saved, SagaState)
        assert saved.version == 1
        loaded = self.call(store.load("saga-1"))
        assert loaded is not None
        expected = state.copy()
        expected.version = 1
        assert loaded == expected
        assert saved == expected
        assert loaded.steps[1].result["charged"] == Decimal("99.99")
        assert isinstance(loaded.steps[1].result["charged"], Decimal)
        assert loaded.status is SagaStatus.IN_PROGRESS
        assert loaded.steps[0].status == StepStatus.COMPLETED
        for stamp in (loaded.created_at, loaded.updated_at, loaded.steps[0].started_at):
            assert stamp is not None
            assert stamp.utcoffset() == timedelta(0)

    def test_round_trip_of_every_status(self) -> None:
        store = self.create_store()
        for index, status in enumerate(SagaStatus):
            self.call(store.save(self.make_state(saga_id=f"s-{index}", status=status)))
        for index, status in enumerate(SagaStatus):
            loaded = self.call(store.load(f"s-{index}"))
            assert loaded is not None
            assert loaded.status is status

    def test_minimal_state_round_trips(self) -> None:
        store = self.create_store()
        state = SagaState(saga_id="bare", saga_type="t")
        self.call(store.save(state))
        loaded = self.call(store.load("bare"))
        assert loaded is not None
        assert loaded.steps == []
        assert loaded.kwargs == {}
        assert loaded.current_step is None
        assert loaded.error is None
        assert loaded.correlation_id is None
        assert loaded.status is SagaStatus.PENDING

    def test_load_of_a_missing_id_is_none(self) -> None:
        store = self.create_store()
        assert self.call(store.load("nope")) is None
        # Ids come from URLs too; no stored id holds a NUL (PostgreSQL cannot even compare one).
        assert self.call(store.load("no\x00pe")) is None

    def test_save_does_not_change_the_callers_state(self) -> None:
        store = self.create_store()
        state = self.make_state()
        self.call(store.save(state))
        assert state.version == 0

    # -- optimistic locking ------------------------------------------------------

    def test_each_save_increments_the_version(self) -> None:
        store = self.create_store()
        saved = self.call(store.save(self.make_state()))
        assert saved.version == 1
        loaded = self.call(store.load("saga-1"))
        loaded.status = SagaStatus.COMPLETED
        saved = self.call(store.save(loaded))
        assert saved.version == 2
        reloaded = self.call(store.load("saga-1"))
        assert reloaded.version == 2
        assert reloaded.status is SagaStatus.COMPLETED

    def test_saving_a_stale_version_raises_concurrency_error(self) -> None:
        store = self.create_store()
        self.call(store.save(self.make_state()))
        first = self.call(store.load("saga-1"))
        second = self.call(store.load("saga-1"))
        self.call(store.save(first))
        with assert_raises(ConcurrencyError) as raised:
            self.call(store.save(second))
        error = raised.error
        assert isinstance(error, ConcurrencyError)
        assert error.aggregate_id == "saga-1"
        assert error.expected_version == 1
        assert error.actual_version == 2
        # The losing write changed nothing.
        assert self.call(store.load("saga-1")).version == 2

    def test_saving_a_new_state_over_an_existing_one_raises(self) -> None:
        store = self.create_store()
        self.call(store.save(self.make_state()))
        with assert_raises(ConcurrencyError) as raised:
            self.call(store.save(self.make_state()))
        error = raised.error
        assert isinstance(error, ConcurrencyError)
        assert (error.expected_version, error.actual_version) == (0, 1)

    def test_saving_a_version_of_a_missing_state_raises(self) -> None:
        store = self.create_store()
        state = self.make_state()
        state.version = 3
        with assert_raises(ConcurrencyError) as raised:
            self.call(store.save(state))
        error = raised.error
        assert isinstance(error, ConcurrencyError)
        assert (error.aggregate_id, error.expected_version, error.actual_version) == (
            "saga-1",
            3,
            0,
        )
        assert self.call(store.load("saga-1")) is None

    def test_racing_saves_of_one_loaded_state_have_exactly_one_winner(self) -> None:
        store = self.create_store()
        self.call(store.save(self.make_state()))
        for round_number in range(5):
            base = self.call(store.load("saga-1"))
            copies = [base.copy() for _ in range(2)]
            for index, state in enumerate(copies):
                state.error = f"writer {index} round {round_number}"
            outcomes = self.run_in_parallel(
                *(lambda s=state: self.call(store.save(s)) for state in copies)
            )
            winners = [o for o in outcomes if isinstance(o, SagaState)]
            losers = [o for o in outcomes if isinstance(o, ConcurrencyError)]
            assert len(winners) == 1, outcomes
            assert len(losers) == 1, outcomes
            stored = self.call(store.load("saga-1"))
            assert stored.version == base.version + 1
            assert stored.error == winners[0].error

    # -- listing ----------------------------------------------------------------

    def _fill(self, store: Any) -> None:
        start = datetime(2024, 1, 1, tzinfo=UTC)
        rows = [
            ("a", "order", SagaStatus.COMPLETED),
            ("b", "order", SagaStatus.FAILED),
            ("c", "refund", SagaStatus.COMPLETED),
            ("d", "order", SagaStatus.IN_PROGRESS),
        ]
        for offset, (saga_id, saga_type, status) in enumerate(rows):
            state = self.make_state(
                saga_id=saga_id,
                saga_type=saga_type,
                status=status,
                created_at=start + timedelta(minutes=offset),
            )
            self.call(store.save(state))

    def test_list_without_filters_returns_everything_oldest_first(self) -> None:
        store = self.create_store()
        self._fill(store)
        assert [s.saga_id for s in self.call(store.list())] == ["a", "b", "c", "d"]

    def test_list_filters_by_status(self) -> None:
        store = self.create_store()
        self._fill(store)
        completed = self.call(store.list(status=SagaStatus.COMPLETED))
        assert [s.saga_id for s in completed] == ["a", "c"]
        assert all(s.status is SagaStatus.COMPLETED for s in completed)
        assert self.call(store.list(status=SagaStatus.COMPENSATING)) == []

    def test_list_filters_by_type(self) -> None:
        store = self.create_store()
        self._fill(store)
        assert [s.saga_id for s in self.call(store.list(saga_type="order"))] == ["a", "b", "d"]
        assert self.call(store.list(saga_type="unknown")) == []

    def test_list_filters_by_status_and_type(self) -> None:
        store = self.create_store()
        self._fill(store)
        found = self.call(store.list(status=SagaStatus.COMPLETED, saga_type="order"))
        assert [s.saga_id for s in found] == ["a"]

    def test_list_returns_full_states_with_versions(self) -> None:
        store = self.create_store()
        self._fill(store)
        (listed,) = self.call(store.list(status=SagaStatus.IN_PROGRESS))
        loaded = self.call(store.load("d"))
        assert listed == loaded
        assert listed.version == 1

    # -- no aliasing ---------------------------------------------------------------

    def test_the_stored_state_is_not_aliased_with_the_callers(self) -> None:
        store = self.create_store()
        state = self.make_state()
        saved = self.call(store.save(state))
        # Change everything the caller still holds…
        state.steps[0].result["reservation"]["items"].append(4)
        state.kwargs["order_id"] = "changed"
        state.steps.append(StepRecord(name="extra"))
        saved.steps[0].result["ok"] = False
        saved.kwargs["amount"] = 0
        loaded = self.call(store.load("saga-1"))
        # …and the store still has what was saved.
        assert loaded.steps[0].result == {
            "reservation": {"id": "R-1", "items": [1, 2, 3]},
            "ok": True,
        }
        assert loaded.kwargs["order_id"] == "ORD-001"
        assert loaded.kwargs["amount"] == 99.99
        assert len(loaded.steps) == 4
        # A loaded copy is the caller's too.
        loaded.steps[0].status = StepStatus.FAILED
        loaded.kwargs.clear()
        again = self.call(store.load("saga-1"))
        assert again.steps[0].status == StepStatus.COMPLETED
        assert again.kwargs["order_id"] == "ORD-001"
        (listed,) = self.call(store.list())
        listed.steps.clear()
        assert len(self.call(store.load("saga-1")).steps) == 4
