"""Logging helpers: plain stdlib loggers plus a small structured wrapper.

Orchestrix is a library, so it never configures logging: it adds a
``NullHandler`` to the ``"orchestrix"`` logger (so an application that has not
set up logging sees no stray output from Python's last-resort handler) and
leaves the root logger alone. Applications attach their own handlers.

:class:`StructuredLogger` writes ``message key=value key=value`` lines that
stay readable in a plain text log, and also hands the context, as a dict, to
handlers in ``record.context`` so a JSON formatter can emit it as fields::

    log = StructuredLogger(get_logger(__name__)).bind(saga_id=saga_id)
    log.info("step completed", step="charge_payment", attempt=2)
    # -> "step completed saga_id=3f2a… step=charge_payment attempt=2"
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["ROOT_LOGGER_NAME", "StructuredLogger", "format_context", "get_logger"]

#: The logger every Orchestrix logger descends from.
ROOT_LOGGER_NAME = "orchestrix"

# Frames between the caller of a StructuredLogger method and Logger.log:
# the public method (info, error, …) and _log. Passed to `stacklevel` so that
# records carry the caller's file, line and function, not this module's.
_STACKLEVEL = 3


def _ensure_null_handler() -> None:
    """Give the ``orchestrix`` logger a NullHandler, once."""
    library_logger = logging.getLogger(ROOT_LOGGER_NAME)
    if not any(isinstance(h, logging.NullHandler) for h in library_logger.handlers):
        library_logger.addHandler(logging.NullHandler())


_ensure_null_handler()


def get_logger(name: str) -> logging.Logger:
    """Return ``logging.getLogger(name)``.

    Pass ``__name__``: modules of Orchestrix then log under ``orchestrix.…``,
    which has a ``NullHandler`` so that nothing is printed until the
    application configures logging.
    """
    _ensure_null_handler()
    return logging.getLogger(name)


def _render_value(value: object) -> str:
    """Render one context value for a ``key=value`` pair.

    Text that a reader (or a log parser) could mis-split — empty, containing
    whitespace, quotes or ``=`` — is shown with ``repr``, which also escapes
    newlines so one record stays on one line.
    """
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a broken __str__ must not break logging
        return f"<unprintable {type(value).__name__}>"
    if not text or any(ch.isspace() or ch in "\"'=" for ch in text):
        return repr(text)
    return text


def format_context(context: Mapping[str, object]) -> str:
    """Render ``context`` as `` key=value`` pairs (each with a leading space)."""
    return "".join(f" {key}={_render_value(value)}" for key, value in context.items())


class StructuredLogger:
    """Logs a message followed by ``key=value`` context pairs.

    Each record also carries the context dict as ``record.context`` (passed
    through ``extra``), so structured formatters can read it. Context keys may
    be any name, including ones that are ``LogRecord`` attributes such as
    ``message`` or ``args``: they live inside ``record.context`` and never
    clash with the record.

    Args:
        logger: the logger to write to (a name is accepted too).
        context: context added to every record; :meth:`bind` is the usual
            way to set it.
    """

    def __init__(
        self, logger: logging.Logger | str, context: Mapping[str, object] | None = None
    ) -> None:
        self._logger = get_logger(logger) if isinstance(logger, str) else logger
        self._context: dict[str, object] = dict(context or {})

    @property
    def logger(self) -> logging.Logger:
        """The wrapped standard logger."""
        return self._logger

    @property
    def context(self) -> dict[str, object]:
        """A copy of the context bound to this logger."""
        return dict(self._context)

    def bind(self, **context: object) -> StructuredLogger:
        """A logger that adds ``context`` (and this one's) to every record.

        Values given at a call win over bound ones with the same key; this
        logger itself is not changed.
        """
        return StructuredLogger(self._logger, {**self._context, **context})

    def _log(
        self, level: int, message: str, context: Mapping[str, object], exc_info: bool = False
    ) -> None:
        # Check first so that a disabled level costs no formatting at all.
        if not self._logger.isEnabledFor(level):
            return
        merged = {**self._context, **context}
        # The full text is the record's msg with no args, so a "%" in the
        # message or a value is never taken for a format directive.
        self._logger.log(
            level,
            message + format_context(merged),
            exc_info=True if exc_info else None,  # None, like a plain logger.info()
            extra={"context": merged},
            stacklevel=_STACKLEVEL,
        )

    # `message` is positional-only so that `message=...` can be a context key.

    def debug(self, message: str, /, **context: Any) -> None:
        """Log ``message`` with ``context`` at DEBUG level."""
        self._log(logging.DEBUG, message, context)

    def info(self, message: str, /, **context: Any) -> None:
        """Log ``message`` with ``context`` at INFO level."""
        self._log(logging.INFO, message, context)

    def warning(self, message: str, /, **context: Any) -> None:
        """Log ``message`` with ``context`` at WARNING level."""
        self._log(logging.WARNING, message, context)

    def error(self, message: str, /, **context: Any) -> None:
        """Log ``message`` with ``context`` at ERROR level."""
        self._log(logging.ERROR, message, context)

    def exception(self, message: str, /, **context: Any) -> None:
        """Log ``message`` with ``context`` at ERROR level, with the current traceback.

        Call it from an ``except`` block.
        """
        self._log(logging.ERROR, message, context, exc_info=True)

    def __repr__(self) -> str:
        return f"StructuredLogger({self._logger.name!r}, context={self._context!r})"
