"""A lossless JSON codec for events and the values they carry.

Values are encoded to plain JSON guided by the dataclass field annotations, so
the stored JSON is what another system expects to read (a ``Decimal`` is the
string ``"10.50"``, a ``UUID`` its canonical string, a ``datetime`` ISO 8601),
and decoded back through the same annotations into the same Python types:
str, int, float (also NaN and infinities), Decimal, bool, None, UUID,
datetime, date, time, timedelta, bytes, enums, Literal, lists, tuples, sets,
dicts (with typed keys), unions and nested dataclasses.

Encoding checks while it writes: each value must be one its annotation's
decoder gives back equal (``==``), or :class:`EncodeError` names the field
(its path, ``lines[2].price``), what the annotation takes and what it got.
So an ``int`` field refuses ``"12"`` and ``True``, a ``Decimal`` field a
float, a ``datetime`` field a naive datetime (every timestamp is
timezone-aware), a ``tuple`` field a list. The rules of each scalar type sit
side by side with its decoder (``_SCALAR_RULES``), and collections share the
type they are read back as (``_COLLECTIONS``): one set of rules for both
ways. Decoding stays lenient with what older versions stored: a naive
datetime they kept is read as UTC.

Where the annotation says nothing (``Any``, ``object``, or the inherited
``Message.data``), non-JSON values are written as small tagged objects
(``{"__orchestrix_type__": "decimal", "value": "1.10"}``) so that they still
come back as what they were. Enums and dataclasses can't be told apart from
their plain values there (their class cannot be known safely from stored
data): an enum member is taken only when it equals its value (``StrEnum``,
``IntEnum``), a dataclass never; give the field a type to keep them.

What databases do to JSON is taken into account: PostgreSQL's jsonb hands a
float written with an exponent (``1e+300``) back as an integer, so untyped
floats from 1e16 up are tagged, and where a float is expected an integer that
is exactly such a float's decimal value comes back as that float. (jsonb also
drops the sign of ``-0.0``.) In a union, a str, int, bool or float value comes
back as the member of its own type (``"1.5"`` in ``Decimal | str`` stays a
str); a container value is encoded by the one member of its container type,
tagged with the member when the JSON shape alone can't tell.

Decoding never calls ``__init__``: a stored event is a historical fact, and a
validation rule added to the class later must not make history unreadable.
"""

from __future__ import annotations

import base64
import collections.abc as abc
import contextlib
import dataclasses
import enum
import inspect
import math
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Union

from orchestrix.core.common.exceptions import EncodeError, EventDecodeError
from orchestrix.core.messaging.message import (
    CLOUDEVENT_FIELDS,
    Event,
    EventRegistry,
    Message,
    default_registry,
)

__all__ = [
    "TAG",
    "DataclassCodec",
    "DecodeFailure",
    "EncodedEvent",
    "EventCodec",
    "JsonValue",
    "dataclass_codec",
    "decode_value",
    "encode_value",
    "from_cloudevent",
    "to_cloudevent",
]

JsonValue = Any  # JSON-compatible: None, bool, int, float, str, list, dict[str, ...]

#: The key that marks a tagged value in untyped positions.
TAG = "__orchestrix_type__"

#: Message fields kept in the ``metadata`` part of an encoded event.
METADATA_FIELDS: tuple[str, ...] = tuple(
    f for f in CLOUDEVENT_FIELDS if f not in {"id", "type", "timestamp", "data"}
)

_Encoder = Callable[[Any], JsonValue]
_Decoder = Callable[[JsonValue], Any]


class DecodeFailure(ValueError):
    """A value did not match its annotation; ``path`` says where."""

    def __init__(self, detail: str, path: str = "") -> None:
        self.detail = detail
        self.path = path
        super().__init__(f"{path}: {detail}" if path else detail)

    def at(self, segment: str) -> DecodeFailure:
        """The same failure, one level further out."""
        return DecodeFailure(self.detail, _join_path(segment, self.path))


def _join_path(segment: str, path: str) -> str:
    """``segment`` followed by ``path``: ``lines`` + ``[2].price`` = ``lines[2].price``."""
    if not path:
        return segment
    return f"{segment}{path}" if path.startswith("[") else f"{segment}.{path}"


class _Mismatch(Exception):
    """While encoding: a value the decoder would not give back as it is (see EncodeError).

    Raised where the value is found and given its path on the way out
    (:meth:`at`); the public entry points turn it into :class:`EncodeError`.
    """

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.path = ""

    def at(self, segment: str) -> _Mismatch:
        """The same mismatch, one level further out."""
        self.path = _join_path(segment, self.path)
        return self

    def error(self, event_type: str | None = None) -> EncodeError:
        """The public error for this mismatch."""
        return EncodeError(self.expected, _received(self.value), self.path, event_type=event_type)


def _received(value: Any) -> str:
    """The type of ``value`` and the value, for an error message."""
    if isinstance(value, datetime) and value.utcoffset() is None:
        return f"a naive datetime ({value.isoformat()})"
    return f"{type(value).__qualname__} {_shown(value)}"


def _encode_items(encode: _Encoder, items: Any) -> list[JsonValue]:
    """``[encode(item) for item in items]``; a mismatch gets the index of its item."""
    try:
        return [encode(item) for item in items]
    except _Mismatch:
        # The failure path only: find the item again, to say where it is.
        for index, item in enumerate(items):
            try:
                encode(item)
            except _Mismatch as mismatch:
                raise mismatch.at(f"[{index}]") from None
        raise


def _encode_mapping(encode_key: _Encoder, encode: _Encoder, items: Mapping[Any, Any]) -> JsonValue:
    """A mapping as a JSON object; a mismatch gets the key of its entry."""
    try:
        return {encode_key(k): encode(v) for k, v in items.items()}
    except _Mismatch:
        for key, item in items.items():
            try:
                encode_key(key)
                encode(item)
            except _Mismatch as mismatch:
                raise mismatch.at(f"[{key!r}]") from None
        raise


# ---------------------------------------------------------------- values, untyped


def _encode_float(value: float) -> JsonValue:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


#: Floats from this magnitude on are written with an exponent (``1e+16``), which
#: PostgreSQL's jsonb turns into the integer ``10000000000000000``: see
#: :func:`_float_from_integer` and the tagged floats of untyped positions.
_EXPONENT_FLOATS = 1e16
_EXPONENT_INTS = 10**16


def _encode_tagged(value: Any) -> JsonValue:
    """Encode a value whose annotation is unknown, tagging what JSON can't say."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        if -_EXPONENT_FLOATS < value < _EXPONENT_FLOATS:
            return value
        # Non-finite, or large enough for a database to hand it back as an int.
        return {TAG: "float", "value": _encode_float(value)}
    if kind is list:
        return _encode_items(_encode_tagged, value)
    if kind is dict:
        encoded: dict[str, JsonValue] = _encode_mapping(_untyped_key, _encode_tagged, value)
        if TAG in encoded:
            return {TAG: "dict", "value": encoded}
        return encoded
    if isinstance(value, enum.Enum):
        # Untyped, a member is stored as its value and comes back as that value:
        # the same only for members equal to their value (StrEnum, IntEnum).
        if value == value.value:
            return _encode_tagged(value.value)
        raise _Mismatch(
            f"a JSON value (an enum member is stored as its value here: annotate the field "
            f"with {type(value).__qualname__} to keep it)",
            value,
        )
    if isinstance(value, bool | int | str):  # subclasses of the JSON types
        return value if not isinstance(value, float) else _encode_float(value)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise _Mismatch("a timezone-aware datetime", value)
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
        return _encode_tagged(float(value))
    if isinstance(value, tuple):
        return {TAG: "tuple", "value": _encode_items(_encode_tagged, value)}
    if isinstance(value, set | frozenset):
        items = _sorted_if_possible(_encode_items(_encode_tagged, value))
        return {TAG: "frozenset" if isinstance(value, frozenset) else "set", "value": items}
    if isinstance(value, list):
        return _encode_items(_encode_tagged, value)
    if isinstance(value, Mapping):
        return _encode_tagged(dict(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raise _Mismatch(
            f"a JSON value (a dataclass comes back as a dict here: annotate the field "
            f"with {kind.__qualname__} to keep it)",
            value,
        )
    raise _Mismatch(
        "JSON types, Decimal, UUID, date/time types, bytes, or lists, tuples, sets and "
        "dicts of them (annotate the field to store enums and dataclasses)",
        value,
    )


def _untyped_key(key: Any) -> str:
    """A key of an untyped dict: text, which is what it comes back as."""
    if isinstance(key, str):
        return key if type(key) is str else str.__str__(key)
    raise _Mismatch(
        "a str key (an untyped dict's keys come back as text: annotate the field, "
        "e.g. dict[int, str], to store other keys)",
        key,
    )


def _sorted_if_possible(items: list[JsonValue]) -> list[JsonValue]:
    try:
        return sorted(items)
    except TypeError:
        return items


_TAG_DECODERS: dict[str, Callable[[Any], Any]] = {
    "float": lambda v: float(v) if type(v) is not bool else _not_a_float(v),
    "datetime": lambda v: _parse_datetime(v),
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "timedelta": lambda v: timedelta(microseconds=v),
    "decimal": Decimal,
    "uuid": uuid.UUID,
    "bytes": lambda v: base64.b64decode(v.encode("ascii"), validate=True),
}


def _parse_datetime(text: str) -> datetime:
    """A stored datetime, timezone-aware: a naive one (which no save takes any
    more, but an older version stored) is read as UTC, as every timestamp is."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _not_a_float(value: Any) -> float:
    raise TypeError(f"{value!r} is not a number")


def _decode_tagged(data: JsonValue) -> Any:
    kind = type(data)
    if data is None or kind is bool or kind is int or kind is str or kind is float:
        return data
    if kind is list:
        return [_decode_tagged(v) for v in data]
    if kind is dict:
        tag = data.get(TAG)
        if tag is None:
            return {k: _decode_tagged(v) for k, v in data.items()}
        if not isinstance(tag, str) or "value" not in data:
            raise DecodeFailure(f"malformed tagged value {data!r}")
        value = data["value"]
        if tag == "dict":
            if not isinstance(value, dict):
                raise DecodeFailure("tagged dict without an object value")
            return {k: _decode_tagged(v) for k, v in value.items()}
        if tag in ("tuple", "set", "frozenset"):
            if not isinstance(value, list):
                raise DecodeFailure(f"tagged {tag} without a list value")
            items = [_decode_tagged(v) for v in value]
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
            raise DecodeFailure(f"bad {tag} value {_shown(value)}: {error}") from None
    raise DecodeFailure(f"not a JSON value: {data!r}")


# ---------------------------------------------------------------- values, typed


# Each annotation takes the values its decoder gives back equal (``==``) to
# what was encoded, and nothing else: the encoders below refuse the rest
# (raising _Mismatch), so that a store never keeps what it can't read back.
# A scalar's encoder and decoder are defined side by side (_SCALAR_RULES).


def _encode_str(value: Any) -> JsonValue:
    if type(value) is str:
        return value
    if isinstance(value, str):  # a StrEnum member, a str subclass: comes back as its text
        return str.__str__(value)
    raise _Mismatch("str", value)


def _encode_int(value: Any) -> JsonValue:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # an IntEnum member
        return int.__int__(value)
    raise _Mismatch("int (bool is not an int)" if isinstance(value, bool) else "int", value)


def _encode_bool(value: Any) -> JsonValue:
    if value is True or value is False:
        return value
    raise _Mismatch("bool", value)


def _encode_number(value: Any) -> JsonValue:
    """A ``float`` field: a float, or an int (which comes back as the same int)."""
    kind = type(value)
    if kind is float:
        return _encode_float(value)
    if kind is int:
        return value
    if isinstance(value, float):
        return _encode_float(float.__float__(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__int__(value)
    raise _Mismatch("float (or int)", value)


def _encode_none(value: Any) -> JsonValue:
    if value is None:
        return None
    raise _Mismatch("None", value)


def _encode_decimal(value: Any) -> JsonValue:
    if isinstance(value, Decimal):
        return str(value)
    raise _Mismatch("Decimal", value)


def _encode_uuid(value: Any) -> JsonValue:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise _Mismatch("UUID", value)


def _encode_datetime(value: Any) -> JsonValue:
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value.isoformat()
    raise _Mismatch("a timezone-aware datetime", value)


def _encode_date(value: Any) -> JsonValue:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    raise _Mismatch("date (a datetime is not a date)", value)


def _encode_time(value: Any) -> JsonValue:
    if isinstance(value, time) and (value.tzinfo is None or value.utcoffset() is not None):
        return value.isoformat()
    raise _Mismatch("time", value)


def _encode_timedelta(value: Any) -> JsonValue:
    if isinstance(value, timedelta):
        return value // timedelta(microseconds=1)
    raise _Mismatch("timedelta", value)


def _encode_bytes(value: Any) -> JsonValue:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise _Mismatch("bytes", value)


def _json_key(value: JsonValue) -> str:
    """The object key a JSON scalar is written as (see _KEY_PARSERS for the way back)."""
    if type(value) is str:
        return value
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float):
        return str(_encode_float(value)) if not math.isfinite(value) else repr(value)
    return repr(value)


def _shown(data: JsonValue) -> str:
    """``repr(data)``, cut to 80 characters (stored data can be huge)."""
    try:
        shown = repr(data)
    except (ValueError, RecursionError):  # an int too long for text, or deep nesting
        return f"a {type(data).__name__}"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _fail(expected: str, data: JsonValue) -> DecodeFailure:
    return DecodeFailure(f"expected {expected}, got {_shown(data)}")


def _decode_str(data: JsonValue) -> str:
    if type(data) is str:
        return data
    raise _fail("a string", data)


def _decode_int(data: JsonValue) -> int:
    if type(data) is int:
        return data
    raise _fail("an integer", data)


def _decode_bool(data: JsonValue) -> bool:
    if type(data) is bool:
        return data
    raise _fail("true or false", data)


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _decode_float(data: JsonValue) -> float:
    kind = type(data)
    if kind is float:
        return data  # type: ignore[no-any-return]
    if kind is int:
        # An int stays an int: `amount: float = 10` must round-trip as 10.
        if -_EXPONENT_INTS < data < _EXPONENT_INTS:
            return data  # type: ignore[no-any-return]
        return _float_from_integer(data)
    if kind is str and data in _NON_FINITE:
        return _NON_FINITE[data]
    raise _fail("a number", data)


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
    raise _fail("null", data)


def _from_string(kind: type, parse: Callable[[str], Any], name: str) -> _Decoder:
    def decode(data: JsonValue) -> Any:
        if type(data) is str:
            try:
                return parse(data)
            except (ValueError, TypeError, ArithmeticError, InvalidOperation):
                pass
        elif isinstance(data, kind):
            return data
        raise _fail(name, data)

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
    raise _fail("a decimal number", data)


def _decode_timedelta(data: JsonValue) -> timedelta:
    if type(data) is int:
        try:
            return timedelta(microseconds=data)
        except OverflowError:
            raise _fail("a duration within ±999999999 days", data) from None
    raise _fail("a duration in microseconds", data)


def _decode_bytes(data: JsonValue) -> bytes:
    if type(data) is str:
        try:
            return base64.b64decode(data.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            pass
    raise _fail("base64 text", data)


#: The scalar annotations: how a value is checked and written, and how it is read.
_SCALAR_RULES: dict[Any, tuple[_Encoder, _Decoder]] = {
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
        _from_string(datetime, _parse_datetime, "an ISO 8601 date and time"),
    ),
    date: (_encode_date, _from_string(date, date.fromisoformat, "an ISO 8601 date")),
    time: (_encode_time, _from_string(time, time.fromisoformat, "an ISO 8601 time")),
    timedelta: (_encode_timedelta, _decode_timedelta),
    bytes: (_encode_bytes, _decode_bytes),
}

#: The dict key types: parsed back from their text by these (other key types
#: come back as text, so only str keys are taken for them).
_KEY_PARSERS: dict[Any, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    Decimal: Decimal,
    uuid.UUID: uuid.UUID,
    datetime: datetime.fromisoformat,
    date: date.fromisoformat,
    bool: lambda s: {"true": True, "false": False}[s],
}


def _is_any(annotation: Any) -> bool:
    return annotation is Any or annotation is object or isinstance(annotation, typing.TypeVar)


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    supertype = getattr(annotation, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _unwrap(supertype)
    if isinstance(annotation, typing.TypeAliasType if hasattr(typing, "TypeAliasType") else ()):
        return _unwrap(annotation.__value__)
    return annotation


_encoder_cache: dict[Any, _Encoder] = {}
_decoder_cache: dict[Any, _Decoder] = {}


def _encoder_for(annotation: Any) -> _Encoder:
    try:
        return _encoder_cache[annotation]
    except (KeyError, TypeError):
        pass
    encoder = _build_encoder(_unwrap(annotation))
    with contextlib.suppress(TypeError):  # an unhashable annotation is just not cached
        _encoder_cache[annotation] = encoder
    return encoder


def _decoder_for(annotation: Any) -> _Decoder:
    try:
        return _decoder_cache[annotation]
    except (KeyError, TypeError):
        pass
    decoder = _build_decoder(_unwrap(annotation))
    with contextlib.suppress(TypeError):
        _decoder_cache[annotation] = decoder
    return decoder


def _union_members(annotation: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return None


def _annotation_name(annotation: Any) -> str:
    """An annotation as an error message shows it: ``int``, ``list[Money]``."""
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "").replace("collections.abc.", "")


#: Collection annotations (by origin) and the type their values are read back as.
_COLLECTIONS: dict[Any, type] = {
    list: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    abc.Sequence: list,
    abc.MutableSequence: list,
    abc.Iterable: list,
    abc.Collection: list,
    abc.Set: set,
    abc.MutableSet: set,
}
_MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def _shape(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """The origin and arguments of ``annotation``; a bare ``list`` or ``dict`` is its own origin."""
    origin = typing.get_origin(annotation)
    if (
        origin is None
        and isinstance(annotation, type)
        and (annotation in _COLLECTIONS or annotation in _MAPPINGS)
    ):
        return annotation, ()
    return origin, typing.get_args(annotation)


def _literal_options(annotation: Any) -> list[Any]:
    """The options of a ``Literal`` that JSON holds as they are (str, int, bool, None)."""
    return [
        option
        for option in typing.get_args(annotation)
        if option is None or type(option) in (str, int, bool)
    ]


def _build_encoder(annotation: Any) -> _Encoder:
    if _is_any(annotation):
        return _encode_tagged
    scalar = _SCALAR_RULES.get(annotation)
    if scalar is not None:
        return scalar[0]
    members = _union_members(annotation)
    if members is not None:
        optional = type(None) in members
        others = [m for m in members if m is not type(None)]
        if len(others) == 1:
            inner = _encoder_for(others[0])
            if optional:
                return lambda v: None if v is None else inner(v)
            return inner
        return _union_encoder(others, optional)
    origin, args = _shape(annotation)
    if origin is typing.Literal:
        return _literal_encoder(annotation)
    if origin in _COLLECTIONS:
        return _collection_encoder(origin, args)
    if origin in _MAPPINGS:
        key_encoder = _key_encoder(_unwrap(args[0]) if len(args) == 2 else str)
        value_encoder = _encoder_for(args[1]) if len(args) == 2 else _encode_tagged

        def encode_mapping(value: Any) -> JsonValue:
            if isinstance(value, Mapping):
                return _encode_mapping(key_encoder, value_encoder, value)
            raise _Mismatch("a dict", value)

        return encode_mapping
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _enum_encoder(annotation)
        if dataclasses.is_dataclass(annotation):
            return _dataclass_encoder(annotation)
        for base, (encoder, _) in _SCALAR_RULES.items():
            if isinstance(base, type) and base is not type(None) and issubclass(annotation, base):
                return _subclass_encoder(annotation, encoder)
    name = _annotation_name(annotation)

    def unsupported(value: Any) -> JsonValue:
        raise _Mismatch(f"a supported annotation (values annotated {name} can't be read)", value)

    return unsupported


def _literal_encoder(annotation: Any) -> _Encoder:
    options = _literal_options(annotation)

    def encode_literal(value: Any) -> JsonValue:
        for option in options:
            if type(value) is type(option) and value == option:
                return value
        raise _Mismatch(f"one of {options!r}", value)

    return encode_literal


def _collection_encoder(origin: Any, args: tuple[Any, ...]) -> _Encoder:
    built = _COLLECTIONS[origin]
    if built is tuple and args and args[-1] is not Ellipsis:
        item_encoders = [_encoder_for(a) for a in args]
        size = len(item_encoders)

        def encode_fixed_tuple(value: Any) -> JsonValue:
            if not isinstance(value, tuple) or len(value) != size:
                raise _Mismatch(f"a tuple of {size} items", value)
            encoded = []
            for index, (encode, item) in enumerate(zip(item_encoders, value, strict=True)):
                try:
                    encoded.append(encode(item))
                except _Mismatch as mismatch:
                    raise mismatch.at(f"[{index}]") from None
            return encoded

        return encode_fixed_tuple
    item = _encoder_for(args[0]) if args else _encode_tagged
    if built is set or built is frozenset:

        def encode_set(value: Any) -> JsonValue:
            if isinstance(value, set | frozenset):
                return _sorted_if_possible(_encode_items(item, value))
            raise _Mismatch("a set or frozenset", value)

        return encode_set
    expected = f"a {built.__name__}"
    if origin is not built:
        expected += f" ({_annotation_name(origin)} values are read back as {built.__name__}s)"

    def encode_sequence(value: Any) -> JsonValue:
        if isinstance(value, built):
            return _encode_items(item, value)
        raise _Mismatch(expected, value)

    return encode_sequence


def _key_encoder(key_type: Any) -> _Encoder:
    """How a dict key of ``key_type`` is checked and written (see _key_parser for reading)."""
    if isinstance(key_type, type) and issubclass(key_type, enum.Enum):
        member_encoder = _enum_encoder(key_type)
        return lambda key: _json_key(member_encoder(key))
    if typing.get_origin(key_type) is typing.Literal:
        literal_encoder = _literal_encoder(key_type)
        return lambda key: _json_key(literal_encoder(key))
    if key_type in _KEY_PARSERS:
        encode = _SCALAR_RULES[key_type][0]
        return lambda key: _json_key(encode(key))
    return _untyped_key


def _enum_encoder(kind: type[enum.Enum]) -> _Encoder:
    def encode_member(value: Any) -> JsonValue:
        if isinstance(value, kind):
            return _encode_tagged(value.value)
        raise _Mismatch(f"a {kind.__qualname__} member", value)

    return encode_member


def _dataclass_encoder(cls: type) -> _Encoder:
    def encode_dataclass(value: Any) -> JsonValue:
        if type(value) is cls:
            # Looked up at call time: a dataclass may refer to itself (a tree of nodes).
            return dataclass_codec(cls).encode_fields(value)
        raise _Mismatch(cls.__qualname__, value)

    return encode_dataclass


def _subclass_encoder(kind: type, base_encoder: _Encoder) -> _Encoder:
    def encode(value: Any) -> JsonValue:
        if isinstance(value, kind):
            return base_encoder(value)
        raise _Mismatch(kind.__qualname__, value)

    return encode


def _union_encoder(members: list[Any], optional: bool) -> _Encoder:
    """Several non-None members: tag what the JSON shape alone can't tell apart."""
    classes = {m.__name__: m for m in members if isinstance(m, type)}
    containers = {
        origin: (origin.__name__, _encoder_for(member), tagged)
        for origin, (member, tagged) in _container_members(members).items()
    }
    checks = [_encoder_for(member) for member in members]
    expected = " | ".join(_annotation_name(m) for m in members) + (" | None" if optional else "")

    def check(value: Any) -> None:
        """Pass when a member takes ``value``; else the mismatch of the one that took its shape."""
        failures = []
        for member_encoder in checks:
            try:
                member_encoder(value)
            except _Mismatch as mismatch:
                failures.append(mismatch)
            else:
                return
        inside = [failure for failure in failures if failure.path]
        if len(inside) == 1:
            raise inside[0]
        raise _Mismatch(expected, value)

    def encode(value: Any) -> JsonValue:
        if value is None:
            if optional:
                return None
            raise _Mismatch(expected, value)
        check(value)
        kind = type(value)
        if kind is bool or kind is int or kind is str:
            return value
        if kind is float and -_EXPONENT_FLOATS < value < _EXPONENT_FLOATS:
            return value
        if isinstance(value, enum.Enum) or dataclasses.is_dataclass(value):
            name = kind.__name__
            if classes.get(name) is kind:
                return {TAG: "member", "class": name, "value": _encoder_for(kind)(value)}
        container = containers.get(kind)
        if container is not None:
            # The one member of this container type encodes it, so that its
            # items keep their types (a list[Money] of dataclasses).
            name, encoder, tagged = container
            encoded = encoder(value)
            if tagged or (type(encoded) is dict and TAG in encoded):
                return {TAG: "member", "class": name, "value": encoded}
            return encoded
        return _encode_tagged(value)

    return encode


_CONTAINERS = (list, tuple, set, frozenset, dict)


def _container_members(members: Sequence[Any]) -> dict[type, tuple[Any, bool]]:
    """The union members that are the only one of their container type.

    ``{list: (list[Money], tagged)}``: values of that type are encoded by that
    member; ``tagged`` when another member has the same JSON shape (two
    array-like members, a dict and a dataclass, an untyped member), so the
    stored value must say which member it is.
    """
    by_origin: dict[type, list[Any]] = {}
    arrays = objects = 0
    untyped = False
    for member in members:
        unwrapped = _unwrap(member)
        if _is_any(unwrapped):
            untyped = True
            continue
        origin = _shape(unwrapped)[0] or unwrapped
        if origin in _COLLECTIONS:
            arrays += 1
        elif origin in _MAPPINGS or dataclasses.is_dataclass(origin):
            objects += 1
        if origin in _CONTAINERS:
            by_origin.setdefault(origin, []).append(member)
    return {
        origin: (found[0], untyped or (objects if origin is dict else arrays) > 1)
        for origin, found in by_origin.items()
        if len(found) == 1
    }


def _build_decoder(annotation: Any) -> _Decoder:
    if _is_any(annotation):
        return _decode_tagged
    scalar = _SCALAR_RULES.get(annotation)
    if scalar is not None:
        return scalar[1]
    members = _union_members(annotation)
    if members is not None:
        return _union_decoder(members)
    origin, args = _shape(annotation)
    if origin is typing.Literal:
        allowed = _literal_options(annotation)

        def decode_literal(data: JsonValue) -> Any:
            for option in allowed:
                if data == option and type(data) is type(option):
                    return option
            raise _fail(f"one of {allowed!r}", data)

        return decode_literal
    if origin in _COLLECTIONS:
        build: Callable[[list[Any]], Any] = _COLLECTIONS[origin]
        if build is tuple and args and args[-1] is not Ellipsis:
            item_decoders = [_decoder_for(a) for a in args]

            def decode_fixed_tuple(data: JsonValue) -> tuple[Any, ...]:
                if type(data) is not list or len(data) != len(item_decoders):
                    raise _fail(f"a list of {len(item_decoders)} items", data)
                return tuple(
                    _decode_item(dec, item, i)
                    for i, (dec, item) in enumerate(zip(item_decoders, data, strict=True))
                )

            return decode_fixed_tuple
        item = _decoder_for(args[0]) if args else _decode_tagged

        def decode_sequence(data: JsonValue) -> Any:
            if type(data) is not list:
                raise _fail("a list", data)
            items = [_decode_item(item, x, i) for i, x in enumerate(data)]
            try:
                return build(items)
            except TypeError as error:  # an unhashable item in a set
                raise DecodeFailure(str(error)) from None

        return decode_sequence
    if origin in _MAPPINGS:
        key_type = _unwrap(args[0]) if len(args) == 2 else str
        value_decoder = _decoder_for(args[1]) if len(args) == 2 else _decode_tagged
        parse_key = _key_parser(key_type)

        def decode_mapping(data: JsonValue) -> dict[Any, Any]:
            if type(data) is not dict:
                raise _fail("an object", data)
            result: dict[Any, Any] = {}
            for k, v in data.items():
                try:
                    result[parse_key(k)] = value_decoder(v)
                except DecodeFailure as failure:
                    raise failure.at(f"[{k!r}]") from None
                except (ValueError, TypeError, KeyError, ArithmeticError, InvalidOperation):
                    raise DecodeFailure(f"bad key {_shown(k)}") from None
            return result

        return decode_mapping
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _enum_decoder(annotation)
        if dataclasses.is_dataclass(annotation):

            def decode_dataclass(data: JsonValue) -> Any:
                if type(data) is not dict:
                    raise _fail(f"an object for {annotation.__name__}", data)
                return dataclass_codec(annotation).decode(data)

            return decode_dataclass
        for base, (_, decoder) in _SCALAR_RULES.items():
            if isinstance(base, type) and base is not type(None) and issubclass(annotation, base):
                return _subclass_decoder(annotation, decoder)
    name = getattr(annotation, "__qualname__", repr(annotation))

    def unsupported(data: JsonValue) -> Any:
        raise DecodeFailure(f"cannot decode values annotated {name}")

    return unsupported


def _decode_item(decoder: _Decoder, data: JsonValue, index: int) -> Any:
    try:
        return decoder(data)
    except DecodeFailure as failure:
        raise failure.at(f"[{index}]") from None


def _subclass_decoder(kind: type, base_decoder: _Decoder) -> _Decoder:
    def decode(data: JsonValue) -> Any:
        value = base_decoder(data)
        try:
            return kind(value)
        except (ValueError, TypeError, ArithmeticError) as error:
            raise DecodeFailure(f"{kind.__name__} refuses {_shown(value)}: {error}") from None

    return decode


def _enum_decoder(kind: type[enum.Enum]) -> _Decoder:
    def decode(data: JsonValue) -> enum.Enum:
        try:
            return kind(data)
        except (ValueError, TypeError):
            raise _fail(f"a {kind.__name__} value", data) from None

    return decode


def _key_parser(key_type: Any) -> Callable[[str], Any]:
    if _is_any(key_type):
        return str
    if isinstance(key_type, type) and issubclass(key_type, enum.Enum):
        members = {_json_key(_encode_tagged(m.value)): m for m in key_type}
        return lambda k: members[k]
    parser = _KEY_PARSERS.get(key_type)
    if parser is not None:
        return parser
    if typing.get_origin(key_type) is typing.Literal:
        options = {_json_key(a): a for a in _literal_options(key_type)}
        return lambda k: options[k]
    return str


def _union_decoder(members: tuple[Any, ...]) -> _Decoder:
    optional = type(None) in members
    others = [m for m in members if m is not type(None)]
    if len(others) == 1:
        inner = _decoder_for(others[0])
        if optional:
            return lambda data: None if data is None else inner(data)
        return inner
    decoders = [_decoder_for(m) for m in others]
    by_name: dict[str, Any] = {m.__name__: m for m in others if isinstance(m, type)}
    for origin, (member, _) in _container_members(others).items():
        by_name.setdefault(origin.__name__, member)
    # The encoder writes str, int, bool and float values as they are, and every
    # other member's values tagged or in another JSON type: such a value is
    # the member of its own type, never a Decimal, a date or an enum parsed
    # from it. Without that member, it can only be a Literal member's value.
    unwrapped = [_unwrap(m) for m in others]
    native = frozenset(m for m in unwrapped if m in (str, int, bool, float))
    literals = [_decoder_for(m) for m in unwrapped if typing.get_origin(m) is typing.Literal]

    def decode(data: JsonValue) -> Any:
        if data is None and optional:
            return None
        kind = type(data)
        if kind in native:
            return data
        if literals and (kind is str or kind is int or kind is bool or kind is float):
            for literal in literals:
                try:
                    return literal(data)
                except DecodeFailure:
                    pass
        if kind is dict and TAG in data:
            if data[TAG] == "member":
                name = data.get("class")
                member = by_name.get(name) if type(name) is str else None
                if member is None:
                    raise _fail(f"one of {sorted(by_name)}", data)
                return _decoder_for(member)(data.get("value"))
            return _decode_tagged(data)
        failures = []
        for decoder in decoders:
            try:
                return decoder(data)
            except DecodeFailure as failure:
                failures.append(failure.detail)
        raise DecodeFailure("matches no member of the union: " + "; ".join(failures))

    return decode


# ---------------------------------------------------------------- dataclasses


class DataclassCodec:
    """How to encode and decode one dataclass, computed once per class (see dataclass_codec)."""

    __slots__ = ("cls", "decoders", "defaults", "encoders", "names")

    def __init__(self, cls: type, fields: list[dataclasses.Field[Any]], hints: dict[str, Any]):
        self.cls = cls
        self.names = [f.name for f in fields]
        self.encoders = [_encoder_for(hints.get(f.name, Any)) for f in fields]
        self.decoders = {f.name: _decoder_for(hints.get(f.name, Any)) for f in fields}
        self.defaults: dict[str, Callable[[], Any]] = {}
        for f in fields:
            if f.default is not dataclasses.MISSING:
                self.defaults[f.name] = _constant(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                self.defaults[f.name] = f.default_factory

    def encode(self, value: Any) -> dict[str, JsonValue]:
        """The fields of ``value`` as JSON; :class:`EncodeError` when one doesn't fit its type."""
        try:
            return self.encode_fields(value)
        except _Mismatch as mismatch:
            raise mismatch.at(self.cls.__name__).error() from None

    def encode_fields(self, value: Any) -> dict[str, JsonValue]:
        """:meth:`encode`, raising the codec's internal mismatch (with its path)."""
        out: dict[str, JsonValue] = {}
        for name, encoder in zip(self.names, self.encoders, strict=True):
            try:
                out[name] = encoder(getattr(value, name))
            except _Mismatch as mismatch:
                raise mismatch.at(name) from None
        return out

    def decode(self, data: Mapping[str, JsonValue], skip: frozenset[str] = frozenset()) -> Any:
        return _build(self.cls, self.decode_fields(data, skip))

    def decode_fields(
        self, data: Mapping[str, JsonValue], skip: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, decoder in self.decoders.items():
            if name in skip:
                continue
            if name in data:
                try:
                    values[name] = decoder(data[name])
                except DecodeFailure as failure:
                    raise failure.at(name) from None
            elif name in self.defaults:
                values[name] = self.defaults[name]()
            else:
                raise DecodeFailure(
                    "missing in the stored data and has no default "
                    "(give the field a default, or register an upcaster)",
                    name,
                )
        return values


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


_dict_backed: dict[type, bool] = {}


def _build(cls: Any, values: dict[str, Any]) -> Any:
    """An instance of the dataclass ``cls`` with ``values``, without calling ``__init__``.

    Frozen dataclasses refuse ``setattr``: the values go straight into the
    instance's ``__dict__`` (one update), or through ``object.__setattr__``
    when a class of the hierarchy keeps fields in ``__slots__``.
    """
    obj = cls.__new__(cls)
    backed = _dict_backed.get(cls)
    if backed is None:
        backed = _dict_backed[cls] = not any("__slots__" in vars(k) for k in cls.__mro__[:-1])
    if backed:
        obj.__dict__.update(values)
    else:
        for name, value in values.items():
            object.__setattr__(obj, name, value)
    return obj


_plans: dict[type, DataclassCodec] = {}


def dataclass_codec(cls: type) -> DataclassCodec:
    """The (cached) codec of a dataclass: ``encode(obj)`` and ``decode_fields(data)``."""
    plan = _plans.get(cls)
    if plan is None:
        fields = [f for f in dataclasses.fields(cls) if f._field_type is dataclasses._FIELD]  # type: ignore[attr-defined]
        plan = DataclassCodec(cls, fields, _resolve_hints(cls, fields))
        _plans[cls] = plan
    return plan


def _resolve_hints(cls: type, fields: list[dataclasses.Field[Any]]) -> dict[str, Any]:
    """The fields' annotations as types (string annotations resolved).

    All at once through ``typing.get_type_hints``; when one annotation can't
    be resolved (a name imported under ``TYPE_CHECKING`` only, a class local
    to a function), field by field, so that only that field is untyped
    (``Any``: its values are stored tagged) and the others keep their types.
    """
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    for f in fields:
        annotation = f.type
        if isinstance(annotation, str):
            owner = next((k for k in cls.__mro__ if f.name in inspect.get_annotations(k)), cls)
            annotation = _resolve_string_annotation(annotation, owner)
        hints[f.name] = annotation
    return hints


def _resolve_string_annotation(annotation: str, owner: type) -> Any:
    """``annotation`` (a string) as written in the class ``owner``, or ``Any``.

    Resolved by ``typing.get_type_hints`` in the namespaces it would use for
    ``owner`` (its module's globals, the class's own names), through a
    stand-in module holding just this annotation: the codec itself never
    evaluates text.
    """
    module = sys.modules.get(owner.__module__)
    holder = types.ModuleType("orchestrix_annotation")
    holder.__annotations__ = {"value": annotation}
    try:
        return typing.get_type_hints(
            holder,
            globalns=dict(vars(module)) if module is not None else {},
            localns=dict(vars(owner)),
            include_extras=True,
        )["value"]
    except Exception:
        return Any


# ---------------------------------------------------------------- public value API


def encode_value(value: Any, annotation: Any = Any) -> JsonValue:
    """Encode ``value`` to JSON-compatible data, guided by ``annotation``.

    Raises :class:`EncodeError` when ``value`` does not fit ``annotation``:
    :func:`decode_value` would not give it back.
    """
    try:
        return _encoder_for(annotation)(value)
    except _Mismatch as mismatch:
        raise mismatch.error() from None


def decode_value(data: JsonValue, annotation: Any = Any) -> Any:
    """Decode JSON-compatible ``data`` made by :func:`encode_value` with the same annotation.

    Raises :class:`DecodeFailure` when the data does not match the annotation.
    """
    return _decoder_for(annotation)(data)


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event as stored: its identity, its domain fields and its metadata.

    ``data`` holds the event's own fields (and the CloudEvents ``data``
    payload, under ``"data"``, when there is one); ``metadata`` holds the other
    CloudEvents attributes that are set (source, subject, correlation id, …).
    """

    event_id: str
    event_type: str
    schema_version: int
    timestamp: datetime
    data: dict[str, JsonValue]
    metadata: dict[str, JsonValue]


class EventCodec:
    """Encodes events to :class:`EncodedEvent` and decodes them back.

    Decoding resolves the class through an :class:`EventRegistry` (the
    default registry unless one is given).
    """

    def __init__(self, registry: EventRegistry | None = None) -> None:
        self.registry = registry if registry is not None else default_registry

    def encode(self, event: Event) -> EncodedEvent:
        """Split an event into its stored parts."""
        plan = _event_plan(type(event))
        data: dict[str, JsonValue] = {}
        metadata: dict[str, JsonValue] = {}
        name = ""
        try:
            for name, encoder in plan.field_encoders:
                data[name] = encoder(getattr(event, name))
            payload = event.data
            if payload is not None:
                name = "data"
                data["data"] = plan.data_encoder(payload)
            for name, encoder in plan.meta_encoders:
                value = getattr(event, name)
                if value is not None:
                    encoded = encoder(value)
                    if encoded is not None:
                        metadata[name] = encoded
        except _Mismatch as mismatch:
            raise mismatch.at(name).error(event.type) from None
        except RecursionError:
            raise ValueError(
                f"cannot encode event {event.type}: {type(event).__name__}.{name} is nested "
                "too deeply (or contains itself); flatten the value"
            ) from None
        return EncodedEvent(
            event_id=event.id,
            event_type=event.type,
            schema_version=plan.schema_version,
            timestamp=event.timestamp,
            data=data,
            metadata=metadata,
        )

    def resolve(
        self,
        event_type: str,
        schema_version: int,
        *,
        stream_id: str | None = None,
        version: int | None = None,
    ) -> type[Event]:
        """The class stored events of ``event_type`` at ``schema_version`` decode to."""
        return self.registry.resolve(
            event_type, schema_version, stream_id=stream_id, version=version
        )

    def decode(
        self,
        encoded: EncodedEvent,
        *,
        stream_id: str | None = None,
        version: int | None = None,
        position: int | None = None,
    ) -> Event:
        """Rebuild the event; errors name the stream, version and type."""
        return self.decode_parts(
            encoded.event_id,
            encoded.event_type,
            encoded.schema_version,
            encoded.timestamp,
            encoded.data,
            encoded.metadata,
            stream_id=stream_id,
            version=version,
            position=position,
        )

    def decode_parts(
        self,
        event_id: str,
        event_type: str,
        schema_version: int,
        timestamp: datetime,
        data: dict[str, JsonValue],
        meta: dict[str, JsonValue],
        *,
        stream_id: str | None = None,
        version: int | None = None,
        position: int | None = None,
        cls: type[Event] | None = None,
    ) -> Event:
        """:meth:`decode` of the parts of an :class:`EncodedEvent` (a store's row), unwrapped.

        ``cls``, when given, is the class :meth:`resolve` returned for this
        type and schema version (a reader of many rows resolves each pair once).
        """
        if cls is None:
            cls = self.resolve(event_type, schema_version, stream_id=stream_id, version=version)
        try:
            if type(data) is not dict or type(meta) is not dict:
                raise DecodeFailure("data and metadata must be JSON objects")
            if timestamp.tzinfo is None:
                raise DecodeFailure("stored timestamp is not timezone-aware")
            plan = _event_plan(cls)
            values = plan.decode(data, meta)
        except DecodeFailure as failure:
            raise EventDecodeError(
                str(failure),
                event_type=event_type,
                stream_id=stream_id,
                version=version,
                position=position,
            ) from None
        except RecursionError:
            raise EventDecodeError(
                "the stored data is nested too deeply to decode",
                event_type=event_type,
                stream_id=stream_id,
                version=version,
                position=position,
            ) from None
        except Exception as error:
            # Stored data is input like any other: whatever it makes a decoder
            # raise, the reader gets the one error that says which event.
            raise EventDecodeError(
                f"{type(error).__name__}: {error}",
                event_type=event_type,
                stream_id=stream_id,
                version=version,
                position=position,
            ) from error
        values["id"] = event_id
        values["type"] = event_type
        values["timestamp"] = timestamp
        event: Event = _build(cls, values)
        return event


class _EventPlan:
    """How to encode and decode one event class, computed once (see :func:`_event_plan`)."""

    __slots__ = (
        "data_decoder",
        "data_encoder",
        "field_encoders",
        "fields",
        "meta_decoders",
        "meta_defaults",
        "meta_encoders",
        "meta_factories",
        "schema_version",
    )

    def __init__(self, cls: type[Event]) -> None:
        plan = dataclass_codec(cls)
        own = [name for name in plan.names if name not in _ENVELOPE]
        encoders = dict(zip(plan.names, plan.encoders, strict=True))
        fields = [f for f in dataclasses.fields(cls) if f.name in plan.decoders]
        hints = _resolve_hints(cls, fields)
        self.schema_version = int(getattr(cls, "schema_version", 1))
        self.field_encoders = tuple((name, encoders[name]) for name in own)
        self.data_encoder = encoders["data"]
        self.meta_encoders = tuple((name, encoders[name]) for name in METADATA_FIELDS)
        self.fields = tuple(
            (name, plan.decoders[name], plan.defaults.get(name), _stored_as_is(hints.get(name)))
            for name in own
        )
        self.data_decoder = plan.decoders["data"]
        self.meta_decoders = {name: plan.decoders[name] for name in METADATA_FIELDS}
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        # Metadata absent from the stored row takes the class's defaults: the
        # constant ones in one dict update, factories called per event.
        self.meta_defaults: dict[str, Any] = {"specversion": "1.0"}
        self.meta_factories: list[tuple[str, Callable[[], Any]]] = []
        for name in METADATA_FIELDS:
            if name == "specversion":
                continue
            field = defaults[name]
            if field.default is not dataclasses.MISSING:
                self.meta_defaults[name] = field.default
            else:
                self.meta_factories.append((name, plan.defaults[name]))

    def decode(self, data: dict[str, JsonValue], meta: dict[str, JsonValue]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, decoder, default, as_is in self.fields:
            if name in data:
                value = data[name]
                if type(value) is as_is:
                    values[name] = value  # a str, int or bool field holding one
                    continue
                try:
                    values[name] = decoder(value)
                except DecodeFailure as failure:
                    raise failure.at(name) from None
            elif default is not None:
                values[name] = default()
            else:
                raise DecodeFailure(
                    "missing in the stored data and has no default "
                    "(give the field a default, or register an upcaster)",
                    name,
                )
        values.update(self.meta_defaults)
        for name, factory in self.meta_factories:
            if name not in meta:
                values[name] = factory()
        decoders = self.meta_decoders
        for name, value in meta.items():
            meta_decoder = decoders.get(name)
            if meta_decoder is not None:
                try:
                    values[name] = meta_decoder(value)
                except DecodeFailure as failure:
                    raise failure.at(name) from None
        try:
            values["data"] = self.data_decoder(data.get("data"))
        except DecodeFailure as failure:
            raise failure.at("data") from None
        return values


def _stored_as_is(annotation: Any) -> type | None:
    """``str``, ``int`` or ``bool`` when JSON holds a field of this annotation as it is.

    (Decoding such a value is the identity; anything else goes through the decoder.)
    """
    annotation = _unwrap(annotation) if annotation is not None else None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = _unwrap(members[0]) if len(members) == 1 else None
    return annotation if annotation in (str, int, bool) else None


_event_plans: dict[type, _EventPlan] = {}


def _event_plan(cls: type[Event]) -> _EventPlan:
    plan = _event_plans.get(cls)
    if plan is None:
        plan = _event_plans[cls] = _EventPlan(cls)
    return plan


_ENVELOPE = frozenset(CLOUDEVENT_FIELDS)
_DECODED_ELSEWHERE = frozenset(CLOUDEVENT_FIELDS)


# ---------------------------------------------------------------- CloudEvents JSON


def to_cloudevent(event: Event, codec: EventCodec | None = None) -> dict[str, JsonValue]:
    """The event in the CloudEvents JSON format (structured mode).

    The domain fields are the ``data`` object; correlation, causation and trace
    ids are the extension attributes ``correlationid``, ``causationid`` and
    ``traceid``; the schema version is ``schemaversion``.
    """
    encoded = (codec or EventCodec()).encode(event)
    meta = encoded.metadata
    out: dict[str, JsonValue] = {
        "specversion": meta.get("specversion", "1.0"),
        "id": encoded.event_id,
        "source": meta.get("source", "orchestrix"),
        "type": encoded.event_type,
        "time": encoded.timestamp.isoformat(),
        "datacontenttype": meta.get("datacontenttype") or "application/json",
        "schemaversion": encoded.schema_version,
        "data": encoded.data,
    }
    for attribute, name in _CE_OPTIONAL:
        if meta.get(name) is not None:
            out[attribute] = meta[name]
    return out


_CE_OPTIONAL = (
    ("subject", "subject"),
    ("dataschema", "dataschema"),
    ("correlationid", "correlation_id"),
    ("causationid", "causation_id"),
    ("traceid", "trace_id"),
)


def from_cloudevent(cloudevent: Mapping[str, JsonValue], codec: EventCodec | None = None) -> Event:
    """Rebuild an event from :func:`to_cloudevent`'s output."""
    try:
        metadata: dict[str, JsonValue] = {
            "specversion": cloudevent.get("specversion", "1.0"),
            "source": cloudevent.get("source", "orchestrix"),
        }
        if cloudevent.get("datacontenttype") not in (None, "application/json"):
            metadata["datacontenttype"] = cloudevent["datacontenttype"]
        for attribute, name in _CE_OPTIONAL:
            if cloudevent.get(attribute) is not None:
                metadata[name] = cloudevent[attribute]
        encoded = EncodedEvent(
            event_id=str(cloudevent["id"]),
            event_type=str(cloudevent["type"]),
            schema_version=int(cloudevent.get("schemaversion", 1)),
            timestamp=datetime.fromisoformat(str(cloudevent["time"])),
            data=dict(cloudevent.get("data") or {}),
            metadata=metadata,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise EventDecodeError(f"not a valid CloudEvent: {error!r}") from None
    return (codec or EventCodec()).decode(encoded)


def message_fields(message: Message) -> dict[str, Any]:
    """A message's fields as a dict (shallow: values are not copied)."""
    return {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
