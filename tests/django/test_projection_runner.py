"""The projection runner: batches in transactions, one runner at a time, failure policies."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django.models import EventRecord
from orchestrix_django.projections import (
    CatchUpResult,
    catch_up,
    get_projection,
    pause,
    projection_status,
    reset_projection,
    resume,
    retry_parked,
    skip_parked,
)
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.test_hostile_input import insert_raw
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AccountBalance, AppliedEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_failures() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    testapp_projections._attempts.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


def open_account(store: DjangoEventStore, account_id: str, deposits: list[int]) -> None:
    store.save(
        account_id,
        [
            AccountOpened(account_id=account_id, owner="Ann", initial_deposit=10.0),
            *(MoneyDeposited(account_id=account_id, amount=Decimal(a)) for a in deposits),
        ],
    )


def applied(projection: str) -> list[str]:
    return list(
        AppliedEvent.objects.filter(projection=projection)
        .order_by("id")
        .values_list("event_id", flat=True)
    )


def log_ids() -> list[str]:
    return list(EventRecord.objects.order_by("position").values_list("event_id", flat=True))


def test_catch_up_builds_the_read_model_and_is_idempotent() -> None:
    store = DjangoEventStore()
    open_account(store, "A-1", [5, 6])
    open_account(store, "A-2", [1])
    balances = get_projection("test-balances")
    result = catch_up(balances)
    assert result.applied == 5 and result.position == store.head_position() and result.lag == 0
    assert {(b.account_id, b.balance, b.events) for b in AccountBalance.objects.all()} == {
        ("A-1", Decimal("21.00"), 3),
        ("A-2", Decimal("11.00"), 2),
    }
    assert catch_up(balances).applied == 0
    assert AccountBalance.objects.get(account_id="A-1").events == 3
    status = projection_status("test-balances")
    assert status.healthy and not status.paused and status.lag == 0 and status.parked == 0


def test_batches_commit_one_by_one_with_progress() -> None:
    store = DjangoEventStore()
    open_account(store, "B-1", list(range(1, 10)))  # 10 events; fragile reads 4 per batch
    progress: list[CatchUpResult] = []
    result = catch_up(get_projection("test-fragile"), on_batch=progress.append)
    assert result.batches == 3 and result.applied == 10
    assert [p.position for p in progress] == sorted(p.position for p in progress)
    assert applied("fragile") == log_ids()


def test_max_batches_and_stop_requests_leave_a_consistent_checkpoint() -> None:
    store = DjangoEventStore()
    open_account(store, "C-1", list(range(1, 10)))
    fragile = get_projection("test-fragile")
    first = catch_up(fragile, max_batches=1)
    assert first.applied == 4 and first.lag == 6
    stopped = catch_up(fragile, should_stop=lambda: True)
    assert stopped.applied == 0 and stopped.stopped == "asked to stop"
    assert catch_up(fragile).applied == 6
    assert applied("fragile") == log_ids()


def test_park_and_stop_keeps_order_and_spares_other_projections() -> None:
    store = DjangoEventStore()
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    open_account(store, "D-1", [1, 13, 2])
    fragile = get_projection("test-fragile")
    result = catch_up(fragile)
    assert result.stopped == "handler failed"
    ids = log_ids()
    # The event before the failure is applied and committed; the failing
    # attempt's write was rolled back with its savepoint; nothing after it ran.
    assert applied("fragile") == ids[:2]
    status = projection_status("test-fragile")
    assert status.paused and not status.healthy and status.parked == 1
    assert "cannot handle a deposit of 13" in (status.last_error or "")
    assert status.position == EventRecord.objects.get(event_id=ids[1]).position
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    assert letter.message_id == ids[2] and letter.stream_id == "D-1" and letter.version == 3
    assert letter.handler is not None and letter.handler.endswith("record")
    # A stopped projection stays stopped until an operator acts.
    assert catch_up(fragile).stopped == "paused"
    # Other projections are not affected.
    assert catch_up(get_projection("test-balances")).lag == 0
    assert AccountBalance.objects.get(account_id="D-1").balance == Decimal("26.00")


def test_retry_after_the_fix_applies_the_event_once_and_resumes() -> None:
    store = DjangoEventStore()
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    open_account(store, "E-1", [1, 13, 2])
    fragile = get_projection("test-fragile")
    catch_up(fragile)
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    testapp_projections.FAILING_AMOUNTS.clear()  # the fix
    result = retry_parked(fragile, letter.id)
    assert result is not None and result.lag == 0 and result.stopped is None
    assert applied("fragile") == log_ids()
    retried = DjangoDeadLetterQueue().get(letter.id)
    assert retried is not None and retried.status == DeadLetterStatus.RETRIED
    status = projection_status("test-fragile")
    assert status.healthy and not status.paused and status.parked == 0


def test_retry_without_the_fix_parks_the_event_again() -> None:
    store = DjangoEventStore()
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    open_account(store, "E-2", [13])
    fragile = get_projection("test-fragile")
    catch_up(fragile)
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    result = retry_parked(fragile, letter.id)
    assert result is not None and result.stopped == "handler failed"
    assert projection_status("test-fragile").parked == 1
    assert applied("fragile") == log_ids()[:1]


def test_skip_moves_past_the_event_without_applying_it() -> None:
    store = DjangoEventStore()
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    open_account(store, "F-1", [1, 13, 2])
    fragile = get_projection("test-fragile")
    catch_up(fragile)
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    result = skip_parked(fragile, letter.id)
    assert result is not None and result.lag == 0
    ids = log_ids()
    assert applied("fragile") == [ids[0], ids[1], ids[3]]
    skipped = DjangoDeadLetterQueue().get(letter.id)
    assert skipped is not None and skipped.status == DeadLetterStatus.DISCARDED
    assert projection_status("test-fragile").healthy


def test_park_and_continue_goes_on_and_heals_when_retried() -> None:
    store = DjangoEventStore()
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    open_account(store, "G-1", [1, 13, 2])
    continuing = get_projection("test-continuing")
    result = catch_up(continuing)
    assert result.lag == 0 and result.stopped is None
    ids = log_ids()
    assert applied("continuing") == [ids[0], ids[1], ids[3]]
    status = projection_status("test-continuing")
    assert not status.healthy and status.parked == 1 and not status.paused
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-continuing")
    testapp_projections.FAILING_AMOUNTS.clear()
    retry_parked(continuing, letter.id)
    assert sorted(applied("continuing")) == sorted(ids)
    assert projection_status("test-continuing").healthy


def test_a_failed_attempt_leaves_no_partial_write_and_the_retry_applies_once() -> None:
    store = DjangoEventStore()
    store.save("H-1", [MoneyDeposited(account_id="H-1", amount=Decimal(7))])
    result = catch_up(get_projection("test-flaky"))
    assert result.applied == 1 and result.stopped is None
    assert applied("flaky") == log_ids()  # one row: the failed attempt's row rolled back
    assert projection_status("test-flaky").healthy


def test_a_failure_mid_batch_costs_no_extra_attempt_and_keeps_order() -> None:
    """The batch's fast path fails at the 7: the events before it are applied once,
    and the handler runs on the 7 exactly as often as its retry policy says."""
    store = DjangoEventStore()
    store.save("H-2", [MoneyDeposited(account_id="H-2", amount=Decimal(a)) for a in (1, 2, 7, 3)])
    result = catch_up(get_projection("test-flaky"))
    assert result.applied == 4 and result.stopped is None
    assert applied("flaky") == log_ids()
    by_amount = {
        event.amount: testapp_projections._attempts[event.id]
        for event in store.load("H-2")
        if isinstance(event, MoneyDeposited)
    }
    # The fast path's failed attempt on the 7 was its first: one more succeeded.
    assert by_amount[Decimal(7)] == 2
    assert by_amount[Decimal(3)] == 1


def test_a_batch_of_plain_handlers_runs_without_a_savepoint_per_event() -> None:
    store = DjangoEventStore()
    for n in range(5):
        open_account(store, f"S-{n}", list(range(1, 20)))  # 100 events
    with CaptureQueriesContext(connection) as queries:
        result = catch_up(get_projection("test-balances"))
    assert result.applied == 100
    savepoints = [q for q in queries.captured_queries if q["sql"].startswith("SAVEPOINT")]
    # The batch's handlers run straight in its transaction; per event there
    # would be a hundred savepoints.
    assert len(savepoints) <= 1, [q["sql"] for q in savepoints]
    assert AccountBalance.objects.get(account_id="S-4").events == 20


def test_two_runners_at_once_apply_every_event_exactly_once() -> None:
    store = DjangoEventStore()
    for n in range(12):
        open_account(store, f"R-{n}", [1, 2])
    fragile = get_projection("test-fragile")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            catch_up(fragile)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert applied("fragile") == log_ids()


def test_reset_then_catch_up_rebuilds_the_same_read_model() -> None:
    store = DjangoEventStore()
    open_account(store, "S-1", [3, 4])
    balances = get_projection("test-balances")
    catch_up(balances)
    before = list(AccountBalance.objects.values_list("account_id", "balance", "events"))
    reset_projection(balances)
    assert AccountBalance.objects.count() == 0
    assert projection_status("test-balances").position == 0
    catch_up(balances)
    assert list(AccountBalance.objects.values_list("account_id", "balance", "events")) == before


def test_paused_projection_does_not_move_until_resumed() -> None:
    store = DjangoEventStore()
    open_account(store, "P-1", [1])
    balances = get_projection("test-balances")
    pause(balances)
    assert catch_up(balances).stopped == "paused"
    assert AccountBalance.objects.count() == 0
    resume(balances)
    assert catch_up(balances).applied == 2


@pytest.mark.parametrize(
    ("event_type", "schema_version", "data", "shown"),
    [
        pytest.param(
            "MoneyDeposited",
            1,
            {"account_id": "U-bad", "amount": ["not", "a", "decimal"]},
            "amount: expected a decimal number",
            id="wrong-shape",
        ),
        pytest.param(
            "MoneyDeposited",
            1,
            {"account_id": "U-bad", "amount": "1", "data": {"__orchestrix_type__": "martian"}},
            "malformed tagged value",
            id="bad-tagged-value",
        ),
        pytest.param("NoSuchEventType", 1, {}, "'NoSuchEventType' schema version 1", id="type"),
        pytest.param(
            "MoneyDeposited",
            9,
            {"account_id": "U-bad", "amount": "1"},
            "'MoneyDeposited' schema version 9",
            id="schema-version",
        ),
    ],
)
def test_an_undecodable_event_it_handles_stops_the_projection_visibly_and_can_be_skipped(
    event_type: str, schema_version: int, data: dict[str, object], shown: str
) -> None:
    # test-fragile handles every event (on(Event)): this one too, whatever its type.
    store = DjangoEventStore()
    open_account(store, "U-1", [1])
    bad_position = insert_raw(
        "U-bad", json.dumps(data), event_type=event_type, schema_version=schema_version
    )
    open_account(store, "U-2", [2])
    fragile = get_projection("test-fragile")
    result = catch_up(fragile)
    assert result.stopped == "undecodable event"
    # The events before it are applied; the projection waits right before it.
    assert len(applied("fragile")) == 2 and result.position == bad_position - 1
    status = projection_status("test-fragile")
    assert status.paused and not status.healthy
    assert "U-bad" in (status.last_error or "") and shown in (status.last_error or "")
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    assert letter.message is None and letter.stream_id == "U-bad" and letter.version == 1
    assert letter.position == bad_position and letter.message_type == event_type
    result = skip_parked(fragile, letter.id)
    assert result is not None and result.lag == 0
    assert len(applied("fragile")) == 4  # two accounts, two events each
    assert connection.vendor in {"sqlite", "postgresql", "mysql"}


def test_an_undecodable_event_stops_only_the_projections_that_handle_its_type() -> None:
    store = DjangoEventStore()
    open_account(store, "U-1", [1])
    # Rows as an older version, an import or another program could have written them.
    bad_opened = insert_raw(
        "U-bad",
        json.dumps({"account_id": "U-bad", "owner": 5, "initial_deposit": 1.0}),
        event_type="AccountOpened",
    )
    insert_raw("U-unknown", "{}", event_type="NoSuchEventType")
    insert_raw(
        "U-future", json.dumps({"account_id": "U-1"}), event_type="AccountOpened", schema_version=9
    )
    open_account(store, "U-2", [2, 3])
    # test-flaky handles deposits only: it passes over all three, as over any event it ignores.
    flaky = get_projection("test-flaky")
    result = catch_up(flaky)
    assert result.stopped is None and result.lag == 0
    assert len(applied("flaky")) == 3
    status = projection_status("test-flaky")
    assert status.healthy and not status.paused and status.parked == 0
    # test-balances handles AccountOpened: it parks the bad one, naming the error, and stops.
    balances = get_projection("test-balances")
    result = catch_up(balances)
    assert result.stopped == "undecodable event" and result.position == bad_opened - 1
    status = projection_status("test-balances")
    assert status.paused and not status.healthy
    assert "owner: expected a string" in (status.last_error or "")
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-balances")
    assert (letter.position, letter.stream_id, letter.message_type) == (
        bad_opened,
        "U-bad",
        "AccountOpened",
    )
    assert "owner: expected a string" in letter.reason
    result = skip_parked(balances, letter.id)
    # Then the schema version no class is registered for: an AccountOpened, so it stops again.
    assert result is not None and result.stopped == "undecodable event"
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-balances")
    assert "schema version 9" in letter.reason
    result = skip_parked(balances, letter.id)
    # The unknown type is not one it handles: passed over.
    assert result is not None and result.stopped is None and result.lag == 0
    balances_by_account = dict(AccountBalance.objects.values_list("account_id", "balance"))
    assert balances_by_account == {"U-1": Decimal(11), "U-2": Decimal(15)}


def test_park_and_continue_parks_an_undecodable_event_and_goes_on() -> None:
    store = DjangoEventStore()
    open_account(store, "U-1", [1])
    bad = insert_raw(
        "U-bad",
        json.dumps({"account_id": "U-bad", "amount": ["not", "a", "decimal"]}),
        event_type="MoneyDeposited",
    )
    open_account(store, "U-2", [2])
    continuing = get_projection("test-continuing")
    result = catch_up(continuing)
    assert result.stopped is None and result.lag == 0
    assert len(applied("continuing")) == 4  # every event but the bad one
    status = projection_status("test-continuing")
    assert not status.healthy and not status.paused and status.parked == 1
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-continuing")
    assert letter.position == bad and letter.message is None
    assert "amount: expected a decimal number" in letter.reason
    DjangoDeadLetterQueue().discard(letter.id)
    catch_up(continuing)
    assert projection_status("test-continuing").healthy
