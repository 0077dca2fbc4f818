"""JSON data as the codec reads and writes it, and what goes wrong on the way.

:class:`DecodeFailure` (stored data that does not match its annotation) and
:class:`Mismatch` (a value its annotation would not give back) carry the path
of the value, ``lines[2].price``, so errors say where.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrix.core.common.exceptions import EncodeError

__all__ = [
    "DecodeFailure",
    "Decoder",
    "Encoder",
    "JsonValue",
    "Mismatch",
    "fail",
    "join_path",
    "shown",
]

JsonValue = Any  # JSON-compatible: None, bool, int, float, str, list, dict[str, ...]


Encoder = Callable[[Any], JsonValue]
Decoder = Callable[[JsonValue], Any]


class DecodeFailure(ValueError):
    """A value did not match its annotation; ``path`` says where."""

    def __init__(self, detail: str, path: str = "") -> None:
        self.detail = detail
        self.path = path
        super().__init__(f"{path}: {detail}" if path else detail)

    def at(self, segment: str) -> DecodeFailure:
        """The same failure, one level further out."""
        return DecodeFailure(self.detail, join_path(segment, self.path))


def join_path(segment: str, path: str) -> str:
    """``segment`` followed by ``path``: ``lines`` + ``[2].price`` = ``lines[2].price``."""
    if not path:
        return segment
    return f"{segment}{path}" if path.startswith("[") else f"{segment}.{path}"


class Mismatch(Exception):
    """While encoding: a value the decoder would not give back as it is (see EncodeError).

    Raised where the value is found and given its path on the way out
    (:meth:`at`); the public entry points turn it into :class:`EncodeError`.
    """

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.path = ""

    def at(self, segment: str) -> Mismatch:
        """The same mismatch, one level further out."""
        self.path = join_path(segment, self.path)
        return self

    def error(self, event_type: str | None = None) -> EncodeError:
        """The public error for this mismatch."""
        return EncodeError(self.expected, _received(self.value), self.path, event_type=event_type)


def _received(value: Any) -> str:
    """The type of ``value`` and the value, for an error message."""
    if isinstance(value, datetime) and value.utcoffset() is None:
        return f"a naive datetime ({value.isoformat()})"
    return f"{type(value).__qualname__} {shown(value)}"


def shown(data: JsonValue) -> str:
    """``repr(data)``, cut to 80 characters (stored data can be huge)."""
    try:
        text = repr(data)
    except (ValueError, RecursionError):  # an int too long for text, or deep nesting
        return f"a {type(data).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def fail(expected: str, data: JsonValue) -> DecodeFailure:
    return DecodeFailure(f"expected {expected}, got {shown(data)}")
