"""Faults around a save: the connection cut mid-save, clocks that disagree.

A cut connection must leave nothing partial behind and tell the caller, so
that a retry stores the events exactly once; and the order of the log must
come from the database, never from the writers' clocks.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.db import Error as DjangoDatabaseError

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix_django.models import EventRecord
from orchestrix_django.projections import catch_up, get_projection, reset_projection
from orchestrix_django.signals import events_committed
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.test_concurrency import open_append
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AppliedEvent
from tests.django.waiting import watching_locks

pytestmark = pytest.mark.django_db(transaction=True)


def new_stream(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deposits(stream_id: str, count: int) -> list[MoneyDeposited]:
    return [MoneyDeposited(account_id=stream_id, amount=Decimal(n)) for n in range(1, count + 1)]


def stored_ids(stream_id: str) -> list[str]:
    return list(
        EventRecord.objects.filter(stream_id=stream_id)
        .order_by("version")
        .values_list("event_id", flat=True)
    )


def backend_id() -> int:
    """This thread's connection's id on the server."""
    query = (
        "SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()"
    )
    with connection.cursor() as cursor:
        cursor.execute(query)
        return int(cursor.fetchone()[0])


def cut(backend: int) -> None:
    """End connection ``backend`` from another connection, as a failing network or server would."""
    killer = connections.create_connection("default")
    try:
        with killer.cursor() as cursor:
            if killer.vendor == "postgresql":
                cursor.execute("SELECT pg_terminate_backend(%s)", [backend])
            else:
                cursor.execute(f"KILL {int(backend)}")
    finally:
        killer.close()


@pytest.fixture
def needs_a_server() -> None:
    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server connection to cut")


@pytest.fixture
def announced() -> Iterator[list[str]]:
    """The streams ``events_committed`` is sent for."""
    seen: list[str] = []

    def receiver(sender: Any, *, stream_id: str, **kwargs: Any) -> None:
        seen.append(stream_id)

    events_committed.connect(receiver, weak=False)
    yield seen
    events_committed.disconnect(receiver)


def test_a_connection_cut_before_the_commit_stores_nothing_and_a_retry_stores_once(
    needs_a_server: None, announced: list[str]
) -> None:
    store = DjangoEventStore()
    stream_id = new_stream("cut")
    events = deposits(stream_id, 3)

    def request() -> None:
        with transaction.atomic():
            store.save(stream_id, events, expected_version=0)
            cut(backend_id())
            # The rest of the request's transaction, on a connection that is gone.
            EventRecord.objects.filter(stream_id=stream_id).count()

    with pytest.raises(DjangoDatabaseError):
        request()
    connection.close()  # what Django does at the end of the failed request
    assert stored_ids(stream_id) == []
    assert stream_id not in announced
    store.save(stream_id, events, expected_version=0)  # the caller retries
    store.save(stream_id, events, expected_version=0)  # and once more, to be sure
    assert stored_ids(stream_id) == [e.id for e in events]
    assert announced.count(stream_id) == 1


def test_a_save_cut_while_it_waits_for_the_append_lock_stores_nothing(
    needs_a_server: None,
) -> None:
    """The writer waits behind an open append; its connection is cut meanwhile."""
    store = DjangoEventStore()
    waiting = new_stream("waiting")
    events = deposits(waiting, 2)
    backend: list[int] = []
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            backend.append(backend_id())
            store.save(waiting, events, expected_version=0)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    with open_append(store, new_stream("holder")) as holder_errors:
        watched_writer, writer_waits = watching_locks(writer)
        thread = threading.Thread(target=watched_writer)
        thread.start()
        writer_waits("the writer waits for the open append's lock")
        assert thread.is_alive() and backend
        cut(backend[0])
        thread.join(30)
    assert not holder_errors, holder_errors
    assert len(errors) == 1 and isinstance(errors[0], DatabaseError), errors
    assert stored_ids(waiting) == []
    store.save(waiting, events, expected_version=0)
    assert stored_ids(waiting) == [e.id for e in events]


def test_the_log_keeps_commit_order_whatever_the_writers_clocks_say() -> None:
    """Writers with clocks an hour apart: the log, the streams and the projections
    follow the order of the commits, and the timestamps are kept as written."""
    store = DjangoEventStore()
    now = datetime.now(UTC)
    skews = [timedelta(hours=1), timedelta(hours=-1), timedelta(0), timedelta(days=-365)]
    streams = [new_stream("clock") for _ in skews]
    written: list[str] = []
    for stream_id, skew in zip(streams, skews, strict=True):
        event = AccountOpened(
            account_id=stream_id, owner="Ann", initial_deposit=1.0, timestamp=now + skew
        )
        store.save(stream_id, [event], expected_version=0)
        written.append(event.id)
    same_stream = streams[0]
    late = MoneyDeposited(
        account_id=same_stream, amount=Decimal(1), timestamp=now - timedelta(days=2)
    )
    store.save(same_stream, [late], expected_version=1)
    written.append(late.id)

    log: list[StoredEvent] = store.read_all(after_position=0, limit=100)
    ours = [r for r in log if r.event.id in written]
    assert [r.event.id for r in ours] == written
    assert [r.event.timestamp - now for r in ours[: len(skews)]] == skews
    assert [e.id for e in store.load(same_stream)] == [written[0], late.id]
    slow = get_projection("test-slow")
    reset_projection(slow)
    catch_up(slow)
    applied = list(
        AppliedEvent.objects.filter(projection="slow")
        .order_by("id")
        .values_list("event_id", flat=True)
    )
    assert [i for i in applied if i in written] == written
