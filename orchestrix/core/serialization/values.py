"""The value codec: any value to plain JSON and back, guided by its annotation.

See docs/core-api.md ("Serialization") for the rules: which values each
annotation takes, how untyped values are tagged, and what databases do to JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orchestrix.core.serialization.decoding import dataclass_decoder, decoder_for
from orchestrix.core.serialization.encoding import encode_fields, encoder_for, field_encoders
from orchestrix.core.serialization.json_data import Decoder, Encoder, JsonValue, Mismatch

__all__ = ["DataclassCodec", "dataclass_codec", "decode_value", "encode_value"]


class DataclassCodec:
    """How to encode and decode one dataclass, computed once per class (:func:`dataclass_codec`)."""

    __slots__ = ("_decoder", "cls", "decoders", "defaults", "encoders", "names")

    def __init__(self, cls: type) -> None:
        fields = field_encoders(cls)
        decoder = dataclass_decoder(cls)
        self.cls = cls
        self.names: list[str] = [name for name, _ in fields]
        self.encoders: list[Encoder] = [encoder for _, encoder in fields]
        self.decoders: dict[str, Decoder] = decoder.decoders
        self.defaults: dict[str, Callable[[], Any]] = decoder.defaults
        self._decoder = decoder

    def encode(self, value: Any) -> dict[str, JsonValue]:
        """The fields of ``value`` as JSON; :class:`EncodeError` when one doesn't fit its type."""
        try:
            return encode_fields(self.cls, value)
        except Mismatch as mismatch:
            raise mismatch.at(self.cls.__name__).error() from None

    def decode(self, data: Mapping[str, JsonValue], skip: frozenset[str] = frozenset()) -> Any:
        """An instance built from ``data`` (without calling ``__init__``)."""
        return self._decoder.decode(data, skip)

    def decode_fields(
        self, data: Mapping[str, JsonValue], skip: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The field values read from ``data``, defaults filled in, ``skip`` left out."""
        return self._decoder.decode_fields(data, skip)


_plans: dict[type, DataclassCodec] = {}


def dataclass_codec(cls: type) -> DataclassCodec:
    """The (cached) codec of a dataclass: ``encode(obj)`` and ``decode_fields(data)``."""
    plan = _plans.get(cls)
    if plan is None:
        plan = _plans[cls] = DataclassCodec(cls)
    return plan


def encode_value(value: Any, annotation: Any = Any) -> JsonValue:
    """Encode ``value`` to JSON-compatible data, guided by ``annotation``.

    Raises :class:`EncodeError` when ``value`` does not fit ``annotation``:
    :func:`decode_value` would not give it back.
    """
    try:
        return encoder_for(annotation)(value)
    except Mismatch as mismatch:
        raise mismatch.error() from None


def decode_value(data: JsonValue, annotation: Any = Any) -> Any:
    """Decode JSON-compatible ``data`` made by :func:`encode_value` with the same annotation.

    Raises :class:`DecodeFailure` when the data does not match the annotation.
    """
    return decoder_for(annotation)(data)
