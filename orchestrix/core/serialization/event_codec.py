"""The event codec: an event to its stored parts (:class:`EncodedEvent`) and back.

The domain fields go to ``data``, the CloudEvents attributes that are set to
``metadata``; decoding finds the class in an event registry by type and schema version.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrix.core.common.exceptions import EventDecodeError
from orchestrix.core.messaging.message import (
    CLOUDEVENT_FIELDS,
    Event,
    EventRegistry,
    default_registry,
)
from orchestrix.core.serialization.annotations import resolve_hints, stored_as_is
from orchestrix.core.serialization.decoding import build_instance
from orchestrix.core.serialization.json_data import DecodeFailure, JsonValue, Mismatch
from orchestrix.core.serialization.values import dataclass_codec

__all__ = ["METADATA_FIELDS", "EncodedEvent", "EventCodec"]

#: Message fields kept in the ``metadata`` part of an encoded event.
METADATA_FIELDS: tuple[str, ...] = tuple(
    f for f in CLOUDEVENT_FIELDS if f not in {"id", "type", "timestamp", "data"}
)


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
        except Mismatch as mismatch:
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
        event: Event = build_instance(cls, values)
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
        hints = resolve_hints(cls, fields)
        self.schema_version = int(getattr(cls, "schema_version", 1))
        self.field_encoders = tuple((name, encoders[name]) for name in own)
        self.data_encoder = encoders["data"]
        self.meta_encoders = tuple((name, encoders[name]) for name in METADATA_FIELDS)
        self.fields = tuple(
            (name, plan.decoders[name], plan.defaults.get(name), stored_as_is(hints.get(name)))
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


_event_plans: dict[type, _EventPlan] = {}


def _event_plan(cls: type[Event]) -> _EventPlan:
    plan = _event_plans.get(cls)
    if plan is None:
        plan = _event_plans[cls] = _EventPlan(cls)
    return plan


_ENVELOPE = frozenset(CLOUDEVENT_FIELDS)
