"""Stored events as CloudEvents JSON: what the API serves and what export/import write and read.

Both forms use the layout of :func:`orchestrix.core.serialization.cloudevents.to_cloudevent`
(``specversion``, ``id``, ``source``, ``type``, ``time``, ``schemaversion``,
``data`` with the event's own fields, and the extension attributes
``correlationid``, ``causationid``, ``traceid``), plus extension attributes
that place the event in the store:

* ``streamid``: its stream (the aggregate id);
* ``streamversion``: its version in that stream (1, 2, 3, …);
* ``position``: its position in the global log of the store it was read from
  (what the API's ``?after=`` takes);
* ``aggregatetype``: the stream's aggregate type label (exports only, when set);
* ``extrametadata``: stored metadata that has no CloudEvents attribute
  (exports only, when there is any).

:func:`stored_cloudevent` renders an event as readers see it: decoded and
upcast to its current class (the API). :func:`row_cloudevent` renders a
stored row as it is, neither decoded nor upcast (the export: a backup keeps
each event's stored schema version, and also holds events whose class is
gone), and :func:`parse_row` reads that back (the import), so that an
export/import round trip stores the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.serialization.cloudevents import to_cloudevent
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix_django.storage.rows import EventRow

__all__ = [
    "EXTENSION_ATTRIBUTES",
    "parse_row",
    "row_cloudevent",
    "stored_cloudevent",
]

#: The extension attributes that place an event in the store.
EXTENSION_ATTRIBUTES = ("streamid", "streamversion", "position")

#: Stored metadata keys and the CloudEvents attributes they become.
_METADATA_ATTRIBUTES = {
    "specversion": "specversion",
    "source": "source",
    "subject": "subject",
    "datacontenttype": "datacontenttype",
    "dataschema": "dataschema",
    "correlation_id": "correlationid",
    "causation_id": "causationid",
    "trace_id": "traceid",
}
#: CloudEvents requires these; rows without them get the codec's defaults.
_REQUIRED_DEFAULTS = {"specversion": "1.0", "source": "orchestrix"}


def stored_cloudevent(stored: StoredEvent, codec: EventCodec) -> dict[str, Any]:
    """A decoded (and upcast) event of the log as CloudEvents JSON, with its place."""
    out = to_cloudevent(stored.event, codec)
    out["streamid"] = stored.stream_id
    out["streamversion"] = stored.version
    out["position"] = stored.position
    return out


def row_cloudevent(row: EventRow) -> dict[str, Any]:
    """A stored row as CloudEvents JSON, as it is stored (see the module docs)."""
    encoded = row.encoded
    meta = encoded.metadata
    out: dict[str, Any] = {
        "specversion": meta.get("specversion", _REQUIRED_DEFAULTS["specversion"]),
        "id": encoded.event_id,
        "source": meta.get("source", _REQUIRED_DEFAULTS["source"]),
        "type": encoded.event_type,
        "time": encoded.timestamp.isoformat(),
    }
    for key, attribute in _METADATA_ATTRIBUTES.items():
        if key not in _REQUIRED_DEFAULTS and meta.get(key) is not None:
            out[attribute] = meta[key]
    extra = {key: value for key, value in meta.items() if key not in _METADATA_ATTRIBUTES}
    if extra:
        out["extrametadata"] = extra
    out["schemaversion"] = encoded.schema_version
    out["data"] = encoded.data
    out["streamid"] = row.stream_id
    out["streamversion"] = row.version
    if row.position is not None:
        out["position"] = row.position
    if row.aggregate_type:
        out["aggregatetype"] = row.aggregate_type
    return out


def parse_row(cloudevent: object) -> EventRow:
    """The stored row :func:`row_cloudevent` wrote; ``ValueError`` says what is wrong."""
    if not isinstance(cloudevent, Mapping):
        raise ValueError(f"expected a JSON object, got {type(cloudevent).__name__}")
    event_id = _text(cloudevent, "id")
    event_type = _text(cloudevent, "type")
    moment = _text(cloudevent, "time")
    try:
        timestamp = datetime.fromisoformat(moment)
    except ValueError:
        raise ValueError(f"'time' is not an ISO 8601 date and time: {moment!r}") from None
    if timestamp.utcoffset() is None:
        raise ValueError(f"'time' has no time zone: {moment!r}")
    data = cloudevent.get("data", {})
    if not isinstance(data, dict):
        raise ValueError(f"'data' must be a JSON object, got {data!r}")
    metadata: dict[str, Any] = {}
    for key, attribute in _METADATA_ATTRIBUTES.items():
        value = cloudevent.get(attribute)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{attribute!r} must be a string, got {value!r}")
        metadata[key] = value
    extra = cloudevent.get("extrametadata", {})
    if not isinstance(extra, dict):
        raise ValueError(f"'extrametadata' must be a JSON object, got {extra!r}")
    metadata.update(extra)
    aggregate_type = cloudevent.get("aggregatetype", "")
    if not isinstance(aggregate_type, str):
        raise ValueError(f"'aggregatetype' must be a string, got {aggregate_type!r}")
    position = cloudevent.get("position")
    if position is not None:
        position = _whole(cloudevent, "position", minimum=1)
    return EventRow(
        stream_id=_text(cloudevent, "streamid"),
        version=_whole(cloudevent, "streamversion", minimum=1),
        encoded=EncodedEvent(
            event_id=event_id,
            event_type=event_type,
            schema_version=_whole(cloudevent, "schemaversion", minimum=1, default=1),
            timestamp=timestamp,
            data=data,
            metadata=metadata,
        ),
        position=position,
        aggregate_type=aggregate_type,
    )


def _text(cloudevent: Mapping[str, Any], attribute: str) -> str:
    value = cloudevent.get(attribute)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute!r} must be a non-empty string, got {value!r}")
    return value


def _whole(
    cloudevent: Mapping[str, Any], attribute: str, *, minimum: int, default: int | None = None
) -> int:
    value = cloudevent.get(attribute, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{attribute!r} must be a whole number >= {minimum}, got {value!r}")
    return value
