"""Values in untyped positions (``Any``, ``object``, ``Message.data``), tagged where JSON can't say.

A value JSON has no type for is written as a small tagged object
(``{"__orchestrix_type__": "decimal", "value": "1.10"}``) so it comes back as what it was.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import math
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from orchestrix.core.serialization.json_data import (
    DecodeFailure,
    Encoder,
    JsonValue,
    Mismatch,
    shown,
)

__all__ = [
    "EXPONENT_FLOATS",
    "EXPONENT_INTS",
    "TAG",
    "decode_tagged",
    "encode_float",
    "encode_items",
    "encode_mapping",
    "encode_tagged",
    "json_key",
    "parse_datetime",
    "sorted_if_possible",
    "untyped_key",
]

#: The key that marks a tagged value in untyped positions.
TAG = "__orchestrix_type__"


def encode_items(encode: Encoder, items: Any) -> list[JsonValue]:
    """``[encode(item) for item in items]``; a mismatch gets the index of its item."""
    try:
        return [encode(item) for item in items]
    except Mismatch:
        # The failure path only: find the item again, to say where it is.
        for index, item in enumerate(items):
            try:
                encode(item)
            except Mismatch as mismatch:
                raise mismatch.at(f"[{index}]") from None
        raise


def encode_mapping(encode_key: Encoder, encode: Encoder, items: Mapping[Any, Any]) -> JsonValue:
    """A mapping as a JSON object; a mismatch gets the key of its entry."""
    try:
        return {encode_key(k): encode(v) for k, v in items.items()}
    except Mismatch:
        for key, item in items.items():
            try:
                encode_key(key)
                encode(item)
            except Mismatch as mismatch:
                raise mismatch.at(f"[{key!r}]") from None
        raise


def encode_float(value: float) -> JsonValue:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


#: Floats from this magnitude on are written with an exponent (``1e+16``), which
#: PostgreSQL's jsonb turns into the integer ``10000000000000000``: see
#: :func:`_float_from_integer` and the tagged floats of untyped positions.
EXPONENT_FLOATS = 1e16
EXPONENT_INTS = 10**16


def encode_tagged(value: Any) -> JsonValue:
    """Encode a value whose annotation is unknown, tagging what JSON can't say."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        if -EXPONENT_FLOATS < value < EXPONENT_FLOATS:
            return value
        # Non-finite, or large enough for a database to hand it back as an int.
        return {TAG: "float", "value": encode_float(value)}
    if kind is list:
        return encode_items(encode_tagged, value)
    if kind is dict:
        encoded: dict[str, JsonValue] = encode_mapping(untyped_key, encode_tagged, value)
        if TAG in encoded:
            return {TAG: "dict", "value": encoded}
        return encoded
    if isinstance(value, enum.Enum):
        # Untyped, a member is stored as its value and comes back as that value:
        # the same only for members equal to their value (StrEnum, IntEnum).
        if value == value.value:
            return encode_tagged(value.value)
        raise Mismatch(
            f"a JSON value (an enum member is stored as its value here: annotate the field "
            f"with {type(value).__qualname__} to keep it)",
            value,
        )
    if isinstance(value, bool | int | str):  # subclasses of the JSON types
        return value if not isinstance(value, float) else encode_float(value)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise Mismatch("a timezone-aware datetime", value)
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, time):
        return {TAG: "time", "value": value.isoformat()}
    if isinstance(value, timedelta):
        return {TAG: "timedelta", "value": value // timedelta(microseconds=1)}
    if isinstance(value, Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    if isinstance(value, bytes | bytearray):
        return {TAG: "bytes", "value": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float):
        return encode_tagged(float(value))
    if isinstance(value, tuple):
        return {TAG: "tuple", "value": encode_items(encode_tagged, value)}
    if isinstance(value, set | frozenset):
        items = sorted_if_possible(encode_items(encode_tagged, value))
        return {TAG: "frozenset" if isinstance(value, frozenset) else "set", "value": items}
    if isinstance(value, list):
        return encode_items(encode_tagged, value)
    if isinstance(value, Mapping):
        return encode_tagged(dict(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raise Mismatch(
            f"a JSON value (a dataclass comes back as a dict here: annotate the field "
            f"with {kind.__qualname__} to keep it)",
            value,
        )
    raise Mismatch(
        "JSON types, Decimal, UUID, date/time types, bytes, or lists, tuples, sets and "
        "dicts of them (annotate the field to store enums and dataclasses)",
        value,
    )


def untyped_key(key: Any) -> str:
    """A key of an untyped dict: text, which is what it comes back as."""
    if isinstance(key, str):
        return key if type(key) is str else str.__str__(key)
    raise Mismatch(
        "a str key (an untyped dict's keys come back as text: annotate the field, "
        "e.g. dict[int, str], to store other keys)",
        key,
    )


def sorted_if_possible(items: list[JsonValue]) -> list[JsonValue]:
    try:
        return sorted(items)
    except TypeError:
        return items


_TAG_DECODERS: dict[str, Callable[[Any], Any]] = {
    "float": lambda v: float(v) if type(v) is not bool else _not_a_float(v),
    "datetime": lambda v: parse_datetime(v),
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(microseconds=v),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": lambda v: base64.b64decode(v.encode("ascii"), validate=True),
}


def parse_datetime(text: str) -> datetime:
    """A stored datetime, timezone-aware: a naive one (which no save takes any
    more, but an older version stored) is read as UTC, as every timestamp is."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _not_a_float(value: Any) -> float:
    raise TypeError(f"{value!r} is not a number")


def decode_tagged(data: JsonValue) -> Any:
    kind = type(data)
    if data is None or kind is bool or kind is int or kind is str or kind is float:
        return data
    if kind is list:
        return [decode_tagged(v) for v in data]
    if kind is dict:
        tag = data.get(TAG)
        if tag is None:
            return {k: decode_tagged(v) for k, v in data.items()}
        if not isinstance(tag, str) or "value" not in data:
            raise DecodeFailure(f"malformed tagged value {data!r}")
        value = data["value"]
        if tag == "dict":
            if not isinstance(value, dict):
                raise DecodeFailure("tagged dict without an object value")
            return {k: decode_tagged(v) for k, v in value.items()}
        if tag in ("tuple", "set", "frozenset"):
            if not isinstance(value, list):
                raise DecodeFailure(f"tagged {tag} without a list value")
            items = [decode_tagged(v) for v in value]
            try:
                return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
            except TypeError as error:  # an unhashable item in a set
                raise DecodeFailure(f"bad {tag} value: {error}") from None
        decoder = _TAG_DECODERS.get(tag)
        if decoder is None:
            raise DecodeFailure(f"unknown value tag {tag!r}")
        try:
            return decoder(value)
        except (ValueError, TypeError, AttributeError, ArithmeticError, InvalidOperation) as error:
            raise DecodeFailure(f"bad {tag} value {shown(value)}: {error}") from None
    raise DecodeFailure(f"not a JSON value: {data!r}")


def json_key(value: JsonValue) -> str:
    """The object key a JSON scalar is written as (see KEY_PARSERS for the way back)."""
    if type(value) is str:
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        return str(encode_float(value)) if not math.isfinite(value) else repr(value)
    return repr(value)
