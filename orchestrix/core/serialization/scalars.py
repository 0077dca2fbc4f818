"""Scalar annotations (str, int, float, Decimal, UUID, date/time types, bytes): how each is checked,
written and read back, side by side, and how dict keys of those types are parsed.

Each annotation takes the values its decoder gives back equal (``==``) to what
was encoded, and nothing else: a store never keeps what it can't read back.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from orchestrix.core.serialization.json_data import Decoder, Encoder, JsonValue, Mismatch, fail
from orchestrix.core.serialization.tagged import EXPONENT_INTS, encode_float, parse_datetime

__all__ = ["KEY_PARSERS", "SCALAR_RULES"]


def _encode_str(value: Any) -> JsonValue:
    if type(value) is str:
        return value
    if isinstance(value, str):  # a StrEnum member, a str subclass: comes back as its text
        return str.__str__(value)
    raise Mismatch("str", value)


def _encode_int(value: Any) -> JsonValue:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # an IntEnum member
        return int.__int__(value)
    raise Mismatch("int (bool is not an int)" if isinstance(value, bool) else "int", value)


def _encode_bool(value: Any) -> JsonValue:
    if value is True or value is False:
        return value
    raise Mismatch("bool", value)


def _encode_number(value: Any) -> JsonValue:
    """A ``float`` field: a float, or an int (which comes back as the same int)."""
    kind = type(value)
    if kind is float:
        return encode_float(value)
    if kind is int:
        return value
    if isinstance(value, float):
        return encode_float(float.__float__(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__int__(value)
    raise Mismatch("float (or int)", value)


def _encode_none(value: Any) -> JsonValue:
    if value is None:
        return None
    raise Mismatch("None", value)


def _encode_decimal(value: Any) -> JsonValue:
    if isinstance(value, Decimal):
        return str(value)
    raise Mismatch("Decimal", value)


def _encode_uuid(value: Any) -> JsonValue:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise Mismatch("UUID", value)


def _encode_datetime(value: Any) -> JsonValue:
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value.isoformat()
    raise Mismatch("a timezone-aware datetime", value)


def _encode_date(value: Any) -> JsonValue:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    raise Mismatch("date (a datetime is not a date)", value)


def _encode_time(value: Any) -> JsonValue:
    if isinstance(value, time) and (value.tzinfo is None or value.utcoffset() is not None):
        return value.isoformat()
    raise Mismatch("time", value)


def _encode_timedelta(value: Any) -> JsonValue:
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    raise Mismatch("timedelta", value)


def _encode_bytes(value: Any) -> JsonValue:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise Mismatch("bytes", value)


def _decode_str(data: JsonValue) -> str:
    if type(data) is str:
        return data
    raise fail("a string", data)


def _decode_int(data: JsonValue) -> int:
    if type(data) is int:
        return data
    raise fail("an integer", data)


def _decode_bool(data: JsonValue) -> bool:
    if type(data) is bool:
        return data
    raise fail("true or false", data)


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _decode_float(data: JsonValue) -> float:
    kind = type(data)
    if kind is float:
        return data  # type: ignore[no-any-return]
    if kind is int:
        # An int stays an int: `amount: float = 10` must round-trip as 10.
        if -EXPONENT_INTS < data < EXPONENT_INTS:
            return data  # type: ignore[no-any-return]
        return _float_from_integer(data)
    if kind is str and data in _NON_FINITE:
        return _NON_FINITE[data]
    raise fail("a number", data)


def _float_from_integer(value: int) -> float:
    """A large integer found where a float is expected: the float it was, if it was one.

    Python writes ``1e300`` with its exponent; PostgreSQL's jsonb keeps the
    number's decimal value and hands it back as ``1000…0``, an integer. An
    integer that is exactly the decimal value of a float's shortest text is
    taken to be that float (it compares equal to the integer when that is
    exactly representable); any other integer stays an integer.
    """
    try:
        candidate = float(value)
    except OverflowError:
        return value
    if int(Decimal(repr(candidate))) == value:
        return candidate
    return value


def _decode_none(data: JsonValue) -> None:
    if data is None:
        return
    raise fail("null", data)


def _from_string(kind: type, parse: Callable[[str], Any], name: str) -> Decoder:
    def decode(data: JsonValue) -> Any:
        if type(data) is str:
            try:
                return parse(data)
            except (ValueError, TypeError, ArithmeticError, InvalidOperation):
                pass
        elif isinstance(data, kind):
            return data
        raise fail(name, data)

    return decode


def _decode_decimal(data: JsonValue) -> Decimal:
    kind = type(data)
    try:
        if kind is str:
            return Decimal(data)
        if kind is int:
            return Decimal(data)
        if kind is float:
            return Decimal(repr(data))
    except InvalidOperation:
        pass
    raise fail("a decimal number", data)


def _decode_timedelta(data: JsonValue) -> timedelta:
    if type(data) is int:
        try:
            return timedelta(microseconds=data)
        except OverflowError:
            raise fail("a duration within ±999999999 days", data) from None
    raise fail("a duration in microseconds", data)


def _decode_bytes(data: JsonValue) -> bytes:
    if type(data) is str:
        try:
            return base64.b64decode(data.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            pass
    raise fail("base64 text", data)


#: The scalar annotations: how a value is checked and written, and how it is read.
SCALAR_RULES: dict[Any, tuple[Encoder, Decoder]] = {
    str: (_encode_str, _decode_str),
    int: (_encode_int, _decode_int),
    bool: (_encode_bool, _decode_bool),
    float: (_encode_number, _decode_float),
    type(None): (_encode_none, _decode_none),
    None: (_encode_none, _decode_none),
    Decimal: (_encode_decimal, _decode_decimal),
    uuid.UUID: (_encode_uuid, _from_string(uuid.UUID, uuid.UUID, "a UUID")),
    datetime: (
        _encode_datetime,
        _from_string(datetime, parse_datetime, "an ISO 8601 date and time"),
    ),
    date: (_encode_date, _from_string(date, date.fromisoformat, "an ISO 8601 date")),
    time: (_encode_time, _from_string(time, time.fromisoformat, "an ISO 8601 time")),
    timedelta: (_encode_timedelta, _decode_timedelta),
    bytes: (_encode_bytes, _decode_bytes),
}

#: The dict key types: parsed back from their text by these (other key types
#: come back as text, so only str keys are taken for them).
KEY_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    Decimal: Decimal,
    uuid.UUID: uuid.UUID,
    datetime: datetime.fromisoformat,
    date: date.fromisoformat,
    bool: lambda s: {"true": True, "false": False}[s],
}
