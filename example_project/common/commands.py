"""Commands in, handlers out: building commands from untrusted input and executing them.

The API views and the demo's workload send commands the same way:

1. :func:`build_command` turns a payload (parsed JSON) into a command
   object. Values are converted by the command's field types (``"12.50"``
   becomes ``Decimal("12.50")``), and the command's ``__post_init__`` runs
   Orchestrix's validators. Every problem comes back at once, as one
   :class:`~orchestrix.core.common.validation.ValidationError` whose
   ``errors`` maps field names to messages; nothing has been stored then.
2. :func:`execute` hands the command to the one handler the modules of
   ``ORCHESTRIX["MODULES"]`` subscribed to its class on the Django message
   bus. The handler is called directly rather than through ``publish``:
   a command is refused by raising :class:`CommandRejected` (or
   :class:`~orchestrix.core.common.exceptions.AggregateNotFoundError`),
   and the caller wants that error itself, not wrapped, logged and counted as
   a failing handler (those are for events, whose handlers must not fail).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from orchestrix.core.common.validation import ValidationError
from orchestrix.core.messaging.message import CLOUDEVENT_FIELDS, Command
from orchestrix_django.bus import get_bus
from orchestrix_django.sagas import CommandDispatchError

__all__ = ["CommandRejected", "build_command", "execute"]

C = TypeVar("C", bound=Command)

#: The wording Django REST framework uses for a missing field.
REQUIRED = "This field is required."


class CommandRejected(Exception):
    """A well-formed command that the domain refuses (insufficient funds, a closed account, …).

    The API answers 409 Conflict with the message; ``field`` names the
    input at fault when there is one.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def build_command(command_class: type[C], payload: Mapping[str, Any]) -> C:
    """The ``command_class`` command the ``payload`` describes, or ValidationError.

    Fields absent from the payload take their defaults (generated ids, for
    instance); keys that are not fields of the command are errors, so that a
    misspelt field is reported rather than ignored.
    """
    errors: dict[str, list[str]] = {}
    values = _convert_fields(command_class, payload, "", errors)
    if errors:
        raise ValidationError.from_errors(errors)
    return command_class(**values)  # __post_init__ validates the values themselves


def execute(command: Command) -> None:
    """Run the one handler subscribed to the command's class (see the module docs)."""
    handlers = get_bus().handlers_for(type(command))
    if len(handlers) != 1:
        raise CommandDispatchError(
            f"{len(handlers)} handlers are subscribed to {type(command).__name__}; "
            "a command needs exactly one (register its module in ORCHESTRIX['MODULES'])"
        )
    handlers[0](command)


# ---------------------------------------------------------------- conversion


def _own_fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    """The dataclass fields a client may send: not the CloudEvents metadata of messages."""
    skipped = set(CLOUDEVENT_FIELDS) if issubclass(cls, Command) else set()
    return [f for f in dataclasses.fields(cls) if f.name not in skipped and f.init]


def _convert_fields(
    cls: type[Any], payload: Any, prefix: str, errors: dict[str, list[str]]
) -> dict[str, Any]:
    if not isinstance(payload, Mapping):
        errors.setdefault(prefix or "non_field_errors", []).append(
            f"must be an object, got {type(payload).__name__}"
        )
        return {}
    hints = typing.get_type_hints(cls)
    fields = _own_fields(cls)
    known = {f.name for f in fields}
    for name in payload:
        if name not in known:
            errors.setdefault(f"{prefix}{_shown(str(name))}", []).append("unknown field")
    values: dict[str, Any] = {}
    for field in fields:
        path = f"{prefix}{field.name}"
        if field.name not in payload:
            has_default = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            if not has_default:
                errors.setdefault(path, []).append(REQUIRED)
            continue
        try:
            values[field.name] = _convert(payload[field.name], hints[field.name], path, errors)
        except _Invalid as invalid:
            errors.setdefault(path, []).append(str(invalid))
    return values


class _Invalid(Exception):
    """A value that does not fit its field's type (the message says why)."""


def _convert(value: Any, hint: Any, path: str, errors: dict[str, list[str]]) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(option for option in options if option is not type(None))
        origin = typing.get_origin(hint)
    if value is None:
        raise _Invalid("may not be null")
    if hint is str:
        if not isinstance(value, str):
            raise _Invalid(f"must be a string, got {type(value).__name__}")
        _check_text(value)
        return value
    if hint is Decimal:
        # Strings and integers only: a JSON float (0.1) is not an exact amount.
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Invalid('must be a decimal number written as a string, e.g. "12.50"')
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise _Invalid(f"must be a decimal number, got {value!r}") from None
        if not number.is_finite():
            raise _Invalid(f"must be a finite number, got {value!r}")
        return number
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _Invalid(f"must be an integer, got {type(value).__name__}")
        try:
            return int(value)
        except ValueError:
            raise _Invalid(f"must be an integer, got {value!r}") from None
    if origin in (tuple, list):
        (item_hint, *_) = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise _Invalid(f"must be a list, got {type(value).__name__}")
        items = [
            _convert_item(item, item_hint, f"{path}[{index}]", errors)
            for index, item in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        values = _convert_fields(hint, value, f"{path}.", errors)
        return hint(**values) if not errors else None
    raise TypeError(f"{path}: no conversion for fields of type {hint!r}")  # a bug, not input


def _check_text(value: str) -> None:
    """Refuse text no database stores as sent: NUL characters, lone surrogates."""
    if "\x00" in value:
        raise _Invalid(f"must not contain NUL characters (one at index {value.index(chr(0))})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _Invalid(
            f"must be valid Unicode text: a lone surrogate at index {error.start}"
        ) from None


def _shown(name: str) -> str:
    """A field name as an error can name it: lone surrogates written as escapes."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _convert_item(item: Any, hint: Any, path: str, errors: dict[str, list[str]]) -> Any:
    try:
        return _convert(item, hint, path, errors)
    except _Invalid as invalid:
        errors.setdefault(path, []).append(str(invalid))
        return None
