"""Encoders built from annotations: each checks a value and writes it as JSON.

An encoder refuses (raising :class:`Mismatch`) a value its annotation's decoder
would not give back equal, so a store never keeps what it can't read back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import typing
from collections.abc import Mapping
from typing import Any

from orchestrix.core.serialization.annotations import (
    COLLECTIONS,
    MAPPINGS,
    annotation_name,
    codec_fields,
    container_members,
    is_any,
    literal_options,
    resolve_hints,
    shape,
    union_members,
    unwrap,
)
from orchestrix.core.serialization.json_data import Encoder, JsonValue, Mismatch
from orchestrix.core.serialization.scalars import KEY_PARSERS, SCALAR_RULES
from orchestrix.core.serialization.tagged import (
    EXPONENT_FLOATS,
    TAG,
    encode_items,
    encode_mapping,
    encode_tagged,
    json_key,
    sorted_if_possible,
    untyped_key,
)

__all__ = ["encode_fields", "encoder_for", "field_encoders"]

_encoder_cache: dict[Any, Encoder] = {}


def encoder_for(annotation: Any) -> Encoder:
    try:
        return _encoder_cache[annotation]
    except (KeyError, TypeError):
        pass
    encoder = _build_encoder(unwrap(annotation))
    with contextlib.suppress(TypeError):  # an unhashable annotation is just not cached
        _encoder_cache[annotation] = encoder
    return encoder


def _build_encoder(annotation: Any) -> Encoder:
    if is_any(annotation):
        return encode_tagged
    scalar = SCALAR_RULES.get(annotation)
    if scalar is not None:
        return scalar[0]
    members = union_members(annotation)
    if members is not None:
        optional = type(None) in members
        others = [m for m in members if m is not type(None)]
        if len(others) == 1:
            inner = encoder_for(others[0])
            if optional:
                return lambda v: None if v is None else inner(v)
            return inner
        return _union_encoder(others, optional)
    origin, args = shape(annotation)
    if origin is typing.Literal:
        return _literal_encoder(annotation)
    if origin in COLLECTIONS:
        return _collection_encoder(origin, args)
    if origin in MAPPINGS:
        key_encoder = _key_encoder(unwrap(args[0]) if len(args) == 2 else str)
        value_encoder = encoder_for(args[1]) if len(args) == 2 else encode_tagged

        def encode_dict(value: Any) -> JsonValue:
            if isinstance(value, Mapping):
                return encode_mapping(key_encoder, value_encoder, value)
            raise Mismatch("a dict", value)

        return encode_dict
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return _enum_encoder(annotation)
        if dataclasses.is_dataclass(annotation):
            return _dataclass_encoder(annotation)
        for base, (encoder, _) in SCALAR_RULES.items():
            if isinstance(base, type) and base is not type(None) and issubclass(annotation, base):
                return _subclass_encoder(annotation, encoder)
    name = annotation_name(annotation)

    def unsupported(value: Any) -> JsonValue:
        raise Mismatch(f"a supported annotation (values annotated {name} can't be read)", value)

    return unsupported


def _literal_encoder(annotation: Any) -> Encoder:
    options = literal_options(annotation)

    def encode_literal(value: Any) -> JsonValue:
        for option in options:
            if type(value) is type(option) and value == option:
                return value
        raise Mismatch(f"one of {options!r}", value)

    return encode_literal


def _collection_encoder(origin: Any, args: tuple[Any, ...]) -> Encoder:
    built = COLLECTIONS[origin]
    if built is tuple and args and args[-1] is not Ellipsis:
        item_encoders = [encoder_for(a) for a in args]
        size = len(item_encoders)

        def encode_fixed_tuple(value: Any) -> JsonValue:
            if not isinstance(value, tuple) or len(value) != size:
                raise Mismatch(f"a tuple of {size} items", value)
            encoded = []
            for index, (encode, item) in enumerate(zip(item_encoders, value, strict=True)):
                try:
                    encoded.append(encode(item))
                except Mismatch as mismatch:
                    raise mismatch.at(f"[{index}]") from None
            return encoded

        return encode_fixed_tuple
    item = encoder_for(args[0]) if args else encode_tagged
    if built is set or built is frozenset:

        def encode_set(value: Any) -> JsonValue:
            if isinstance(value, set | frozenset):
                return sorted_if_possible(encode_items(item, value))
            raise Mismatch("a set or frozenset", value)

        return encode_set
    expected = f"a {built.__name__}"
    if origin is not built:
        expected += f" ({annotation_name(origin)} values are read back as {built.__name__}s)"

    def encode_sequence(value: Any) -> JsonValue:
        if isinstance(value, built):
            return encode_items(item, value)
        raise Mismatch(expected, value)

    return encode_sequence


def _key_encoder(key_type: Any) -> Encoder:
    """How a dict key of ``key_type`` is checked and written (see _key_parser for reading)."""
    if isinstance(key_type, type) and issubclass(key_type, enum.Enum):
        member_encoder = _enum_encoder(key_type)
        return lambda key: json_key(member_encoder(key))
    if typing.get_origin(key_type) is typing.Literal:
        literal_encoder = _literal_encoder(key_type)
        return lambda key: json_key(literal_encoder(key))
    if key_type in KEY_PARSERS:
        encode = SCALAR_RULES[key_type][0]
        return lambda key: json_key(encode(key))
    return untyped_key


def _enum_encoder(kind: type[enum.Enum]) -> Encoder:
    def encode_member(value: Any) -> JsonValue:
        if isinstance(value, kind):
            return encode_tagged(value.value)
        raise Mismatch(f"a {kind.__qualname__} member", value)

    return encode_member


def _dataclass_encoder(cls: type) -> Encoder:
    def encode_dataclass(value: Any) -> JsonValue:
        if type(value) is cls:
            # Looked up at call time: a dataclass may refer to itself (a tree of nodes).
            return encode_fields(cls, value)
        raise Mismatch(cls.__qualname__, value)

    return encode_dataclass


def _subclass_encoder(kind: type, base_encoder: Encoder) -> Encoder:
    def encode(value: Any) -> JsonValue:
        if isinstance(value, kind):
            return base_encoder(value)
        raise Mismatch(kind.__qualname__, value)

    return encode


def _union_encoder(members: list[Any], optional: bool) -> Encoder:
    """Several non-None members: tag what the JSON shape alone can't tell apart."""
    classes = {m.__name__: m for m in members if isinstance(m, type)}
    containers = {
        origin: (origin.__name__, encoder_for(member), tagged)
        for origin, (member, tagged) in container_members(members).items()
    }
    checks = [encoder_for(member) for member in members]
    expected = " | ".join(annotation_name(m) for m in members) + (" | None" if optional else "")

    def check(value: Any) -> None:
        """Pass when a member takes ``value``; else the mismatch of the one that took its shape."""
        failures = []
        for member_encoder in checks:
            try:
                member_encoder(value)
            except Mismatch as mismatch:
                failures.append(mismatch)
            else:
                return
        inside = [failure for failure in failures if failure.path]
        if len(inside) == 1:
            raise inside[0]
        raise Mismatch(expected, value)

    def encode(value: Any) -> JsonValue:
        if value is None:
            if optional:
                return None
            raise Mismatch(expected, value)
        check(value)
        kind = type(value)
        if kind is bool or kind is int or kind is str:
            return value
        if kind is float and -EXPONENT_FLOATS < value < EXPONENT_FLOATS:
            return value
        if isinstance(value, enum.Enum) or dataclasses.is_dataclass(value):
            name = kind.__name__
            if classes.get(name) is kind:
                return {TAG: "member", "class": name, "value": encoder_for(kind)(value)}
        container = containers.get(kind)
        if container is not None:
            # The one member of this container type encodes it, so that its
            # items keep their types (a list[Money] of dataclasses).
            name, encoder, tagged = container
            encoded = encoder(value)
            if tagged or (type(encoded) is dict and TAG in encoded):
                return {TAG: "member", "class": name, "value": encoded}
            return encoded
        return encode_tagged(value)

    return encode


_field_encoders: dict[type, tuple[tuple[str, Encoder], ...]] = {}


def field_encoders(cls: type) -> tuple[tuple[str, Encoder], ...]:
    """The (cached) name and encoder of each stored field of the dataclass ``cls``, in order."""
    found = _field_encoders.get(cls)
    if found is None:
        fields = codec_fields(cls)
        hints = resolve_hints(cls, fields)
        found = tuple((f.name, encoder_for(hints.get(f.name, Any))) for f in fields)
        _field_encoders[cls] = found
    return found


def encode_fields(cls: type, value: Any) -> dict[str, JsonValue]:
    """The stored fields of ``value`` (an instance of the dataclass ``cls``) as JSON.

    Raises :class:`Mismatch` with the path of a field that does not fit its annotation.
    """
    out: dict[str, JsonValue] = {}
    for name, encoder in field_encoders(cls):
        try:
            out[name] = encoder(getattr(value, name))
        except Mismatch as mismatch:
            raise mismatch.at(name) from None
    return out
