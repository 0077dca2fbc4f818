"""``orchestrix_export`` and ``orchestrix_import``: CloudEvents JSON lines between two databases.

The tests export from the ``default`` database and import into ``other`` (a
second test database of the same server, see ``tests/settings.py``), then
compare the two event tables row by row.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from orchestrix.core.messaging.message import Event
from orchestrix_django.models import EventRecord, StreamRecord
from orchestrix_django.signals import events_committed
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.ops_helpers import command, failing, insert_row, new_id, open_account
from tests.django.testapp.events import AccountOpened, MoneyDeposited

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

#: The columns an export/import round trip keeps (positions are the new database's own).
KEPT = (
    "stream_id",
    "version",
    "event_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "timestamp",
    "correlation_id",
    "causation_id",
)


def rows(using: str) -> list[tuple[Any, ...]]:
    """The event table in log order, without positions."""
    return list(EventRecord.objects.using(using).order_by("position").values_list(*KEPT))


def streams(using: str) -> set[tuple[str, str, int]]:
    return set(
        StreamRecord.objects.using(using).values_list("stream_id", "aggregate_type", "version")
    )


def history() -> list[str]:
    """Interleaved streams, labelled and not, with every kind of metadata."""
    store = DjangoEventStore()
    first = open_account(deposits=(1, 2))
    second = open_account(deposits=(3,))
    unlabelled = new_id("plain")
    cause = MoneyDeposited(
        account_id=unlabelled,
        amount=Decimal("10.50"),
        correlation_id="corr-1",
        causation_id="cmd-1",
        trace_id="trace-1",
        subject=f"accounts/{unlabelled}",
        source="https://bank.example/api",
        dataschema="https://bank.example/schemas/deposit",
        datacontenttype="application/json",
        data={"note": "a payload", "tags": ["x", "y"]},
    )
    store.save(
        unlabelled,
        [
            AccountOpened(account_id=unlabelled, owner="Zoë 🏦", initial_deposit=0.1),
            cause,
            MoneyDeposited.caused_by(cause, account_id=unlabelled, amount=Decimal(-3)),
        ],
    )
    store.save(first, [MoneyDeposited(account_id=first, amount=Decimal(4))], expected_version=3)
    return [first, second, unlabelled]


def export(tmp_path: Path, name: str = "log.jsonl", *args: str) -> Path:
    path = tmp_path / name
    out, err = command("orchestrix_export", "--output", str(path), *args)
    assert "Exported" in out
    assert err == ""
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def committed() -> Iterator[list[tuple[str, str, list[str]]]]:
    """What ``events_committed`` announces: (database, stream, event ids) per append."""
    seen: list[tuple[str, str, list[str]]] = []

    def receiver(sender: Any, stream_id: str, events: list[Any], using: str, **kwargs: Any) -> None:
        seen.append((using, stream_id, [stored.event.id for stored in events]))

    events_committed.connect(receiver, dispatch_uid="test_export_import")
    yield seen
    events_committed.disconnect(dispatch_uid="test_export_import")


# ---------------------------------------------------------------- the round trip


def test_round_trip_between_two_databases_yields_identical_streams(
    tmp_path: Path, committed: list[tuple[str, str, list[str]]]
) -> None:
    history()
    path = export(tmp_path)
    exported = lines(path)
    assert [e["position"] for e in exported] == sorted(e["position"] for e in exported)
    assert len(exported) == EventRecord.objects.count() == 9
    assert rows("other") == []

    out, _ = command("orchestrix_import", str(path), "--database", "other")

    assert "Checked 9 line(s): 9 event(s) to import, 0 stored already." in out
    assert "Imported 9 event(s) into database 'other'" in out
    assert rows("other") == rows("default")
    assert streams("other") == streams("default")
    assert DjangoEventStore("other").load(exported[0]["streamid"]) == DjangoEventStore().load(
        exported[0]["streamid"]
    )
    # Through the append path: the signal announced every event, on the other database.
    announced = [event_id for using, _, ids in committed if using == "other" for event_id in ids]
    assert announced == [e["id"] for e in exported]
    # The other database passes verification, and exports the same lines (but positions).
    assert (
        "Verified 9 event(s) in 3 stream(s)"
        in command("orchestrix_verify", "--database", "other")[0]
    )
    again = tmp_path / "again.jsonl"
    command("orchestrix_export", "--database", "other", "--output", str(again))
    assert [_without_position(e) for e in lines(again)] == [_without_position(e) for e in exported]


def _without_position(cloudevent: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in cloudevent.items() if key != "position"}


def test_exported_lines_are_cloudevents_with_their_place_and_metadata(tmp_path: Path) -> None:
    first, _, unlabelled = history()
    exported = lines(export(tmp_path))
    opened = exported[0]
    assert opened["specversion"] == "1.0"
    assert opened["type"] == "AccountOpened"
    assert (opened["streamid"], opened["streamversion"], opened["aggregatetype"]) == (
        first,
        1,
        "BankAccount",
    )
    assert opened["data"] == {"account_id": first, "owner": "Ada", "initial_deposit": 10.0}
    cause = next(e for e in exported if e.get("correlationid") == "corr-1")
    assert "aggregatetype" not in cause
    assert cause["streamid"] == unlabelled
    assert {k: cause[k] for k in ("causationid", "traceid", "subject", "source")} == {
        "causationid": "cmd-1",
        "traceid": "trace-1",
        "subject": f"accounts/{unlabelled}",
        "source": "https://bank.example/api",
    }
    assert cause["datacontenttype"] == "application/json"
    assert cause["data"]["amount"] == "10.50"
    assert cause["data"]["data"] == {"note": "a payload", "tags": ["x", "y"]}
    caused = exported[exported.index(cause) + 1]
    assert (caused["correlationid"], caused["causationid"]) == ("corr-1", cause["id"])


def test_export_to_stdout_of_some_streams_after_a_position(tmp_path: Path) -> None:
    first, second, _ = history()
    everything = lines(export(tmp_path))
    out, err = command("orchestrix_export", "--stream", first, "--stream", second)
    picked = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in picked] == [
        e["id"] for e in everything if e["streamid"] in (first, second)
    ]
    assert "Exported 6 event(s)" in err  # the report goes to stderr, the lines to stdout
    middle = everything[4]["position"]
    out, _ = command("orchestrix_export", "--after-position", str(middle))
    assert [json.loads(line)["id"] for line in out.splitlines()] == [
        e["id"] for e in everything[5:]
    ]


def test_export_stops_at_a_row_it_could_not_import_again(tmp_path: Path) -> None:
    open_account()
    broken = new_id()
    insert_row(broken, 1, data=["not", "an", "object"])
    path = tmp_path / "log.jsonl"
    message = failing("orchestrix_export", "--output", str(path))
    assert f"(stream {broken!r}, version 1) has stored data that is not a JSON object" in message
    assert "orchestrix_verify" in message
    assert [e["type"] for e in lines(path)] == ["AccountOpened"]  # the events before it


# ---------------------------------------------------------------- idempotent, resumable


def test_import_again_changes_nothing_and_finishes_an_interrupted_import(tmp_path: Path) -> None:
    history()
    path = export(tmp_path)
    half = tmp_path / "half.jsonl"
    half.write_text("".join(path.read_text(encoding="utf-8").splitlines(True)[:6]), "utf-8")

    command("orchestrix_import", str(half), "--database", "other")
    assert len(rows("other")) == 6
    out, _ = command("orchestrix_import", str(path), "--database", "other", "--batch-size", "3")
    assert "3 event(s) to import, 6 stored already" in out
    assert rows("other") == rows("default")

    before = rows("other")
    out, _ = command("orchestrix_import", str(path), "--database", "other")
    assert "Imported 0 event(s)" in out
    assert "9 were stored already (skipped)" in out
    assert rows("other") == before


def test_import_from_stdin_in_two_files_exported_one_after_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history()
    everything = export(tmp_path)
    cut = lines(everything)[3]["position"]
    early = export(tmp_path, "early.jsonl")
    early.write_text(
        "".join(line for line in early.read_text("utf-8").splitlines(True)[:4]), "utf-8"
    )
    late = export(tmp_path, "late.jsonl", "--after-position", str(cut))

    monkeypatch.setattr(sys, "stdin", io.StringIO(late.read_text("utf-8")))
    command("orchestrix_import", str(early), "-", "--database", "other")

    assert rows("other") == rows("default")


# ---------------------------------------------------------------- refusals


def test_import_refuses_to_overwrite_other_events_and_writes_nothing(tmp_path: Path) -> None:
    first, second, _ = history()
    path = export(tmp_path)
    # The other database already has a different history for one of the streams.
    DjangoEventStore("other").save(
        second, [AccountOpened(account_id=second, owner="Someone else", initial_deposit=1.0)]
    )
    before = rows("other")

    message = failing("orchestrix_import", str(path), "--database", "other")

    assert "import refused, nothing was written: 1 problem(s)" in message
    assert f"(stream {second!r} v1): the stream already has a different event at version 1" in (
        message
    )
    assert f"{path}:" in message  # each problem says where it is
    assert "never overwrites" in message
    assert rows("other") == before  # not even the streams without a conflict
    assert first not in {row[0] for row in rows("other")}


def test_import_refuses_events_stored_elsewhere_under_their_id(tmp_path: Path) -> None:
    history()
    path = export(tmp_path)
    first = lines(path)[0]
    insert_row("somewhere-else", 1, event_id=first["id"], using="other")
    message = failing("orchestrix_import", str(path), "--database", "other")
    assert "an event with this id is stored already, as version 1 of stream 'somewhere-else'" in (
        message
    )


def test_import_refuses_a_gap_before_the_first_imported_version(tmp_path: Path) -> None:
    history()
    everything = lines(export(tmp_path))
    late = export(tmp_path, "late.jsonl", "--after-position", str(everything[0]["position"]))
    message = failing("orchestrix_import", str(late), "--database", "other")
    assert "the stream holds 0 event(s) here, so version 2 cannot follow" in message
    assert "import its earlier events first" in message
    assert rows("other") == []


def test_import_refuses_files_given_out_of_log_order(tmp_path: Path) -> None:
    history()
    cut = lines(export(tmp_path))[3]["position"]
    late = export(tmp_path, "late.jsonl", "--after-position", str(cut))
    message = failing("orchestrix_import", str(late), str(late), "--database", "other")
    assert "the lines are not in the order of the log" in message
    assert rows("other") == []


def test_import_refuses_events_this_project_cannot_decode(tmp_path: Path) -> None:
    stream = new_id()
    insert_row(stream, 1, event_type="AccountFrozen", data={"account_id": stream})
    path = export(tmp_path)
    message = failing("orchestrix_import", str(path), "--database", "other")
    assert "AccountFrozen" in message
    assert "does not decode in this project" in message
    assert "EVENT_MODULES" in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json\n", "not a JSON line"),
        ('{"id": "e-1", "type": "AccountOpened"}\n', "'time' must be a non-empty string"),
        (
            '{"id": "e-1", "type": "AccountOpened", "time": "2024-01-01T00:00:00+00:00", '
            '"data": {}, "streamid": "s", "streamversion": 0}\n',
            "'streamversion' must be a whole number >= 1",
        ),
        (
            '{"id": "e-1", "type": "AccountOpened", "time": "2024-01-01T00:00:00", '
            '"data": {}, "streamid": "s", "streamversion": 1}\n',
            "'time' has no time zone",
        ),
    ],
)
def test_import_names_the_line_that_is_not_an_exported_event(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + text, encoding="utf-8")
    message = failing("orchestrix_import", str(path), "--database", "other")
    assert f"{path}:2: " in message
    assert says in message
    assert "nothing was written" in message


def test_import_of_a_missing_file() -> None:
    message = failing("orchestrix_import", "/nonexistent/log.jsonl", "--database", "other")
    assert "no file /nonexistent/log.jsonl" in message


def test_imported_events_decode_as_the_originals(tmp_path: Path) -> None:
    _, _, unlabelled = history()
    command("orchestrix_import", str(export(tmp_path)), "--database", "other")
    original: list[Event] = DjangoEventStore().load(unlabelled)
    imported: list[Event] = DjangoEventStore("other").load(unlabelled)
    assert imported == original
    assert (
        connections["other"].settings_dict["NAME"] != connections["default"].settings_dict["NAME"]
    )
