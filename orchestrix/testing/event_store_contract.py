"""The contract every event store implementation must pass.

Subclass :class:`EventStoreContract` (sync stores) or
:class:`AsyncEventStoreContract` (async stores) in a pytest module and
implement ``create_store``; every ``test_*`` method then runs against your
store. Stores with a global log also mix in :class:`GlobalEventLogContract`.
The suite imports only the standard library, so it can live in the core
package; it uses plain ``assert`` (register ``orchestrix.testing`` for
pytest's assertion rewriting to get detailed failures).

Example::

    class TestMyStore(EventStoreContract, GlobalEventLogContract):
        def create_store(self):
            return MyStore()
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from orchestrix.core.common.exceptions import ConcurrencyError, DuplicateEventError, EncodeError
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix.core.messaging.message import Event
from orchestrix.testing.events import (
    ContractAccountKind,
    ContractAccountOpened,
    ContractDeposited,
    ContractNote,
)

__all__ = [
    "AsyncEventStoreContract",
    "EventStoreContract",
    "GlobalEventLogContract",
    "raises",
]


@contextmanager
def raises(expected: type[BaseException] | tuple[type[BaseException], ...]) -> Iterator[list[Any]]:
    """Assert that the block raises ``expected``; the caught error is ``caught[0]``."""
    caught: list[Any] = []
    try:
        yield caught
    except expected as error:
        caught.append(error)
    else:
        raise AssertionError(f"expected {expected} to be raised, nothing was")


def _new_stream(prefix: str = "stream") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def deposits(account_id: str, count: int, start: int = 1) -> list[Event]:
    """``count`` ContractDeposited events numbered from ``start``."""
    return [
        ContractDeposited(account_id=account_id, amount=Decimal(f"{n}.50"), sequence=n)
        for n in range(start, start + count)
    ]


def rich_event(account_id: str) -> ContractAccountOpened:
    """An event using every kind of field and every metadata attribute."""
    return ContractAccountOpened(
        account_id=account_id,
        owner="Zoë O'Brien",
        kind=ContractAccountKind.SAVINGS,
        opened_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        reference=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        notes=[
            ContractNote("first", date(2024, 1, 1)),
            ContractNote("ünïcode ✓", date(2000, 2, 29)),
        ],
        limits={"daily": Decimal("1000.00"), "monthly": Decimal("1E+4")},
        subject="accounts/1",
        source="contract-suite",
        correlation_id="corr-1",
        causation_id="cause-1",
        trace_id="trace-1",
        data={"note": "cloudevents payload", "n": 1},
        timestamp=datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
    )


def _saver(
    store: Any, stream: str, events: list[Event], expected_version: int | None
) -> Callable[[], None]:
    def save() -> None:
        store.save(stream, events, expected_version=expected_version)

    return save


class EventStoreContract:
    """Behaviour every :class:`EventStore` must have (see the module docs)."""

    #: How many writers race in the concurrency tests.
    racing_writers = 8

    def create_store(self) -> Any:
        """Return a new, empty store (implement in the subclass)."""
        raise NotImplementedError

    # -- helpers a subclass may override --------------------------------------

    def race(self, store: Any, calls: Sequence[Callable[[], None]]) -> list[BaseException | None]:
        """Run ``calls`` at the same time; return each call's error (None if it succeeded).

        Threads by default; override to race processes.
        """
        barrier = threading.Barrier(len(calls))
        outcomes: list[BaseException | None] = [None] * len(calls)

        def run(index: int, call: Callable[[], None]) -> None:
            barrier.wait()
            try:
                call()
            except BaseException as error:
                outcomes[index] = error

        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return outcomes

    # -- empty streams and round trips -----------------------------------------

    def test_missing_stream_loads_as_empty(self) -> None:
        store = self.create_store()
        assert store.load(_new_stream()) == []
        assert store.load(_new_stream(), from_version=5) == []

    def test_round_trip_preserves_every_field(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        event = rich_event(stream)
        store.save(stream, [event])
        [loaded] = store.load(stream)
        assert type(loaded) is ContractAccountOpened
        assert loaded == event
        assert loaded.id == event.id
        assert loaded.timestamp == event.timestamp
        assert loaded.timestamp.utcoffset() == timedelta(0)
        assert loaded.limits["monthly"] == Decimal("1E+4")
        assert str(loaded.limits["daily"]) == "1000.00"
        assert loaded.notes[1].written_on == date(2000, 2, 29)

    def test_default_metadata_round_trips(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        event = ContractDeposited(account_id=stream, amount=Decimal("0.1"))
        store.save(stream, [event])
        [loaded] = store.load(stream)
        assert loaded == event
        assert loaded.type == "ContractDeposited"
        assert loaded.correlation_id is None and loaded.data is None

    def test_events_keep_their_order(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 3))
        store.save(stream, deposits(stream, 4, start=4))
        assert [e.sequence for e in store.load(stream)] == [1, 2, 3, 4, 5, 6, 7]

    def test_empty_save_stores_nothing(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, [])
        store.save(stream, [], expected_version=0)
        assert store.load(stream) == []

    # -- version numbering ------------------------------------------------------

    def test_from_version_returns_events_after_it(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 5))
        assert [e.sequence for e in store.load(stream, from_version=0)] == [1, 2, 3, 4, 5]
        assert [e.sequence for e in store.load(stream, from_version=2)] == [3, 4, 5]
        assert store.load(stream, from_version=5) == []
        assert store.load(stream, from_version=50) == []

    def test_expected_version_counts_events(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 2), expected_version=0)
        store.save(stream, deposits(stream, 3, start=3), expected_version=2)
        store.save(stream, deposits(stream, 1, start=6), expected_version=5)
        assert len(store.load(stream)) == 6

    def test_expected_version_zero_means_the_stream_must_be_new(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 1), expected_version=0)
        with raises(ConcurrencyError) as caught:
            store.save(stream, deposits(stream, 1, start=2), expected_version=0)
        error = caught[0]
        assert (error.aggregate_id, error.expected_version, error.actual_version) == (stream, 0, 1)

    def test_concurrency_error_says_all_three_and_stores_nothing(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 3))
        with raises(ConcurrencyError) as caught:
            store.save(stream, deposits(stream, 2, start=4), expected_version=1)
        error = caught[0]
        assert error.aggregate_id == stream
        assert error.expected_version == 1
        assert error.actual_version == 3
        text = str(error)
        assert stream in text and "1" in text and "3" in text
        assert [e.sequence for e in store.load(stream)] == [1, 2, 3]

    def test_expected_version_ahead_of_the_stream_is_a_conflict(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        with raises(ConcurrencyError) as caught:
            store.save(stream, deposits(stream, 1), expected_version=4)
        assert caught[0].actual_version == 0
        assert store.load(stream) == []

    def test_expected_version_none_does_not_check(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 2))
        store.save(stream, deposits(stream, 2, start=3), expected_version=None)
        assert len(store.load(stream)) == 4

    # -- idempotency and atomicity --------------------------------------------

    def test_retried_save_stores_the_events_once(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        batch = deposits(stream, 3)
        store.save(stream, batch, expected_version=0)
        store.save(stream, batch, expected_version=0)  # the retry of a lost reply
        store.save(stream, batch)
        assert [e.id for e in store.load(stream)] == [e.id for e in batch]

    def test_partially_stored_batch_is_refused(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        first = deposits(stream, 2)
        store.save(stream, first)
        with raises(DuplicateEventError):
            store.save(stream, [first[1], *deposits(stream, 1, start=3)])
        assert [e.id for e in store.load(stream)] == [e.id for e in first]

    def test_event_stored_in_another_stream_is_refused(self) -> None:
        store = self.create_store()
        one, two = _new_stream(), _new_stream()
        batch = deposits(one, 1)
        store.save(one, batch)
        with raises(DuplicateEventError):
            store.save(two, batch)
        assert store.load(two) == []

    def test_duplicate_ids_within_one_save_are_refused(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        [event] = deposits(stream, 1)
        with raises(ValueError):
            store.save(stream, [event, event])
        assert store.load(stream) == []

    def test_bad_arguments_are_refused(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        with raises(ValueError):
            store.save("", deposits(stream, 1))
        with raises(ValueError):
            store.save(stream, deposits(stream, 1), expected_version=-1)
        with raises(TypeError):
            store.save(stream, [object()])
        with raises(ValueError):
            store.load(stream, from_version=-1)
        # Beyond the 64-bit range every store can hold: refused, not overflowed.
        with raises(ValueError):
            store.save(stream, deposits(stream, 1), expected_version=2**63)
        with raises(ValueError):
            store.load(stream, from_version=2**63)
        with raises(TypeError):
            store.load(stream, from_version="1")
        assert store.load(stream) == []

    def test_an_event_that_would_not_load_back_equal_is_refused_whole(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        sound = deposits(stream, 1)
        wrong: list[tuple[Event, str, str]] = [
            # (event, the field named, what the annotation takes)
            (ContractDeposited(account_id=stream, amount="12"), "amount", "Decimal"),  # type: ignore[arg-type]
            (
                ContractDeposited(account_id=stream, amount=Decimal(1), sequence=True),
                "sequence",
                "int",
            ),
            (
                ContractAccountOpened(account_id=stream, owner="o", opened_at=datetime(2024, 1, 1)),
                "opened_at",
                "timezone-aware",
            ),
            (
                ContractAccountOpened(
                    account_id=stream,
                    owner="o",
                    notes=[ContractNote("a", date(2024, 1, 1)), ContractNote("b", "2024-01-02")],  # type: ignore[arg-type]
                ),
                "notes[1].written_on",
                "date",
            ),
            (ContractAccountOpened(account_id=stream, owner="o", kind="savings"), "kind", "member"),  # type: ignore[arg-type]
        ]
        for event, field, expected in wrong:
            with raises(EncodeError) as caught:
                store.save(stream, [*sound, event])
            error = caught[0]
            assert (error.event_type, error.field) == (event.type, field), error
            assert expected in error.expected and expected in str(error), error
            assert store.load(stream) == []  # nothing of the save is stored

    # -- many streams ------------------------------------------------------------

    def test_streams_are_independent(self) -> None:
        store = self.create_store()
        streams = [_new_stream() for _ in range(20)]
        for n, stream in enumerate(streams):
            store.save(stream, deposits(stream, n % 4 + 1), expected_version=0)
        for n, stream in enumerate(streams):
            loaded = store.load(stream)
            assert len(loaded) == n % 4 + 1
            assert {e.account_id for e in loaded} == {stream}

    def test_racing_writers_on_one_stream_have_exactly_one_winner(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 1))
        batches = [deposits(stream, 2, start=10 * (n + 1)) for n in range(self.racing_writers)]
        outcomes = self.race(
            store, [_saver(store, stream, batch, expected_version=1) for batch in batches]
        )
        winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
        losers = [o for o in outcomes if o is not None]
        assert len(winners) == 1, outcomes
        assert all(isinstance(o, ConcurrencyError) for o in losers), losers
        assert all(
            isinstance(o, ConcurrencyError) and (o.expected_version, o.actual_version) == (1, 3)
            for o in losers
        ), losers
        stored = store.load(stream)
        assert [e.id for e in stored[1:]] == [e.id for e in batches[winners[0]]]

    def test_racing_writers_on_different_streams_all_win(self) -> None:
        store = self.create_store()
        streams = [_new_stream() for _ in range(self.racing_writers)]
        outcomes = self.race(
            store, [_saver(store, s, deposits(s, 3), expected_version=0) for s in streams]
        )
        assert outcomes == [None] * len(streams)
        assert all(len(store.load(s)) == 3 for s in streams)

    # -- snapshots -------------------------------------------------------------

    def test_no_snapshot_is_none(self) -> None:
        store = self.create_store()
        assert store.load_snapshot(_new_stream()) is None

    def test_snapshot_round_trip_and_the_snapshot_pattern(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 5))
        snapshot = Snapshot(stream, "Account", 3, {"balance": "7.50", "owners": ["a", "b"]})
        store.save_snapshot(snapshot)
        loaded = store.load_snapshot(stream)
        assert loaded is not None
        assert (loaded.aggregate_id, loaded.aggregate_type, loaded.version) == (
            stream,
            "Account",
            3,
        )
        assert loaded.state == {"balance": "7.50", "owners": ["a", "b"]}
        assert loaded.timestamp == snapshot.timestamp
        rest = store.load(stream, from_version=loaded.version)
        assert [e.sequence for e in rest] == [4, 5]

    def test_newer_snapshot_replaces_older_and_older_is_ignored(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 6))
        store.save_snapshot(Snapshot(stream, "Account", 2, {"n": 2}))
        store.save_snapshot(Snapshot(stream, "Account", 5, {"n": 5}))
        store.save_snapshot(Snapshot(stream, "Account", 4, {"n": 4}))
        loaded = store.load_snapshot(stream)
        assert loaded is not None and loaded.version == 5 and loaded.state == {"n": 5}

    def test_snapshot_ahead_of_its_stream_is_refused(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 2))
        with raises(ValueError):
            store.save_snapshot(Snapshot(stream, "Account", 3, {}))
        assert store.load_snapshot(stream) is None


class GlobalEventLogContract:
    """Behaviour of a store's global log (``read_all`` / ``head_position``)."""

    def create_store(self) -> Any:
        """Return a new, empty store (implement in the subclass)."""
        raise NotImplementedError

    def _all(self, store: Any, page: int = 7) -> list[StoredEvent]:
        records: list[StoredEvent] = []
        after = 0
        while True:
            batch = store.read_all(after_position=after, limit=page)
            assert len(batch) <= page
            if not batch:
                return records
            records.extend(batch)
            after = batch[-1].position

    def test_empty_log(self) -> None:
        store = self.create_store()
        assert store.read_all(after_position=0, limit=10) == []
        assert store.head_position() == 0

    def test_log_holds_every_event_once_in_position_order(self) -> None:
        store = self.create_store()
        streams = [_new_stream() for _ in range(5)]
        saved: list[Event] = []
        for round_ in range(3):
            for stream in streams:
                batch = deposits(stream, 2, start=2 * round_ + 1)
                store.save(stream, batch)
                saved.extend(batch)
        records = self._all(store)
        assert [r.event.id for r in records] == [e.id for e in saved]
        positions = [r.position for r in records]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        assert store.head_position() == positions[-1]
        for stream in streams:
            versions = [r.version for r in records if r.stream_id == stream]
            assert versions == [1, 2, 3, 4, 5, 6]

    def test_reading_after_a_position_and_limits(self) -> None:
        store = self.create_store()
        stream = _new_stream()
        store.save(stream, deposits(stream, 10))
        first = store.read_all(after_position=0, limit=4)
        assert [r.version for r in first] == [1, 2, 3, 4]
        rest = store.read_all(after_position=first[-1].position, limit=100)
        assert [r.version for r in rest] == [5, 6, 7, 8, 9, 10]
        assert store.read_all(after_position=rest[-1].position, limit=100) == []
        assert isinstance(first[0].event, ContractDeposited)
        assert first[0].stream_id == stream

    def test_bad_limit_is_refused(self) -> None:
        store = self.create_store()
        with raises(ValueError):
            store.read_all(after_position=0, limit=0)
        with raises(ValueError):
            store.read_all(after_position=2**63, limit=10)
        with raises(TypeError):
            store.read_all(after_position="0", limit=10)
        # Before the first position is the start of the log.
        assert store.read_all(after_position=-5, limit=10) == store.read_all(0, limit=10)


class _SyncFacade:
    """Drives an async store through the sync contract, one event loop per call."""

    _SNAPSHOT_METHODS = {
        "save_snapshot": "save_snapshot_async",
        "load_snapshot": "load_snapshot_async",
    }

    def __init__(self, store: Any, run: Callable[[Any], Any]) -> None:
        self._store = store
        self._run = run

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, self._SNAPSHOT_METHODS.get(name, name))

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._run(method(*args, **kwargs))

        return call


class AsyncEventStoreContract(EventStoreContract):
    """The same contract for an :class:`AsyncEventStore` (snapshots: ``*_async``).

    Implement ``create_async_store``. Each call runs in ``run_coroutine``
    (``asyncio.run`` by default; override to use another loop).
    """

    def create_async_store(self) -> Any:
        """Return a new, empty async store (implement in the subclass)."""
        raise NotImplementedError

    def run_coroutine(self, coroutine: Any) -> Any:
        """Run one coroutine to completion."""
        return asyncio.run(coroutine)

    def create_store(self) -> Any:
        """The async store behind a synchronous facade."""
        return _SyncFacade(self.create_async_store(), self.run_coroutine)

    def test_concurrent_tasks_on_one_stream_have_exactly_one_winner(self) -> None:
        store = self.create_async_store()
        stream = _new_stream()

        async def scenario() -> list[BaseException | None]:
            batches = [deposits(stream, 1, start=n + 1) for n in range(self.racing_writers)]
            outcomes = await asyncio.gather(
                *(store.save(stream, batch, expected_version=0) for batch in batches),
                return_exceptions=True,
            )
            return list(outcomes)

        outcomes = self.run_coroutine(scenario())
        assert sum(1 for o in outcomes if o is None) == 1, outcomes
        assert all(isinstance(o, ConcurrencyError) for o in outcomes if o is not None)
        assert len(self.run_coroutine(store.load(stream))) == 1
