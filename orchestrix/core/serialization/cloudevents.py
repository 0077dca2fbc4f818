"""Events in the CloudEvents JSON format (structured mode), and back."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from orchestrix.core.common.exceptions import EventDecodeError
from orchestrix.core.messaging.message import Event
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix.core.serialization.json_data import JsonValue

__all__ = ["from_cloudevent", "to_cloudevent"]


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
