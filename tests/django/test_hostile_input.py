"""Hostile and bad input on the real store: refused clearly, and nothing stored.

Every refusal happens before the database is touched (no query at all), with
a ``ValueError`` or ``TypeError`` that names the event and the field, alike on
SQLite, PostgreSQL and MariaDB/MySQL. Stored rows that are corrupt (written by
another program, or by hand) raise ``EventDecodeError`` or
``UnknownEventTypeError`` naming the stream, version and position on every
read path. (What a projection runner does with them:
tests/django/test_projection_runner.py.)
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from orchestrix.core.common.exceptions import (
    ConcurrencyError,
    EventDecodeError,
    UnknownEventTypeError,
)
from orchestrix.core.eventsourcing.versioning import EventUpcaster, UpcasterRegistry
from orchestrix.core.messaging.message import Event
from orchestrix.core.serialization.event_codec import EncodedEvent
from orchestrix_django.models import EventRecord, StreamRecord
from orchestrix_django.storage.append_only import allow_event_mutation
from orchestrix_django.storage.async_events import DjangoAsyncEventStore
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.limits import (
    MARIADB_MAX_JSON_DEPTH,
    MAX_EVENT_BYTES,
    MAX_JSON_DEPTH,
)
from orchestrix_django.storage.limits import check_storable as _check_storable

pytestmark = pytest.mark.django_db

BIGINT = 2**63 - 1


@dataclass(frozen=True, kw_only=True)
class HostileNoteTaken(Event):
    """An event with a field of each JSON kind (``data``, inherited, is untyped)."""

    text: str = ""
    count: int = 0
    ratio: float = 0.0
    amount: Decimal = Decimal(0)
    extra: Any = None


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def mariadb() -> bool:
    return connection.vendor == "mysql" and bool(connection.mysql_is_mariadb)


def max_depth() -> int:
    return MARIADB_MAX_JSON_DEPTH if mariadb() else MAX_JSON_DEPTH


def nested(levels: int) -> Any:
    """``levels`` lists, one inside the other."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def row_counts() -> tuple[int, int]:
    return EventRecord.objects.count(), StreamRecord.objects.count()


@contextmanager
def refused_before_the_database(
    error: type[Exception], match: str, stream_id: str | None = None
) -> Iterator[None]:
    """The block raises ``error`` (matching ``match``), sends no query, stores nothing."""
    before = row_counts()
    with CaptureQueriesContext(connection) as queries, pytest.raises(error, match=match):
        yield
    assert [q["sql"] for q in queries.captured_queries] == []
    assert row_counts() == before
    if stream_id is not None:
        assert DjangoEventStore().stream_version(stream_id) == 0


def save(stream_id: str, *events: Event, **kwargs: Any) -> None:
    DjangoEventStore().save(stream_id, list(events), **kwargs)


# -- sizes --------------------------------------------------------------------------------


def test_an_event_over_the_size_limit_is_refused() -> None:
    stream_id = new_id("big")
    ten_megabytes = HostileNoteTaken(text="x" * (10 * 1024 * 1024))
    with refused_before_the_database(
        ValueError,
        rf"event 1 .*HostileNoteTaken.* is 1048\d{{4}} bytes of JSON; at most {MAX_EVENT_BYTES}",
        stream_id,
    ):
        save(stream_id, ten_megabytes)


def test_the_size_is_that_of_the_json_text_with_its_escapes() -> None:
    # 1.5 million control characters are 9 MB of JSON ("\u0001" each).
    stream_id = new_id("big")
    with refused_before_the_database(ValueError, "bytes of JSON", stream_id):
        save(stream_id, HostileNoteTaken(text="\x01" * 1_500_000))


def test_an_event_under_the_size_limit_stores_and_reads_back() -> None:
    stream_id = new_id("big")
    text = "é" + "x" * (6 * 1024 * 1024)  # 6 MiB: under the limit and MariaDB's packet
    event = HostileNoteTaken(text=text, extra={"tail": "ok"})
    save(stream_id, event, expected_version=0)
    [loaded] = DjangoEventStore().load(stream_id)
    assert isinstance(loaded, HostileNoteTaken)
    assert loaded.text == text and loaded.extra == {"tail": "ok"}


# -- nesting ------------------------------------------------------------------------------


def test_data_too_deep_for_python_is_a_value_error_naming_the_field() -> None:
    stream_id = new_id("deep")
    with refused_before_the_database(
        ValueError, r"HostileNoteTaken\.extra is nested too deeply", stream_id
    ):
        save(stream_id, HostileNoteTaken(extra=nested(10_000)))


def test_data_deeper_than_the_database_takes_is_refused() -> None:
    stream_id = new_id("deep")
    # The data object is level 1: `extra` holding n nested lists makes n + 1 levels.
    with refused_before_the_database(
        ValueError,
        rf"data field extra(\[0\])+ is nested more than {max_depth()} levels deep",
        stream_id,
    ):
        save(stream_id, HostileNoteTaken(extra=nested(max_depth())))
    with refused_before_the_database(ValueError, "nested more than", stream_id):
        save(stream_id, HostileNoteTaken(data={"a": nested(max_depth() + 50)}))


def test_data_at_the_depth_limit_stores_and_reads_back() -> None:
    stream_id = new_id("deep")
    deepest = nested(max_depth() - 1)
    save(stream_id, HostileNoteTaken(extra=deepest))
    [loaded] = DjangoEventStore().load(stream_id)
    assert isinstance(loaded, HostileNoteTaken) and loaded.extra == deepest


# -- text: NUL, lone surrogates -----------------------------------------------------------


@pytest.mark.parametrize(
    ("stream_id", "event", "match"),
    [
        pytest.param(
            "acc\x00-1",
            HostileNoteTaken(),
            r"aggregate_id 'acc\\x00-1' contains a NUL character at index 3",
            id="stream-id",
        ),
        pytest.param(
            None,
            HostileNoteTaken(id="e\x00"),
            r"event id 'e\\x00' contains a NUL character",
            id="event-id",
        ),
        pytest.param(
            None,
            HostileNoteTaken(type="HostileNote\x00Taken"),
            r"type of event .* contains a NUL character",
            id="event-type",
        ),
        pytest.param(
            None,
            HostileNoteTaken(text="a\x00b"),
            r"event 1 .*\(HostileNoteTaken\) can't be stored: data field text contains a NUL "
            r"character at index 1; PostgreSQL can't store NUL",
            id="data",
        ),
        pytest.param(
            None,
            HostileNoteTaken(extra={"ok": ["fine", {"k\x00": 1}]}),
            r"data field extra\['ok'\]\[1\]\['k\\x00'\] contains a NUL character",
            id="data-key",
        ),
        pytest.param(
            None,
            HostileNoteTaken(correlation_id="c\x00"),
            r"metadata field correlation_id contains a NUL character",
            id="metadata",
        ),
    ],
)
def test_nul_characters_are_refused_everywhere(
    stream_id: str | None, event: Event, match: str
) -> None:
    stream_id = stream_id or new_id("nul")
    with refused_before_the_database(ValueError, match):
        save(stream_id, event)
    assert DjangoEventStore().load(stream_id) == []
    assert DjangoEventStore().stream_version(stream_id) == 0


@pytest.mark.parametrize(
    ("stream_id", "event", "match"),
    [
        pytest.param(
            "acc-\udcff",
            HostileNoteTaken(),
            r"aggregate_id .* contains a lone surrogate \('\\udcff'\)",
            id="stream-id",
        ),
        pytest.param(
            None,
            HostileNoteTaken(text="bad \ud800 utf-8"),
            r"data field text contains a lone surrogate \('\\ud800'\) at index 4; a lone "
            r"surrogate is not a character",
            id="data",
        ),
        pytest.param(
            None,
            HostileNoteTaken(subject="\udc80"),
            r"metadata field subject contains a lone surrogate",
            id="metadata",
        ),
    ],
)
def test_lone_surrogates_are_refused_everywhere(
    stream_id: str | None, event: Event, match: str
) -> None:
    stream_id = stream_id or new_id("utf8")
    with refused_before_the_database(ValueError, match):
        save(stream_id, event)
    # A stream id that can't be stored can't be read either: nothing is there.
    assert DjangoEventStore().load(stream_id) == []
    assert DjangoEventStore().stream_version(stream_id) == 0


def test_text_that_only_looks_like_nul_or_surrogates_is_stored() -> None:
    stream_id = new_id("text-ok")
    # A backslash then "u0000", a real astral character (a surrogate pair in
    # JSON escapes), and every other control character.
    text = "\\u0000 \\ud800 😀 " + "".join(chr(c) for c in range(1, 32)) + "\u2028"
    save(stream_id, HostileNoteTaken(text=text, extra={"😀\\u0000": text}))
    [loaded] = DjangoEventStore().load(stream_id)
    assert isinstance(loaded, HostileNoteTaken)
    assert loaded.text == text and loaded.extra == {"😀\\u0000": text}


# -- ids, types and lengths -----------------------------------------------------------------


def test_a_stream_id_longer_than_its_column_is_refused() -> None:
    with refused_before_the_database(ValueError, "aggregate_id is 256 characters long"):
        save("s" * 256, HostileNoteTaken())


def test_the_longest_stream_id_with_multibyte_characters_stores() -> None:
    stream_id = "ß😀" * 127 + "x"  # 255 characters, 766 bytes of UTF-8
    save(stream_id, HostileNoteTaken(text="long id"), expected_version=0)
    [loaded] = DjangoEventStore().load(stream_id)
    assert isinstance(loaded, HostileNoteTaken) and loaded.text == "long id"


def test_an_aggregate_type_longer_than_its_column_is_refused() -> None:
    stream_id = new_id("type")
    with refused_before_the_database(ValueError, "aggregate_type is 300 characters", stream_id):
        DjangoEventStore().save(stream_id, [HostileNoteTaken()], aggregate_type="T" * 300)


@pytest.mark.parametrize("bad", ["", 5, None])
def test_a_stream_id_that_is_not_text_is_refused(bad: Any) -> None:
    with refused_before_the_database(ValueError, "aggregate_id must be a non-empty string"):
        save(bad, HostileNoteTaken())


# -- versions and positions -----------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 2**63, 2**200, True, "1", 1.0])
def test_an_expected_version_out_of_range_is_refused(bad: Any) -> None:
    stream_id = new_id("version")
    with refused_before_the_database(ValueError, "expected_version must be None or an int from 0"):
        save(stream_id, HostileNoteTaken(), expected_version=bad)


def test_the_largest_expected_version_is_an_ordinary_conflict() -> None:
    stream_id = new_id("version")
    before = row_counts()
    with pytest.raises(ConcurrencyError, match=f"expected version {BIGINT}, actual version 0"):
        save(stream_id, HostileNoteTaken(), expected_version=BIGINT)
    assert row_counts() == before


@pytest.mark.parametrize(
    ("bad", "error"),
    [(-1, ValueError), (2**63, ValueError), (10**30, ValueError), ("0", TypeError)],
)
def test_a_from_version_out_of_range_is_refused_on_every_read_path(
    bad: Any, error: type[Exception]
) -> None:
    stream_id = new_id("from")
    save(stream_id, HostileNoteTaken())
    store = DjangoEventStore()
    readers: list[Callable[[], object]] = [
        lambda: store.load(stream_id, from_version=bad),
        lambda: store.iter_stream(stream_id, from_version=bad),
        lambda: async_to_sync(DjangoAsyncEventStore().load)(stream_id, bad),
    ]
    for read in readers:
        with (
            CaptureQueriesContext(connection) as queries,
            pytest.raises(error, match="from_version"),
        ):
            read()
        assert queries.captured_queries == []


def test_the_largest_from_version_reads_nothing() -> None:
    stream_id = new_id("from")
    save(stream_id, HostileNoteTaken())
    assert DjangoEventStore().load(stream_id, from_version=BIGINT) == []
    assert list(DjangoEventStore().iter_stream(stream_id, from_version=BIGINT)) == []


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"after_position": 2**63}, ValueError, "after_position must be at most 2\\*\\*63-1"),
        ({"after_position": "0"}, TypeError, "after_position must be an int"),
        ({"after_position": 1.5}, TypeError, "after_position must be an int"),
        ({"limit": 0}, ValueError, "limit must be >= 1"),
        ({"limit": -(2**70)}, ValueError, "limit must be >= 1"),
        ({"limit": "10"}, TypeError, "limit must be an int"),
        ({"before_position": 2**64}, ValueError, "before_position must be at most"),
    ],
)
def test_read_all_refuses_positions_and_limits_out_of_range(
    arguments: dict[str, Any], error: type[Exception], match: str
) -> None:
    readers: list[Callable[[], object]] = [lambda: DjangoEventStore().read_all(**arguments)]
    if "before_position" not in arguments:  # the async store has no before_position
        readers.append(lambda: async_to_sync(DjangoAsyncEventStore().read_all)(**arguments))
    for read in readers:
        with CaptureQueriesContext(connection) as queries, pytest.raises(error, match=match):
            read()
        assert queries.captured_queries == []


def test_read_all_takes_extreme_but_valid_positions_and_limits() -> None:
    stream_id = new_id("log")
    save(stream_id, HostileNoteTaken(text="one"), HostileNoteTaken(text="two"))
    store = DjangoEventStore()
    assert store.read_all(after_position=BIGINT) == []
    ours = [
        r for r in store.read_all(after_position=-(2**70), limit=2**70) if r.stream_id == stream_id
    ]
    assert [r.version for r in ours] == [1, 2]  # before the first position: from the start
    first = ours[0].position
    assert (
        store.read_all(after_position=first - 1, limit=1, before_position=BIGINT)[0].position
        == first
    )


# -- numbers ------------------------------------------------------------------------------


def test_an_integer_json_cannot_carry_is_refused() -> None:
    stream_id = new_id("int")
    with refused_before_the_database(
        ValueError, "data field count is an integer of more than 4300 digits", stream_id
    ):
        save(stream_id, HostileNoteTaken(count=10**5000))


def test_big_integers_and_floats_come_back_exactly() -> None:
    stream_id = new_id("numbers")
    floats = [1e16, -1e16, 1e300, 1.7976931348623157e308, 5e-324, 0.1, 9007199254740993.0]
    events = [
        HostileNoteTaken(count=10**4000 + 7, ratio=ratio, extra=[ratio, -(10**40)])
        for ratio in floats
    ]
    save(stream_id, *events)
    loaded = DjangoEventStore().load(stream_id)
    for event, back in zip(events, loaded, strict=True):
        assert isinstance(back, HostileNoteTaken)
        assert back.count == event.count
        assert type(back.ratio) is float and back.ratio == event.ratio
        assert back.extra == event.extra and type(back.extra[0]) is float


def test_negative_zero_keeps_its_sign_except_on_postgresql() -> None:
    stream_id = new_id("zero")
    save(stream_id, HostileNoteTaken(ratio=-0.0))
    [back] = DjangoEventStore().load(stream_id)
    assert isinstance(back, HostileNoteTaken) and back.ratio == 0.0
    # jsonb keeps numbers as numeric, which has no negative zero.
    expected_sign = 1.0 if connection.vendor == "postgresql" else -1.0
    assert math.copysign(1.0, back.ratio) == expected_sign


def test_mysql_would_round_integers_beyond_64_bits() -> None:
    """MySQL's JSON type (not MariaDB's text) keeps such integers as doubles."""

    class MySQL:
        vendor = "mysql"
        mysql_is_mariadb = False

    encoded = [EncodedEvent("e", "HostileNoteTaken", 1, datetime.now(UTC), {"count": 2**64}, {})]
    with pytest.raises(ValueError, match="count is an integer beyond 64 bits"):
        _check_storable("s", encoded, MySQL(), MAX_EVENT_BYTES)
    encoded[0].data["count"] = 2**64 - 1
    _check_storable("s", encoded, MySQL(), MAX_EVENT_BYTES)


def test_an_imported_event_with_non_json_data_is_refused() -> None:
    stream_id = new_id("import")
    good = DjangoEventStore().codec.encode(HostileNoteTaken(ratio=1.5))
    nan = EncodedEvent(
        good.event_id, good.event_type, 1, good.timestamp, {**good.data, "ratio": math.nan}, {}
    )
    with pytest.raises(ValueError, match="data field ratio is nan, which JSON can't hold"):
        DjangoEventStore().save_encoded(stream_id, [nan])
    assert not EventRecord.objects.filter(stream_id=stream_id).exists()


# -- corrupt stored rows ----------------------------------------------------------------------


@contextmanager
def check_constraints_off() -> Iterator[None]:
    """Let a raw INSERT store what the JSON columns' CHECK would refuse (not on PostgreSQL)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("PRAGMA ignore_check_constraints = ON")
        elif connection.vendor == "mysql":
            cursor.execute("SET SESSION check_constraint_checks = OFF")
        try:
            yield
        finally:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA ignore_check_constraints = OFF")
            elif connection.vendor == "mysql":
                cursor.execute("SET SESSION check_constraint_checks = ON")


def insert_raw(
    stream_id: str,
    data_text: str,
    *,
    event_type: str = "HostileNoteTaken",
    schema_version: int = 1,
    metadata_text: str = "{}",
) -> int:
    """Insert a row with raw SQL, its JSON given as text, as another program could."""
    table = connection.ops.quote_name(EventRecord._meta.db_table)
    columns = [
        "stream_id",
        "version",
        "event_id",
        "event_type",
        "schema_version",
        "data",
        "metadata",
        "timestamp",
        "recorded_at",
    ]
    now = connection.ops.adapt_datetimefield_value(datetime.now(UTC))
    values = [stream_id, 1, str(uuid.uuid4()), event_type, schema_version]
    values += [data_text, metadata_text, now, now]
    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {table} ({quoted}) VALUES ({placeholders})", values)
    # Only the position: Django's JSONField would parse the data.
    return int(
        EventRecord.objects.filter(stream_id=stream_id).values_list("position", flat=True)[0]
    )


def every_read(stream_id: str, position: int) -> list[Callable[[], object]]:
    store = DjangoEventStore()
    return [
        lambda: store.load(stream_id),
        lambda: list(store.iter_stream(stream_id)),
        lambda: store.read_all(after_position=position - 1),
        lambda: async_to_sync(DjangoAsyncEventStore().load)(stream_id),
        lambda: async_to_sync(DjangoAsyncEventStore().read_all)(position - 1),
    ]


CORRUPT_JSON = {
    "valid JSON of the wrong shape": ('{"text": 5, "count": "many"}', "text: expected a string"),
    "a JSON array": ("[1, 2]", "JSON objects"),
    "a JSON string": ('"text"', "JSON objects"),
    "tagged nonsense": (
        json.dumps({"extra": {"__orchestrix_type__": "set", "value": [[1]]}}),
        "extra: bad set value",
    ),
    "an integer too long for Python": ('{"count": ' + "9" * 5000 + "}", "4300 digits"),
    "nesting too deep for Python": (
        '{"extra": ' + "[" * 5000 + "]" * 5000 + "}",
        "nested too deeply",
    ),
}


@pytest.mark.parametrize("kind", list(CORRUPT_JSON))
def test_stored_json_that_does_not_decode_names_the_event_on_every_read_path(kind: str) -> None:
    text, detail = CORRUPT_JSON[kind]
    stream_id = new_id("corrupt")
    with check_constraints_off():
        position = insert_raw(stream_id, text)
    for read in every_read(stream_id, position):
        with pytest.raises(EventDecodeError) as caught:
            read()
        error = caught.value
        assert (error.stream_id, error.version, error.event_type) == (
            stream_id,
            1,
            "HostileNoteTaken",
        )
        assert error.position == position
        assert detail in str(error) and repr(stream_id) in str(error)


@pytest.mark.parametrize("text", ["not json", '{"text": "unterminated', "{} {}", ""])
def test_text_that_is_not_json_is_refused_by_postgresql_or_named_on_reading(text: str) -> None:
    stream_id = new_id("garbage")
    if connection.vendor == "postgresql":
        # jsonb parses what it stores: such a row can't exist there.
        with pytest.raises(DatabaseError), transaction.atomic():
            insert_raw(stream_id, text)
        return
    with check_constraints_off():
        position = insert_raw(stream_id, text)
    for read in every_read(stream_id, position):
        with pytest.raises(EventDecodeError, match="the stored data is not valid JSON") as caught:
            read()
        assert (caught.value.stream_id, caught.value.position) == (stream_id, position)


@pytest.mark.parametrize(
    ("event_type", "schema_version", "shown"),
    [
        ("NoSuchHostileType", 1, "'NoSuchHostileType' schema version 1"),
        ("HostileNoteTaken", 7, "'HostileNoteTaken' schema version 7"),
    ],
)
def test_an_unknown_type_or_schema_version_names_the_event_and_its_position(
    event_type: str, schema_version: int, shown: str
) -> None:
    stream_id = new_id("unknown")
    position = insert_raw(stream_id, "{}", event_type=event_type, schema_version=schema_version)
    for read in every_read(stream_id, position):
        with pytest.raises(UnknownEventTypeError) as caught:
            read()
        error = caught.value
        assert (error.stream_id, error.version, error.event_type) == (stream_id, 1, event_type)
        assert shown in str(error)
    with pytest.raises(UnknownEventTypeError) as caught:
        DjangoEventStore().read_all(after_position=position - 1)
    assert caught.value.position == position
    assert f"position {position}" in str(caught.value)


@dataclass(frozen=True, kw_only=True)
class HostileRenamedV1(Event):
    type: str = "HostileRenamed"
    schema_version: ClassVar[int] = 1
    name: str


@dataclass(frozen=True, kw_only=True)
class HostileRenamed(Event):
    schema_version: ClassVar[int] = 2
    first: str
    last: str


class SplitName(EventUpcaster[HostileRenamedV1, HostileRenamed]):
    async def upcast(self, event: Event) -> HostileRenamed:
        assert isinstance(event, HostileRenamedV1)
        first, last = event.name.split(" ")  # "Cher": ValueError, a bug for old data
        return HostileRenamed(first=first, last=last, id=event.id, timestamp=event.timestamp)


def test_an_upcaster_failing_on_a_stored_event_is_a_decode_error_naming_it() -> None:
    upcasters = UpcasterRegistry()
    upcasters.register("HostileRenamed", SplitName(1, 2))
    store = DjangoEventStore(upcasters=upcasters)
    stream_id = new_id("upcast")
    store.save(stream_id, [HostileRenamedV1(name="Ada Lovelace"), HostileRenamedV1(name="Cher")])
    first, second = EventRecord.objects.filter(stream_id=stream_id).order_by("version")
    with pytest.raises(EventDecodeError, match="upcasting failed: ValueError") as caught:
        store.load(stream_id)
    error = caught.value
    assert (error.stream_id, error.version, error.position) == (stream_id, 2, second.position)
    assert error.event_type == "HostileRenamed" and isinstance(error.__cause__, ValueError)
    [readable] = store.read_all(after_position=first.position - 1, limit=1)
    assert isinstance(readable.event, HostileRenamed) and readable.event.last == "Lovelace"


def test_bytes_that_are_not_utf8_are_refused_by_the_database_or_named_on_reading() -> None:
    stream_id = new_id("bytes")
    table = connection.ops.quote_name(EventRecord._meta.db_table)
    not_utf8 = "7B2274657874223A22FF227D"  # {"text":"\xff"}
    position = insert_raw(stream_id, "{}")
    if connection.vendor == "postgresql":
        # The server's encoding (UTF8) checks every text it is given.
        with (
            pytest.raises(DatabaseError, match="invalid byte sequence"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(f"SELECT convert_from('\\x{not_utf8}'::bytea, 'UTF8')")
        return
    # Bytes written straight into the text column, as a careless tool with the
    # right to change stored events could.
    with check_constraints_off(), allow_event_mutation(), connection.cursor() as cursor:
        update = f"UPDATE {table} SET data = %s WHERE position = %s"
        if connection.vendor == "sqlite":
            cursor.execute(update.replace("%s", f"CAST(X'{not_utf8}' AS TEXT)", 1), [position])
        else:
            # utf8mb4 in strict mode (Django's default) checks the encoding.
            with pytest.raises(DatabaseError, match="Incorrect string value"):
                cursor.execute(update.replace("%s", f"X'{not_utf8}'", 1), [position])
            return
    for read in every_read(stream_id, position):
        with pytest.raises(EventDecodeError, match="not valid UTF-8"):
            read()
