"""What the API returns, described as DRF serializers (also the OpenAPI schema's components).

The views build plain dicts (rows of the framework's tables with their
links) and render them through these serializers. Events are the
exception: their bodies come from :mod:`orchestrix_django.storage.cloudevents`, and
:class:`CloudEventSerializer` only describes them in the schema.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

__all__ = [
    "ApiRootSerializer",
    "CloudEventSerializer",
    "DeadLetterOperationSerializer",
    "DeadLetterPageSerializer",
    "DeadLetterSerializer",
    "ErrorSerializer",
    "ProjectionListSerializer",
    "ProjectionOperationSerializer",
    "ProjectionSerializer",
    "SagaPageSerializer",
    "SagaSerializer",
    "StreamPageSerializer",
    "StreamSerializer",
]


class CloudEventSerializer(serializers.Serializer[dict[str, Any]]):
    """An event in CloudEvents JSON (structured mode), decoded and upcast to its current class."""

    specversion = serializers.CharField(help_text="The CloudEvents version, 1.0.")
    id = serializers.CharField(help_text="The event's id, unique in the store.")
    # DRF's metaclass takes declared fields out of the class attributes, so a field may
    # share a name with an attribute of Field or Serializer; the stubs can't tell.
    source = serializers.CharField()  # type: ignore[assignment]
    type = serializers.CharField(help_text="The event type (by default its class name).")
    time = serializers.DateTimeField(help_text="When the event happened (UTC).")
    datacontenttype = serializers.CharField(required=False)
    dataschema = serializers.CharField(required=False)
    subject = serializers.CharField(required=False)
    schemaversion = serializers.IntegerField(
        help_text="The schema version of the event's class (after upcasting)."
    )
    data = serializers.DictField(help_text="The event's own fields, as JSON.")  # type: ignore[assignment]
    correlationid = serializers.CharField(required=False)
    causationid = serializers.CharField(required=False)
    traceid = serializers.CharField(required=False)
    streamid = serializers.CharField(help_text="Extension: the event's stream (aggregate id).")
    streamversion = serializers.IntegerField(
        help_text="Extension: the event's version in its stream (1, 2, 3, …)."
    )
    position = serializers.IntegerField(
        help_text="Extension: the event's position in the global log (the log's `after`)."
    )


class StreamSerializer(serializers.Serializer[dict[str, Any]]):
    """A stream: the summary kept on append."""

    stream_id = serializers.CharField()
    aggregate_type = serializers.CharField(help_text="The aggregate class name, or empty.")
    version = serializers.IntegerField(help_text="The number of events in the stream.")
    first_position = serializers.IntegerField()
    last_position = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    url = serializers.URLField()
    events_url = serializers.URLField()


class StreamPageSerializer(serializers.Serializer[dict[str, Any]]):
    """A page of streams, by stream id."""

    results = StreamSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")


class ProjectionSerializer(serializers.Serializer[dict[str, Any]]):
    """A projection: its checkpoint, lag and health."""

    projection_id = serializers.CharField()
    configured = serializers.BooleanField(
        help_text="Whether ORCHESTRIX['PROJECTIONS'] lists it (else only its state is stored)."
    )
    position = serializers.IntegerField(help_text="The position of the last event applied.")
    head = serializers.IntegerField(help_text="The position of the newest event of the log.")
    lag = serializers.IntegerField()
    healthy = serializers.BooleanField()
    paused = serializers.BooleanField()
    last_error = serializers.CharField(allow_null=True)
    error_count = serializers.IntegerField()
    events_processed = serializers.IntegerField()
    parked = serializers.IntegerField(help_text="Its dead letters waiting for an operator.")
    updated_at = serializers.DateTimeField(allow_null=True)
    stalled = serializers.BooleanField(
        help_text="Events wait and nothing has advanced it for ORCHESTRIX['STALLED_AFTER'] "
        "seconds: no runner holds it."
    )
    url = serializers.URLField()
    rebuild_url = serializers.URLField(
        allow_null=True, help_text="POST here to rebuild it (configured projections only)."
    )
    pause_url = serializers.URLField(help_text="POST here to pause it.")
    resume_url = serializers.URLField(help_text="POST here to resume it.")


class ProjectionListSerializer(serializers.Serializer[dict[str, Any]]):
    """Every projection (a handful: not paginated)."""

    results = ProjectionSerializer(many=True)


class SagaSerializer(serializers.Serializer[dict[str, Any]]):
    """A saga's stored state, with its step history."""

    saga_id = serializers.CharField()
    saga_type = serializers.CharField()
    status = serializers.CharField()
    current_step = serializers.CharField(allow_null=True)
    steps = serializers.JSONField(help_text="One record per step: status, attempts, result, …")
    kwargs = serializers.JSONField(help_text="The keyword arguments the saga was started with.")
    error = serializers.CharField(allow_null=True)
    correlation_id = serializers.CharField(allow_null=True)
    causation_id = serializers.CharField(allow_null=True)
    trace_id = serializers.CharField(allow_null=True)
    deadline = serializers.DateTimeField(
        allow_null=True, help_text="The earliest pending deadline."
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    version = serializers.IntegerField()
    url = serializers.URLField()


class SagaPageSerializer(serializers.Serializer[dict[str, Any]]):
    """A page of sagas, by saga id."""

    results = SagaSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")


class DeadLetterSerializer(serializers.Serializer[dict[str, Any]]):
    """A message that could not be handled, parked for an operator."""

    id = serializers.CharField()
    # A declared field, not Field.source (see CloudEventSerializer.source).
    source = serializers.CharField(  # type: ignore[assignment]
        help_text="Who parked it: projection:<id> or bus:<handler>, for instance."
    )
    status = serializers.CharField(help_text="parked, retried or discarded.")
    message_type = serializers.CharField()
    message_id = serializers.CharField(allow_null=True)
    payload = serializers.JSONField(help_text="The message (an event as CloudEvents JSON).")
    reason = serializers.CharField()
    error_type = serializers.CharField()
    traceback = serializers.CharField()
    handler = serializers.CharField(allow_null=True)
    attempts = serializers.IntegerField()
    position = serializers.IntegerField(allow_null=True)
    stream_id = serializers.CharField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    url = serializers.URLField()
    retry_url = serializers.URLField(help_text="POST here to retry it.")
    discard_url = serializers.URLField(help_text="POST here to discard it.")


class DeadLetterPageSerializer(serializers.Serializer[dict[str, Any]]):
    """A page of dead letters, by id."""

    results = DeadLetterSerializer(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")


class ProjectionOperationSerializer(serializers.Serializer[dict[str, Any]]):
    """What an operation (rebuild, pause, resume) did, and the projection now."""

    ok = serializers.BooleanField()
    detail = serializers.CharField()
    projection = ProjectionSerializer()


class DeadLetterOperationSerializer(serializers.Serializer[dict[str, Any]]):
    """What an operation (retry, discard) did, and the letter now."""

    ok = serializers.BooleanField()
    detail = serializers.CharField()
    dead_letter = DeadLetterSerializer()


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """An error: what went wrong, in a sentence."""

    detail = serializers.CharField()


class ApiRootSerializer(serializers.Serializer[dict[str, Any]]):
    """Where everything is."""

    streams = serializers.URLField()
    events = serializers.URLField()
    projections = serializers.URLField()
    sagas = serializers.URLField()
    dead_letters = serializers.URLField()
    schema = serializers.URLField()
