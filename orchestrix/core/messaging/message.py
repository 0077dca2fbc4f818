"""Messages: immutable commands and events with CloudEvents metadata.

Every message is a frozen, keyword-only dataclass. ``id`` and ``timestamp``
are generated, ``type`` defaults to the class name, and the correlation,
causation and trace ids let a handler derive an event from the command that
caused it (see :meth:`Message.caused_by`).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

__all__ = [
    "CLOUDEVENT_FIELDS",
    "Command",
    "Event",
    "Message",
    "causal_fields",
    "message_type_of",
]

#: The fields every message carries besides its own domain fields.
CLOUDEVENT_FIELDS: tuple[str, ...] = (
    "id",
    "specversion",
    "type",
    "source",
    "timestamp",
    "subject",
    "data",
    "datacontenttype",
    "dataschema",
    "correlation_id",
    "causation_id",
    "trace_id",
)

_F = TypeVar("_F", bound=Callable[..., None])


def _new_id() -> str:
    return str(uuid.uuid4())


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _normalise(message: Message) -> None:
    """Fill ``type`` and put ``timestamp`` in UTC, before any user ``__post_init__``."""
    if not message.type:
        object.__setattr__(message, "type", type(message).__name__)
    stamp = message.timestamp
    if not isinstance(stamp, datetime):
        raise TypeError(f"{type(message).__name__}.timestamp must be a datetime, got {stamp!r}")
    if stamp.tzinfo is None or stamp.utcoffset() is None:
        raise ValueError(
            f"{type(message).__name__}.timestamp must be timezone-aware (got naive {stamp}); "
            "use datetime.now(UTC)"
        )
    if stamp.utcoffset():
        object.__setattr__(message, "timestamp", stamp.astimezone(UTC))


def _with_normalisation(post_init: _F) -> _F:
    if getattr(post_init, "_orchestrix_normalises", False):
        return post_init

    @functools.wraps(post_init)
    def __post_init__(self: Message, *args: Any) -> None:
        _normalise(self)
        post_init(self, *args)

    __post_init__._orchestrix_normalises = True  # type: ignore[attr-defined]
    return __post_init__  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of all messages: an immutable record with CloudEvents metadata."""

    id: str = field(default_factory=_new_id)
    specversion: str = "1.0"
    type: str = ""
    source: str = "orchestrix"
    timestamp: datetime = field(default_factory=_utc_now)
    subject: str | None = None
    data: Any = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    trace_id: str | None = None

    def __post_init__(self) -> None:
        _normalise(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass may define its own __post_init__ (for validation) without
        # calling super(); wrapping it keeps `type` and `timestamp` right anyway.
        own = cls.__dict__.get("__post_init__")
        if own is not None:
            cls.__post_init__ = _with_normalisation(own)  # type: ignore[method-assign]

    @classmethod
    def caused_by(cls, cause: Message, **fields: Any) -> Self:
        """Create a message of this class caused by ``cause``.

        The new message joins the cause's conversation: its ``correlation_id``
        is the cause's correlation id (or the cause's id when it starts one),
        its ``causation_id`` is the cause's id, and it keeps the trace id.
        Explicit keyword arguments win over the derived values.
        """
        return cls(**{**causal_fields(cause), **fields})

    def correlated_with(self, cause: Message) -> Self:
        """Return a copy of this message marked as caused by ``cause``."""
        fields: dict[str, Any] = dict(causal_fields(cause))
        return dataclasses.replace(self, **fields)


def causal_fields(cause: Message) -> dict[str, str | None]:
    """The correlation, causation and trace ids of a message caused by ``cause``."""
    return {
        "correlation_id": cause.correlation_id or cause.id,
        "causation_id": cause.id,
        "trace_id": cause.trace_id,
    }


@dataclass(frozen=True, kw_only=True)
class Command(Message):
    """An intent to change state, handled by exactly one command handler."""


@dataclass(frozen=True, kw_only=True)
class Event(Message):
    """A fact that has occurred: an immutable record of a state change.

    ``schema_version`` (a class attribute, 1 by default) is the version of the
    class's shape; older shapes keep their own classes with the same ``type``
    and are brought up to date by upcasters.
    """

    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Imported here: the registry module imports this one.
        from orchestrix.core.serialization.registry import default_registry

        default_registry.add(cls)


def message_type_of(message_class: type[Message]) -> str:
    """The ``type`` instances of ``message_class`` get when none is given."""
    # Walk the MRO: during __init_subclass__ @dataclass has not run on the class
    # yet, so its own `type = "..."` is still a plain class attribute.
    for klass in message_class.__mro__:
        own_fields = klass.__dict__.get("__dataclass_fields__")
        if own_fields is not None and "type" in own_fields:
            default = own_fields["type"].default
            declared = default if isinstance(default, str) else ""
            return declared or message_class.__name__
        value = klass.__dict__.get("type")
        if isinstance(value, str):
            return value or message_class.__name__
    return message_class.__name__
