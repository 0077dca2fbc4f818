"""The exception hierarchy of Orchestrix.

Every error the framework raises on purpose derives from :class:`OrchestrixError`,
so ``except OrchestrixError`` catches all of them and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = [
    "AggregateNotFoundError",
    "ConcurrencyError",
    "DowncastError",
    "DuplicateEventError",
    "DuplicateEventTypeError",
    "EncodeError",
    "EventDecodeError",
    "HandlerError",
    "MissingEventHandlerError",
    "MissingUpcasterError",
    "OrchestrixError",
    "SagaError",
    "UnknownEventTypeError",
    "UpcastError",
    "ValidationError",
]


class OrchestrixError(Exception):
    """Base class for all framework errors."""


class HandlerError(OrchestrixError):
    """A subscribed handler failed while a message was delivered.

    The bus runs every handler before it raises, so one failing handler never
    hides the others. ``errors`` lists every failure of that delivery (this one
    first); ``original_error`` is the exception the handler raised.
    """

    def __init__(self, message_type: str, handler_name: str, original_error: Exception) -> None:
        self.message_type = message_type
        self.handler_name = handler_name
        self.original_error = original_error
        self.errors: list[HandlerError] = [self]
        super().__init__(
            f"handler {handler_name} failed on {message_type}: "
            f"{type(original_error).__name__}: {original_error}"
        )

    def __reduce__(self) -> tuple[type[HandlerError], tuple[str, str, Exception]]:
        return (type(self), (self.message_type, self.handler_name, self.original_error))


class ConcurrencyError(OrchestrixError):
    """A stream changed since the writer read it (optimistic locking).

    Reload the aggregate and decide again: the error is always safe to retry.
    """

    def __init__(
        self,
        aggregate_id: str,
        expected_version: int,
        actual_version: int,
        reason: str | None = None,
    ) -> None:
        self.aggregate_id = aggregate_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        self.reason = reason
        text = (
            f"concurrency conflict on stream {aggregate_id!r}: expected version "
            f"{expected_version}, actual version {actual_version}"
        )
        if reason:
            text += f" ({reason})"
        super().__init__(text + "; reload the aggregate and retry")

    def __reduce__(self) -> tuple[type[ConcurrencyError], tuple[str, int, int, str | None]]:
        return (
            type(self),
            (self.aggregate_id, self.expected_version, self.actual_version, self.reason),
        )


class DuplicateEventError(OrchestrixError):
    """Events with these ids are already stored, but not as this exact save.

    A save whose events are all already stored, in the same stream and at the
    same versions, is a retried request and succeeds without storing anything;
    any other overlap is this error.
    """

    def __init__(self, aggregate_id: str, event_ids: Sequence[str], detail: str = "") -> None:
        self.aggregate_id = aggregate_id
        self.event_ids = list(event_ids)
        shown = ", ".join(self.event_ids[:5]) + (" …" if len(self.event_ids) > 5 else "")
        super().__init__(
            f"event id(s) {shown} already stored; save to stream {aggregate_id!r} refused"
            + (f": {detail}" if detail else "")
        )


class AggregateNotFoundError(OrchestrixError, LookupError):
    """The repository found neither events nor a snapshot for an aggregate."""

    def __init__(self, aggregate_type: str, aggregate_id: str) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        super().__init__(f"{aggregate_type} {aggregate_id!r} not found: its stream has no events")


class MissingEventHandlerError(OrchestrixError):
    """An aggregate was given an event it has no ``_when_…`` method for."""

    def __init__(self, aggregate_type: str, event_type: str, method_name: str) -> None:
        self.aggregate_type = aggregate_type
        self.event_type = event_type
        self.method_name = method_name
        super().__init__(
            f"{aggregate_type} cannot apply {event_type}: write "
            f"`def {method_name}(self, event: {event_type}) -> None` on {aggregate_type}, "
            f"or add {event_type!r} to {aggregate_type}.ignored_events"
        )


class DuplicateEventTypeError(OrchestrixError):
    """Two different event classes claim the same ``type`` and schema version."""

    def __init__(self, event_type: str, schema_version: int, classes: Sequence[str]) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        self.classes = list(classes)
        super().__init__(
            f"event type {event_type!r} (schema version {schema_version}) is claimed by "
            f"{' and '.join(self.classes)}; give one of them another `type`"
        )


class UnknownEventTypeError(OrchestrixError, LookupError):
    """A stored event's type has no registered event class."""

    def __init__(
        self,
        event_type: str,
        schema_version: int | None = None,
        stream_id: str | None = None,
        version: int | None = None,
        position: int | None = None,
    ) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        self.stream_id = stream_id
        self.version = version
        #: The event's position in the global log, when a read of the log met it.
        self.position = position
        where = ""
        if stream_id is not None:
            where = (
                f" (stream {stream_id!r}"
                + (f", version {version}" if version else "")
                + (f", position {position}" if position is not None else "")
                + ")"
            )
        schema = f" schema version {schema_version}" if schema_version is not None else ""
        super().__init__(
            f"no event class is registered for type {event_type!r}{schema}{where}; "
            "import the module that defines it, or register it with the event registry"
        )


class EventDecodeError(OrchestrixError, ValueError):
    """Stored event data could not be turned back into its event class."""

    def __init__(
        self,
        detail: str,
        *,
        event_type: str | None = None,
        stream_id: str | None = None,
        version: int | None = None,
        position: int | None = None,
    ) -> None:
        self.detail = detail
        self.event_type = event_type
        self.stream_id = stream_id
        self.version = version
        self.position = position
        where = [
            f"{label} {value!r}"
            for label, value in (
                ("stream", stream_id),
                ("version", version),
                ("type", event_type),
                ("position", position),
            )
            if value is not None
        ]
        super().__init__(
            "cannot decode stored event"
            + (f" ({', '.join(where)})" if where else "")
            + f": {detail}"
        )


class UpcastError(OrchestrixError):
    """An event could not be brought to the requested schema version."""


class MissingUpcasterError(UpcastError):
    """The upcaster chain of an event type has a missing link."""

    def __init__(
        self,
        event_type: str,
        from_version: int,
        target_version: int,
        chain: Sequence[tuple[int, int]],
    ) -> None:
        self.event_type = event_type
        self.from_version = from_version
        self.target_version = target_version
        self.chain = list(chain)
        super().__init__(
            f"no upcaster for {event_type!r} from schema version {from_version} "
            f"(wanted {target_version}; registered links: {self.chain or 'none'}); "
            f"register an EventUpcaster({from_version}, …) for {event_type!r}"
        )


class DowncastError(UpcastError):
    """An upcast was asked to go to an older schema version."""

    def __init__(self, event_type: str, from_version: int, target_version: int) -> None:
        self.event_type = event_type
        self.from_version = from_version
        self.target_version = target_version
        super().__init__(
            f"cannot downcast {event_type!r} from schema version {from_version} to "
            f"{target_version}: upcasters only move events to newer versions"
        )


class ValidationError(OrchestrixError, ValueError):
    """A value failed validation; ``errors`` maps each field to its messages."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        self.errors: dict[str, list[str]] = {field or "non_field_errors": [message]}
        super().__init__(f"{field}: {message}" if field else message)

    @classmethod
    def from_errors(cls, errors: Mapping[str, Sequence[str]]) -> ValidationError:
        """Build one error that carries the messages of several fields."""
        if not errors:
            raise ValueError("from_errors() needs at least one field error")
        first_field, first_messages = next(iter(errors.items()))
        error = cls(first_messages[0], None if first_field == "non_field_errors" else first_field)
        error.errors = {name: list(messages) for name, messages in errors.items()}
        error.args = ("; ".join(f"{f}: {m}" for f, ms in errors.items() for m in ms),)
        return error

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_validation_error, (self.errors,))


def _rebuild_validation_error(errors: Mapping[str, Sequence[str]]) -> ValidationError:
    return ValidationError.from_errors(errors)


class EncodeError(ValidationError, TypeError):
    """A value a store would not give back as it is: it does not fit its annotation.

    Raised by the codec before anything is stored (an event whose ``count: int``
    holds ``"12"``, a naive datetime, an object JSON can't hold). ``field`` is
    the path of the value (``lines[2].price``), ``expected`` what the
    annotation takes, ``received`` the type of the value; ``event_type`` is
    set when an event was being encoded. A ``TypeError`` too: the value has
    the wrong type.
    """

    def __init__(
        self,
        expected: str,
        received: str,
        field: str | None = None,
        *,
        event_type: str | None = None,
    ) -> None:
        super().__init__(f"expected {expected}, got {received}", field or None)
        self.expected = expected
        self.received = received
        self.event_type = event_type
        if event_type is not None:
            self.args = (f"cannot store event {event_type}: {self.args[0]}",)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_encode_error,
            (self.expected, self.received, self.field, self.event_type),
        )


def _rebuild_encode_error(
    expected: str, received: str, field: str | None, event_type: str | None
) -> EncodeError:
    return EncodeError(expected, received, field, event_type=event_type)


class SagaError(OrchestrixError):
    """A saga could not be run (misuse, not a failing step: steps compensate)."""
