"""The operators' commands ``orchestrix_status``, ``orchestrix_snapshot`` and ``orchestrix_verify``.

Every test runs on the database of the run (SQLite, PostgreSQL, MariaDB),
through ``call_command``. (Export and import: ``test_export_import.py``.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from typing import ClassVar

import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class
from django.test import override_settings

from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot
from orchestrix.core.messaging.message import Event
from orchestrix_django.models import SagaStateRecord, SnapshotRecord
from orchestrix_django.projections import catch_up, get_projection
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.ops_helpers import (
    command,
    delete_event,
    failing,
    insert_row,
    new_id,
    open_account,
)
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import AccountOpened, BankAccount

pytestmark = pytest.mark.django_db(transaction=True)

BANK_ACCOUNT = "tests.django.testapp.events.BankAccount"

COMMANDS = [
    "orchestrix_status",
    "orchestrix_snapshot",
    "orchestrix_verify",
    "orchestrix_export",
    "orchestrix_import",
]


@pytest.fixture(autouse=True)
def _no_failures() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_that_says_what_it_does(name: str) -> None:
    assert get_commands()[name] == "orchestrix_django"
    command_object = load_command_class("orchestrix_django", name)
    text = command_object.create_parser("manage.py", name).format_help()
    assert len(command_object.help) > 100
    assert "--database" in text or name == "orchestrix_status"
    # Every option explains itself.
    parser = command_object.create_parser("manage.py", name)
    own = [a for a in parser._actions if a.dest not in _DJANGO_OPTIONS]
    assert own
    assert all(action.help for action in own), [a.dest for a in own if not a.help]


_DJANGO_OPTIONS = {
    "help",
    "version",
    "verbosity",
    "settings",
    "pythonpath",
    "traceback",
    "no_color",
    "force_color",
    "skip_checks",
}


# ---------------------------------------------------------------- orchestrix_status


def _saga(saga_id: str, status: str, deadline: datetime | None = None) -> None:
    now = datetime.now(UTC)
    SagaStateRecord.objects.create(
        saga_id=saga_id,
        saga_type="OrderSaga",
        status=status,
        deadline=deadline,
        created_at=now,
        updated_at=now,
    )


def _stop_fragile() -> str:
    """test-fragile stopped at a failing deposit, parked: returns the account id."""
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    account = open_account(deposits=(5, 13, 6))
    result = catch_up(get_projection("test-fragile"))
    assert result.stopped == "handler failed"
    return account


def test_status_shows_projections_sagas_and_dead_letters_as_tables() -> None:
    open_account(deposits=(5,))
    _stop_fragile()
    catch_up(get_projection("test-balances"))
    _saga("saga-done", "completed")
    _saga("saga-late", "in_progress", deadline=datetime.now(UTC) - timedelta(minutes=5))
    head = DjangoEventStore().head_position()

    out, _ = command("orchestrix_status")

    assert f"head of the log: position {head:,}" in out
    balances = next(line for line in out.splitlines() if "test-balances" in line)
    assert balances.split()[1:4] == [f"{head:,}", "0", "ok"]
    fragile = next(line for line in out.splitlines() if line.strip().startswith("test-fragile"))
    assert "stopped" in fragile
    assert "failed on MoneyDepo" in fragile  # the start of its last error
    assert "RuntimeError: cannot handle a deposit of 13" in out  # in full, in the advice
    # What to do about the stopped one, with the parked event.
    assert "retry_parked" in out
    assert "skip_parked" in out
    # Sagas: counts by status, the overdue one listed with what runs deadlines.
    order = next(line for line in out.splitlines() if line.strip().startswith("OrderSaga"))
    assert order.split()[1:] == ["0", "1", "1", "0", "0"]  # pending, in progress, completed, …
    assert "1 saga(s) past their deadline" in out
    assert "saga-late" in out
    assert "orchestrix_run" in out
    assert "projection:test-fragile" in out  # parked dead letters by source


def test_status_as_json_for_monitoring() -> None:
    _stop_fragile()
    _saga("saga-late", "pending", deadline=datetime.now(UTC) - timedelta(seconds=1))
    _saga("saga-on-time", "in_progress", deadline=datetime.now(UTC) + timedelta(hours=1))

    out, _ = command("orchestrix_status", "--json")

    report = json.loads(out)
    assert report["head"] == DjangoEventStore().head_position()
    by_id = {p["projection_id"]: p for p in report["projections"]}
    assert set(by_id) >= {"test-balances", "test-fragile", "test-continuing"}
    fragile = by_id["test-fragile"]
    assert (fragile["health"], fragile["healthy"], fragile["paused"], fragile["parked"]) == (
        "stopped",
        False,
        True,
        1,
    )
    assert fragile["configured"] is True
    assert "retry_parked" in fragile["advice"]
    assert by_id["test-balances"]["lag"] == report["head"]  # never caught up
    assert report["sagas"]["by_type"] == {"OrderSaga": {"pending": 1, "in_progress": 1}}
    assert report["sagas"]["overdue"] == 1
    assert [s["saga_id"] for s in report["sagas"]["overdue_sagas"]] == ["saga-late"]
    assert report["dead_letters"]["parked"] == {"projection:test-fragile": 1}


def test_status_check_exits_non_zero_saying_what_is_wrong() -> None:
    # All well: --check passes.
    open_account()
    for projection_id in ("test-balances", "test-fragile", "test-continuing", "test-flaky"):
        catch_up(get_projection(projection_id))
    command("orchestrix_status", "--check")

    _stop_fragile()
    message = failing("orchestrix_status", "--check")
    assert "projection test-fragile is stopped (1 parked event(s))" in message
    assert "retry or skip" in message

    _saga("saga-late", "in_progress", deadline=datetime.now(UTC) - timedelta(minutes=1))
    assert "1 saga(s) past their deadline" in failing("orchestrix_status", "--check", "--json")


def test_status_lists_a_projection_that_is_no_longer_configured() -> None:
    open_account()
    catch_up(get_projection("test-balances"))
    with override_settings(ORCHESTRIX={"EVENT_MODULES": ["tests.django.testapp.events"]}):
        out, _ = command("orchestrix_status")
        report = json.loads(command("orchestrix_status", "--json")[0])
    assert "test-balances (not configured)" in out
    [balances] = report["projections"]
    assert balances["configured"] is False


# ---------------------------------------------------------------- orchestrix_snapshot


def test_snapshot_every_aggregate_of_a_type_then_only_those_past_the_threshold() -> None:
    small = open_account(deposits=(1,))
    big = open_account(deposits=(1, 2, 3, 4, 5))
    other = new_id("other")
    opened = AccountOpened(account_id=other, owner="Bo", initial_deposit=1.0)
    DjangoEventStore().save(other, [opened], aggregate_type="Other")

    out, _ = command("orchestrix_snapshot", "--aggregate", BANK_ACCOUNT)

    assert "2 snapshot(s) of BankAccount taken" in out
    snapshots = dict(SnapshotRecord.objects.values_list("aggregate_id", "version"))
    assert snapshots == {small: 2, big: 6}
    repository = AggregateRepository(DjangoEventStore())
    assert repository.load(BankAccount, big).balance == 25.0

    # Current snapshots are skipped; --min-events counts the events since the snapshot.
    account = repository.load(BankAccount, big)
    account.deposit(Decimal(7))
    repository.save(account)
    out, _ = command(
        "orchestrix_snapshot",
        "--aggregate",
        BANK_ACCOUNT,
        "--min-events",
        "2",
    )
    assert "0 snapshot(s) of BankAccount taken, 2 aggregate(s) skipped" in out
    out, _ = command("orchestrix_snapshot", "--aggregate", BANK_ACCOUNT)
    assert "1 snapshot(s) of BankAccount taken, 1 aggregate(s) skipped" in out
    assert SnapshotRecord.objects.get(pk=big).version == 7


@dataclass
class RenamedAccount(AggregateRoot):
    """BankAccount under another name, whose streams carry BankAccount's label."""

    balance: float = 0.0
    owner: str = ""
    snapshot_version: ClassVar[int] = 2

    def _when_account_opened(self, event: Event) -> None:
        self.owner = getattr(event, "owner", "")

    def _when_money_deposited(self, event: Event) -> None:
        self.balance += float(getattr(event, "amount", 0))


def test_snapshot_of_streams_labelled_otherwise_and_of_a_new_snapshot_version() -> None:
    account = open_account(deposits=(2,))
    command("orchestrix_snapshot", "--aggregate", BANK_ACCOUNT)
    path = f"{__name__}.RenamedAccount"

    message = failing("orchestrix_snapshot", "--aggregate", path)
    assert "no stream is labelled 'RenamedAccount'" in message
    assert "--aggregate-type" in message

    # BankAccount's snapshot is of another class (and snapshot version): not usable.
    out, _ = command("orchestrix_snapshot", "--aggregate", path, "--aggregate-type", "BankAccount")
    assert "1 snapshot(s) of BankAccount taken" in out
    stored = SnapshotRecord.objects.get(pk=account)
    assert (stored.aggregate_type, stored.state["__snapshot_version__"]) == ("RenamedAccount", 2)


def test_snapshot_reports_aggregates_that_do_not_load_and_goes_on() -> None:
    good = open_account()
    bad = open_account()
    insert_row(bad, 2, event_type="AccountOpened", data={"account_id": bad})  # no owner

    message = failing("orchestrix_snapshot", "--aggregate", BANK_ACCOUNT)

    assert "1 aggregate(s) could not be loaded" in message
    assert f"{bad}: EventDecodeError" in message
    assert "1 snapshot(s) of BankAccount taken" in message
    assert list(SnapshotRecord.objects.values_list("aggregate_id", flat=True)) == [good]


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("tests.django.testapp.events.NoSuchClass", "cannot import"),
        ("tests.django.testapp.events.AccountOpened", "not an AggregateRoot subclass"),
    ],
)
def test_snapshot_of_something_else_than_an_aggregate_class(path: str, says: str) -> None:
    assert says in failing("orchestrix_snapshot", "--aggregate", path)


# ---------------------------------------------------------------- orchestrix_verify


def test_verify_passes_a_sound_store_with_progress() -> None:
    for _ in range(3):
        open_account(deposits=(1, 2))
    out = StringIO()
    with override_settings(
        ORCHESTRIX={**_settings(), "READ_CHUNK_SIZE": 2}  # pages end mid-stream, too
    ):
        call_command("orchestrix_verify", "--progress-every", "1", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "Verified 9 event(s) in 3 stream(s)" in text
    assert "event 4/9 (44%), 4 events checked" in text


def test_verify_finds_a_gap_in_the_versions() -> None:
    open_account(deposits=(1,))
    gappy = open_account(deposits=(1, 2, 3))
    delete_event(gappy, 2)

    message = failing("orchestrix_verify")

    assert f"bad event in stream {gappy!r} at version 3 (type MoneyDeposited, position" in message
    assert "version 3 follows version 1: version 2 is missing" in message
    assert "Restore them from a backup or an export" in message


def test_verify_finds_a_stream_that_does_not_start_at_version_1() -> None:
    stream = new_id()
    insert_row(stream, 3)
    message = failing("orchestrix_verify")
    assert "the stream starts at version 3, not 1: versions 1 to 2 are missing" in message


def test_verify_finds_undecodable_events_and_unknown_types() -> None:
    sound = open_account(deposits=(1,))
    broken = open_account()
    insert_row(broken, 2, data={"account_id": broken, "amount": "a lot"})

    message = failing("orchestrix_verify")
    assert f"stream {broken!r} at version 2 (type MoneyDeposited" in message
    assert "it does not decode: amount: expected a decimal number, got 'a lot'" in message
    assert "give new fields defaults" in message

    # Only the streams asked for.
    assert (
        "Verified 2 event(s) in 1 stream(s)" in command("orchestrix_verify", "--stream", sound)[0]
    )
    unknown = new_id()
    insert_row(unknown, 1, event_type="AccountFrozen")
    message = failing("orchestrix_verify", "--stream", sound, "--stream", unknown)
    assert "no event class is registered for type 'AccountFrozen' at schema version 1" in message
    assert "ORCHESTRIX['EVENT_MODULES']" in message
    assert "no stored stream 'nope'" in failing("orchestrix_verify", "--stream", "nope")


def test_verify_lists_every_bad_event_not_just_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    open_account(deposits=(1,))
    broken = open_account(deposits=(1,))
    first = insert_row(broken, 3, data={"account_id": broken, "amount": "a lot"})
    second = insert_row(broken, 4, data={"account_id": broken, "amount": True})
    unknown = insert_row(new_id(), 1, event_type="AccountFrozen")
    gappy = open_account(deposits=(1, 2, 3))
    delete_event(gappy, 2)
    open_account(deposits=(2,))

    message = failing("orchestrix_verify")

    assert message.startswith("4 bad event(s) among the ")
    for row, reason in [
        (first, "it does not decode: amount: expected a decimal number, got 'a lot'"),
        (second, "it does not decode: amount: expected a decimal number, got True"),
        (unknown, "no event class is registered for type 'AccountFrozen'"),
    ]:
        assert (
            f"bad event in stream {row.stream_id!r} at version {row.version} "
            f"(type {row.event_type}, position {row.position}): {reason}"
        ) in message
    assert f"bad event in stream {gappy!r} at version 3" in message
    # What to do, once per kind of problem.
    assert message.count("give new fields defaults") == 1
    assert "ORCHESTRIX['EVENT_MODULES']" in message and "Restore them from a backup" in message

    # However many there are: the message lists the first ones, stderr the others.
    from orchestrix_django.management.commands import orchestrix_verify

    monkeypatch.setattr(orchestrix_verify, "LISTED", 1)
    err = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("orchestrix_verify", stdout=StringIO(), stderr=err)
    assert str(raised.value).count("bad event in stream") == 1
    assert "… and 3 more, listed above." in str(raised.value)
    assert err.getvalue().count("bad event in stream") == 3


def test_verify_finds_events_that_do_not_upcast() -> None:
    fixtures = "tests.django.check_fixtures"
    parcel = new_id("parcel")
    insert_row(parcel, 1, event_type="CheckFixtureParcelShipped", data={"parcel_id": "P-1"})
    broken = {
        **_settings(),
        "EVENT_REGISTRY": f"{fixtures}.versioned_registry",
        "UPCASTERS": f"{fixtures}.missing_link_upcasters",
    }
    with override_settings(ORCHESTRIX=broken):
        message = failing("orchestrix_verify", "--stream", parcel)
    assert "it does not upcast" in message
    assert "Fix the upcaster chain" in message
    complete = {**broken, "UPCASTERS": f"{fixtures}.complete_upcasters"}
    with override_settings(ORCHESTRIX=complete):
        assert "Verified 1 event(s)" in command("orchestrix_verify", "--stream", parcel)[0]


def test_verify_reads_another_database_alias_only_when_it_exists() -> None:
    message = failing("orchestrix_verify", "--database", "reporting")
    assert "no database 'reporting' in DATABASES" in message


def _settings() -> dict[str, object]:
    from django.conf import settings

    return dict(settings.ORCHESTRIX)
