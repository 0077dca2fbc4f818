"""Decoders built from annotations: each reads stored JSON back into the annotated type.

Decoding never calls ``__init__`` (:func:`build_instance`): a stored event is a
historical fact, and a validation rule added to its class later must not make
history unreadable. It stays lenient with what older versions stored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import typing
from collections.abc import Callable, Mapping
from decimal import InvalidOperation
from typing import Any

from orchestrix.core.serialization.annotations import (
    COLLECTIONS,
    MAPPINGS,
    codec_fields,
    container_members,
    is_any,
    literal_options,
    resolve_hints,
    shape,
    union_members,
    unwrap,
)
from orchestrix.core.serialization.json_data import DecodeFailure, Decoder, JsonValue, fail, shown
from orchestrix.core.serialization.scalars import KEY_PARSERS, SCALAR_RULES
from orchestrix.core.serialization.tagged import TAG, decode_tagged, encode_tagged, json_key

__all__ = ["DataclassDecoder", "build_instance", "dataclass_decoder", "decoder_for"]

_decoder_cache: dict[Any, Decoder] = {}


def decoder_for(annotation: Any) -> Decoder:
    try:
        return _decoder_cache[annotation]
    except (KeyError, TypeError):
        pass
    decoder = _build_decoder(unwrap(annotation))
    with contextlib.suppress(TypeError):
        _decoder_cache[annotation] = decoder
    return decoder


def _build_decoder(annotation: Any) -> Decoder:
    if is_any(annotation):
        return decode_tagged
    scalar = SCALAR_RULES.get(annotation)
    if scalar is not None:
        return scalar[1]
    members = union_members(annotation)
    if members is not None:
        return _union_decoder(members)
    origin, args = shape(annotation)
    if origin is typing.Literal:
        allowed = literal_options(annotation)

        def decode_literal(data: JsonValue) -> Any:
            for option in allowed:
                if data == option and type(data) is type(option):
                    return option
            raise fail(f"one of {allowed!r}", data)

        return decode_literal
    if origin in COLLECTIONS:
        build: Callable[[list[Any]], Any] = COLLECTIONS[origin]
        if build is tuple and args and args[-1] is not Ellipsis:
            item_decoders = [decoder_for(a) for a in args]

            def decode_fixed_tuple(data: JsonValue) -> tuple[Any, ...]:
                if type(data) is not list or len(data) != len(item_decoders):
                    raise fail(f"a list of {len(item_decoders)} items", data)
                return tuple(
                    _decode_item(dec, item, i)
                    for i, (dec, item) in enumerate(zip(item_decoders, data, strict=True))
                )

            return decode_fixed_tuple
        item = decoder_for(args[0]) if args else decode_tagged

        def decode_sequence(data: JsonValue) -> Any:
            if type(data) is not list:
                raise fail("a list", data)
            items = [_decode_item(item, x, i) for i, x in enumerate(data)]
            try:
                return build(items)
            except TypeError as error:  # an unhashable item in a set
                raise DecodeFailure(str(error)) from None

        return decode_sequence
    if origin in MAPPINGS:
        key_type = unwrap(args[0]) if len(args) == 2 else str
        value_decoder = decoder_for(args[1]) if len(args) == 2 else decode_tagged
        parse_key = _key_parser(key_type)

        def decode_mapping(data: JsonValue) -> dict[Any, Any]:
            if type(data) is not dict:
                raise fail("an object", data)
            result: dict[Any, Any] = {}
            for k, v in data.items():
                try:
                    result[parse_key(k)] = value_decoder(v)
                except DecodeFailure as failure:
                    raise failure.at(f"[{k!r}]") from None
                except (ValueError, TypeError, KeyError, ArithmeticError, InvalidOperation):
                    raise DecodeFailure(f"bad key {shown(k)}") from None
            return result

        return decode_mapping
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _enum_decoder(annotation)
        if dataclasses.is_dataclass(annotation):

            def decode_dataclass(data: JsonValue) -> Any:
                if type(data) is not dict:
                    raise fail(f"an object for {annotation.__name__}", data)
                return dataclass_decoder(annotation).decode(data)

            return decode_dataclass
        for base, (_, decoder) in SCALAR_RULES.items():
            if isinstance(base, type) and base is not type(None) and issubclass(annotation, base):
                return _subclass_decoder(annotation, decoder)
    name = getattr(annotation, "__qualname__", repr(annotation))

    def unsupported(data: JsonValue) -> Any:
        raise DecodeFailure(f"cannot decode values annotated {name}")

    return unsupported


def _decode_item(decoder: Decoder, data: JsonValue, index: int) -> Any:
    try:
        return decoder(data)
    except DecodeFailure as failure:
        raise failure.at(f"[{index}]") from None


def _subclass_decoder(kind: type, base_decoder: Decoder) -> Decoder:
    def decode(data: JsonValue) -> Any:
        value = base_decoder(data)
        try:
            return kind(value)
        except (ValueError, TypeError, ArithmeticError) as error:
            raise DecodeFailure(f"{kind.__name__} refuses {shown(value)}: {error}") from None

    return decode


def _enum_decoder(kind: type[enum.Enum]) -> Decoder:
    def decode(data: JsonValue) -> enum.Enum:
        try:
            return kind(data)
        except (ValueError, TypeError):
            raise fail(f"a {kind.__name__} value", data) from None

    return decode


def _key_parser(key_type: Any) -> Callable[[str], Any]:
    if is_any(key_type):
        return str
    if isinstance(key_type, type) and issubclass(key_type, enum.Enum):
        members = {json_key(encode_tagged(m.value)): m for m in key_type}
        return lambda k: members[k]
    parser = KEY_PARSERS.get(key_type)
    if parser is not None:
        return parser
    if typing.get_origin(key_type) is typing.Literal:
        options = {json_key(a): a for a in literal_options(key_type)}
        return lambda k: options[k]
    return str


def _union_decoder(members: tuple[Any, ...]) -> Decoder:
    optional = type(None) in members
    others = [m for m in members if m is not type(None)]
    if len(others) == 1:
        inner = decoder_for(others[0])
        if optional:
            return lambda data: None if data is None else inner(data)
        return inner
    decoders = [decoder_for(m) for m in others]
    by_name: dict[str, Any] = {m.__name__: m for m in others if isinstance(m, type)}
    for origin, (member, _) in container_members(others).items():
        by_name.setdefault(origin.__name__, member)
    # The encoder writes str, int, bool and float values as they are, and every
    # other member's values tagged or in another JSON type: such a value is
    # the member of its own type, never a Decimal, a date or an enum parsed
    # from it. Without that member, it can only be a Literal member's value.
    unwrapped = [unwrap(m) for m in others]
    native = frozenset(m for m in unwrapped if m in (str, int, bool, float))
    literals = [decoder_for(m) for m in unwrapped if typing.get_origin(m) is typing.Literal]

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
                    raise fail(f"one of {sorted(by_name)}", data)
                return decoder_for(member)(data.get("value"))
            return decode_tagged(data)
        failures = []
        for decoder in decoders:
            try:
                return decoder(data)
            except DecodeFailure as failure:
                failures.append(failure.detail)
        raise DecodeFailure("matches no member of the union: " + "; ".join(failures))

    return decode


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


_dict_backed: dict[type, bool] = {}


def build_instance(cls: Any, values: dict[str, Any]) -> Any:
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


class DataclassDecoder:
    """How to decode one dataclass, computed once per class (see :func:`dataclass_decoder`)."""

    __slots__ = ("cls", "decoders", "defaults")

    def __init__(self, cls: type) -> None:
        fields = codec_fields(cls)
        hints = resolve_hints(cls, fields)
        self.cls = cls
        self.decoders = {f.name: decoder_for(hints.get(f.name, Any)) for f in fields}
        self.defaults: dict[str, Callable[[], Any]] = {}
        for f in fields:
            if f.default is not dataclasses.MISSING:
                self.defaults[f.name] = _constant(f.default)
            elif f.default_factory is not dataclasses.MISSING:
                self.defaults[f.name] = f.default_factory

    def decode(self, data: Mapping[str, JsonValue], skip: frozenset[str] = frozenset()) -> Any:
        return build_instance(self.cls, self.decode_fields(data, skip))

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


_dataclass_decoders: dict[type, DataclassDecoder] = {}


def dataclass_decoder(cls: type) -> DataclassDecoder:
    """The (cached) decoder of the dataclass ``cls``."""
    decoder = _dataclass_decoders.get(cls)
    if decoder is None:
        decoder = _dataclass_decoders[cls] = DataclassDecoder(cls)
    return decoder
