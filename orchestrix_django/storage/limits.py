"""What the event store refuses before touching the database: values its columns or JSON can't hold.

The rules, and why each database needs them, are in ``docs/django.md``
("Input the store refuses").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from orchestrix.core.eventsourcing.event_store import unstorable_character
from orchestrix.core.messaging.message import Event
from orchestrix.core.serialization.event_codec import EncodedEvent
from orchestrix_django.models import EventRecord, StreamRecord

__all__ = [
    "MARIADB_MAX_JSON_DEPTH",
    "MAX_EVENT_BYTES",
    "MAX_JSON_DEPTH",
    "check_column_lengths",
    "check_storable",
    "never_stored",
]

#: How deeply an event's stored JSON may nest, its data (or metadata) object
#: being level 1. MySQL's own limit; on PostgreSQL and SQLite, Orchestrix's:
#: reading JSON back costs Python a few frames per level, and a reader deep in
#: a call stack must not hit the recursion limit.
MAX_JSON_DEPTH = 100

#: MariaDB's JSON columns (a CHECK with JSON_VALID) refuse documents nested 32
#: levels deep.
MARIADB_MAX_JSON_DEPTH = 31

#: The largest event the event store stores by default: the JSON text of its
#: data and metadata, in bytes (as sent to the database, non-ASCII characters
#: escaped). Events are facts, not files: keep large payloads
#: elsewhere and store a reference.
MAX_EVENT_BYTES = 8 * 1024 * 1024


def check_column_lengths(
    aggregate_id: str,
    events: Sequence[Event],
    encoded: list[EncodedEvent],
    aggregate_type: str | None = None,
) -> None:
    """Refuse ids and types longer than their columns, before touching the database.

    SQLite ignores VARCHAR lengths and would store them, PostgreSQL and MySQL
    refuse them mid-insert with an error naming neither the event nor the
    field: fail alike everywhere, saying which value is too long.
    """
    limits = {
        name: int(getattr(EventRecord._meta.get_field(name), "max_length", 0) or 0)
        for name in ("stream_id", "event_id", "event_type", "correlation_id", "causation_id")
    }
    if len(aggregate_id) > limits["stream_id"]:
        raise ValueError(
            f"aggregate_id is {len(aggregate_id)} characters long; "
            f"at most {limits['stream_id']} can be stored"
        )
    if aggregate_type:
        most = int(getattr(StreamRecord._meta.get_field("aggregate_type"), "max_length", 0) or 0)
        if len(aggregate_type) > most:
            raise ValueError(
                f"aggregate_type is {len(aggregate_type)} characters long; "
                f"at most {most} can be stored"
            )
        problem = unstorable_character(aggregate_type)
        if problem is not None:
            raise ValueError(f"aggregate_type {aggregate_type[:80]!r} contains {problem}")
    for index, (event, item) in enumerate(zip(events, encoded, strict=True), start=1):
        for name, value in (
            ("event_id", item.event_id),
            ("event_type", item.event_type),
            ("correlation_id", event.correlation_id),
            ("causation_id", event.causation_id),
        ):
            if isinstance(value, str) and len(value) > limits[name]:
                raise ValueError(
                    f"event {index} of the save to {aggregate_id!r} ({item.event_type}) has a "
                    f"{name} of {len(value)} characters; at most {limits[name]} can be stored"
                )


def never_stored(aggregate_id: object) -> bool:
    """Whether ``aggregate_id`` is text no save accepts (NUL, lone surrogates).

    Reads of such an id find nothing, on every database, rather than make the
    driver fail (PostgreSQL refuses NUL in a parameter, no driver encodes a
    lone surrogate): a stream id from a URL is input like any other.
    """
    return type(aggregate_id) is str and unstorable_character(aggregate_id) is not None


class _Unstorable(Exception):
    """A value of an event's JSON that can't be stored; ``path`` says where."""

    def __init__(self, problem: str, hint: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint
        self.path: list[str] = []


#: An int of more bits than this may have more than 4300 digits: checked exactly.
_LONG_INT_BITS = 14_000
#: Characters no database keeps (see unstorable_character), for non-ASCII text.
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")
_NUL_HINT = (
    "PostgreSQL can't store NUL in text, so no database takes it; "
    "store binary data in a bytes field (base64 in JSON)"
)
_SURROGATE_HINT = (
    "a lone surrogate is not a character (decoding invalid UTF-8 with "
    "errors='surrogateescape' leaves them): decode with errors='replace', or keep the raw "
    "bytes in a bytes field"
)


def check_storable(
    aggregate_id: str, encoded: list[EncodedEvent], connection: Any, max_bytes: int
) -> None:
    """Refuse events whose JSON a database would refuse or change, naming the event and field.

    One walk over each event's data and metadata (no JSON text is made for
    events well under ``max_bytes``): strings with NUL or lone surrogates,
    nesting deeper than the database takes, integers JSON can't carry, values
    that are not JSON, and the size.
    """
    mariadb = connection.vendor == "mysql" and bool(connection.mysql_is_mariadb)
    max_depth = MARIADB_MAX_JSON_DEPTH if mariadb else MAX_JSON_DEPTH
    int64_only = connection.vendor == "mysql" and not mariadb
    for index, item in enumerate(encoded, start=1):
        size = 0
        for part, value in (("data", item.data), ("metadata", item.metadata)):
            try:
                size += _json_size(value, 1, max_depth, int64_only)
            except _Unstorable as problem:
                where = "".join(reversed(problem.path))
                raise ValueError(
                    f"event {index} of the save to {aggregate_id!r} ({item.event_type}) can't "
                    f"be stored: {part} field {where} {problem.problem}; {problem.hint}"
                ) from None
        if size > max_bytes:
            # The walk's bound is generous; the exact size decides.
            size = len(_compact_json(item.data)) + len(_compact_json(item.metadata))
            if size > max_bytes:
                raise ValueError(
                    f"event {index} of the save to {aggregate_id!r} ({item.event_type}) is "
                    f"{size} bytes of JSON; at most {max_bytes} can be stored "
                    "(DjangoEventStore.max_event_bytes): keep large payloads outside the "
                    "event store and store a reference to them"
                )


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_size(value: Any, depth: int, max_depth: int, int64_only: bool) -> int:
    """An upper bound of the bytes of ``value`` (a dict or a list) as JSON text.

    Raises :class:`_Unstorable` for what can't be stored. Written for speed
    (every save walks its events): scalars are checked inline, one call per
    container, ASCII strings without a regular expression.
    """
    if depth > max_depth:
        raise _Unstorable(
            f"is nested more than {max_depth} levels deep",
            "MariaDB refuses deeper JSON: flatten the value"
            if max_depth == MARIADB_MAX_JSON_DEPTH
            else "flatten the value",
        )
    is_dict = type(value) is dict
    size = 2
    key: Any = None
    try:
        for key, item in value.items() if is_dict else enumerate(value):
            if is_dict:
                if type(key) is not str:
                    raise _Unstorable("has a key that is not a string", "JSON keys are strings")
                if key.isascii() and "\x00" not in key:
                    size += 6 * len(key) + 4
                else:
                    size += _text_size(key) + 2
            kind = type(item)
            if kind is str:
                if item.isascii() and "\x00" not in item:
                    size += 6 * len(item) + 3
                else:
                    size += _text_size(item) + 1
            elif kind is dict or kind is list:
                size += _json_size(item, depth + 1, max_depth, int64_only) + 1
            elif kind is int:
                size += _int_size(item, int64_only) + 1
            elif kind is float:
                if item - item != 0.0:  # NaN or an infinity
                    raise _Unstorable(
                        f"is {item}, which JSON can't hold",
                        "the codec writes non-finite floats as strings; import them that way",
                    )
                size += 25
            elif item is None or kind is bool:
                size += 6
            else:
                raise _Unstorable(
                    f"is a {kind.__qualname__}, not a JSON value",
                    "an EncodedEvent's data holds only what json.dumps writes",
                )
    except _Unstorable as problem:
        if is_dict:
            problem.path.append(str(key) if depth == 1 else f"[{key!r}]")
        else:
            problem.path.append(f"[{key}]")
        raise
    return size


def _text_size(text: str) -> int:
    """An upper bound of the bytes of ``text`` as a JSON string; raises _Unstorable."""
    if text.isascii():
        if "\x00" not in text:
            return 6 * len(text) + 2  # "\u001f" for a control character
    elif _UNSTORABLE_TEXT.search(text) is None:
        return 12 * len(text) + 2  # "\ud83d\ude00" for an astral character
    problem = str(unstorable_character(text))
    hint = _NUL_HINT if problem.startswith("a NUL") else _SURROGATE_HINT
    raise _Unstorable(f"contains {problem}", hint)


def _int_size(value: int, int64_only: bool) -> int:
    if int64_only and not -(2**63) <= value < 2**64:
        raise _Unstorable(
            "is an integer beyond 64 bits",
            "MySQL's JSON type would keep it as a double, rounded: store it as a "
            "string (a Decimal field)",
        )
    bits = value.bit_length()
    if bits > _LONG_INT_BITS:
        try:
            return len(str(value))
        except ValueError:
            raise _Unstorable(
                "is an integer of more than 4300 digits",
                "Python's json refuses to write it (sys.set_int_max_str_digits)",
            ) from None
    return bits // 3 + 2
