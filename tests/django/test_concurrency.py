"""Writers in separate processes: one winner per version, retries stored once,
and a global log that never loses an event to out-of-order commits.

Every test runs on the database of the run (SQLite, PostgreSQL, MariaDB).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connections, transaction

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix_django.models import EventRecord
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp.events import MoneyDeposited
from tests.django.waiting import watching_locks
from tests.django.worker_pool import run_workers

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 6


def deposit(stream: str, amount: int = 1) -> MoneyDeposited:
    return MoneyDeposited(account_id=stream, amount=Decimal(amount))


def test_processes_racing_on_one_stream_have_exactly_one_winner() -> None:
    store = DjangoEventStore()
    stream = f"race-{uuid.uuid4().hex[:8]}"
    store.save(stream, [deposit(stream)])
    results = run_workers(
        [("race", {"stream": stream, "expected_version": 1, "amount": n}) for n in range(WRITERS)]
    )
    outcomes = [r["outcome"] for r in results]
    assert outcomes.count("won") == 1, results
    assert outcomes.count("conflict") == WRITERS - 1, results
    assert all(
        (r["expected"], r["actual"]) == (1, 2) for r in results if r["outcome"] == "conflict"
    )
    winner = next(r["event_id"] for r in results if r["outcome"] == "won")
    assert [e.id for e in store.load(stream)][1:] == [winner]


def test_processes_creating_one_stream_have_exactly_one_winner() -> None:
    stream = f"new-{uuid.uuid4().hex[:8]}"
    results = run_workers(
        [("race", {"stream": stream, "expected_version": 0, "amount": n}) for n in range(WRITERS)]
    )
    assert [r["outcome"] for r in results].count("won") == 1, results
    assert EventRecord.objects.filter(stream_id=stream).count() == 1


def test_the_same_save_retried_by_several_processes_is_stored_once() -> None:
    stream = f"retry-{uuid.uuid4().hex[:8]}"
    ids = [str(uuid.uuid4()) for _ in range(5)]
    results = run_workers(
        [("save_batch", {"stream": stream, "ids": ids, "expected_version": 0})] * 4
    )
    assert [r["outcome"] for r in results] == ["saved"] * 4, results
    stored = list(
        EventRecord.objects.filter(stream_id=stream)
        .order_by("version")
        .values_list("event_id", "version")
    )
    assert stored == [(event_id, n) for n, event_id in enumerate(ids, start=1)]


def test_an_append_waits_for_the_open_append_before_it_so_readers_never_skip() -> None:
    """The mechanism itself, made deterministic with two threads.

    Transaction A appends and stays open. B appends meanwhile. If B could
    commit first, a reader would see B's higher position, move its checkpoint
    past A's, and lose A's event when A commits. So B must wait for A.
    """
    store = DjangoEventStore()
    with open_append(store, "gap-a") as errors:
        writer_b = threading.Thread(target=append_one, args=(store, "gap-b", errors))
        writer_b.start()
        # B is blocked behind A's open transaction, and readers see neither.
        writer_b.join(1.0)
        assert writer_b.is_alive(), "an append committed while an earlier one was still open"
        assert store.read_all(after_position=0, limit=10) == []
    writer_b.join(30)
    assert not errors, errors
    log = store.read_all(after_position=0, limit=10)
    assert [r.stream_id for r in log] == ["gap-a", "gap-b"]
    assert log[0].position < log[1].position


def test_an_append_that_waited_for_the_lock_sees_what_the_holder_committed() -> None:
    """B waits behind A on the same stream, then appends after A's event.

    The version B reads must come from after A's commit: read with a snapshot
    taken before B got the lock, it would collide with A's version and fail.
    """
    store = DjangoEventStore()
    with open_append(store, "waited") as errors:
        # No expected version: B appends at the end, whatever that is then.
        append_b, b_waits = watching_locks(lambda: append_one(store, "waited", errors))
        writer_b = threading.Thread(target=append_b)
        writer_b.start()
        b_waits("B waits for A's append lock")
    writer_b.join(30)
    assert not errors, errors
    assert [r.version for r in store.iter_stream("waited")] == [1, 2]


@contextmanager
def open_append(store: DjangoEventStore, stream_id: str) -> Iterator[list[BaseException]]:
    """Inside: a thread has appended to ``stream_id`` and keeps its transaction open.

    Yields the list the threads' errors go to; the transaction commits on exit.
    """
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic():
                store.save(stream_id, [deposit(stream_id)])
                inserted.set()
                assert release.wait(30)
        except BaseException as error:
            errors.append(error)
            inserted.set()
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    assert inserted.wait(30)
    try:
        yield errors
    finally:
        release.set()
        holder.join(30)


def append_one(store: DjangoEventStore, stream_id: str, errors: list[BaseException]) -> None:
    """Append one event to ``stream_id`` (in a thread), recording a failure in ``errors``."""
    try:
        store.save(stream_id, [deposit(stream_id)])
    except BaseException as error:
        errors.append(error)
    finally:
        connections.close_all()


def test_many_writer_processes_and_a_live_reader_see_every_event_exactly_once() -> None:
    """Design §3: a checkpointing reader, running while the writers commit in
    random interleavings, ends up with every committed event once, each
    stream in version order."""
    store = DjangoEventStore()
    streams = [f"log-{n}" for n in range(8)]
    seen: list[StoredEvent] = []
    polls_with_events = 0
    stop = threading.Event()
    reader_errors: list[BaseException] = []

    def reader() -> None:
        nonlocal polls_with_events
        checkpoint = 0
        try:
            while True:
                finished = stop.is_set()
                batch = store.read_all(after_position=checkpoint, limit=37)
                if batch:
                    polls_with_events += 1
                    seen.extend(batch)
                    checkpoint = batch[-1].position
                elif finished:
                    return
                else:
                    time.sleep(0.002)
        except BaseException as error:
            reader_errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        results = run_workers(
            [
                (
                    "write",
                    {
                        "seed": n,
                        "streams": streams,
                        "saves": 40,
                        "batch": 1 + n % 3,
                        "max_hold": 0.004,
                    },
                )
                for n in range(WRITERS)
            ]
        )
    finally:
        stop.set()
        thread.join(120)
    assert not reader_errors, reader_errors
    assert all(r["outcome"] == "done" and r["conflicts"] == 0 for r in results), results
    committed = {i for r in results for ids in r["committed"].values() for i in ids}
    seen_ids = [r.event.id for r in seen]
    assert len(seen_ids) == len(set(seen_ids)), "an event was delivered twice"
    assert set(seen_ids) == committed, (
        f"{len(committed - set(seen_ids))} committed events never reached the reader"
    )
    positions = [r.position for r in seen]
    assert positions == sorted(positions)
    for stream in streams:
        in_log = [r.version for r in seen if r.stream_id == stream]
        assert in_log == list(range(1, len(in_log) + 1)), stream
        assert [r.event.id for r in seen if r.stream_id == stream] == [
            e.id for e in store.load(stream)
        ]
    assert polls_with_events > 3, "the reader must have read while the writers wrote"
