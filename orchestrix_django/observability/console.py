"""The ``orchestrix`` logger on the console, as Django puts its own ``django`` logger there.

The core gives the ``orchestrix`` logger a ``NullHandler`` (a library never
prints on its own), which also keeps Python's last-resort handler from
printing its warnings. In a Django project that has not configured that
logger, a warning such as "could not send the wake-up" (the broker is down)
would then go nowhere. :func:`install_console_handler`, called by
``AppConfig.ready()``, gives it a :class:`ConsoleFallbackHandler` instead,
unless the project's ``LOGGING`` configures the ``orchestrix`` logger (or one
of its children), or ``LOGGING_CONFIG`` is None (the project configures
logging itself): either way the project's own set-up is left alone.

The handler writes warnings and errors to standard error, whatever
``DEBUG`` says (they mean work is not being done), and only when no other
handler on the record's way up the logger tree (a root handler, Celery's
worker log, pytest's capture) would emit it: a message is never printed twice.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from django.conf import settings

from orchestrix.core.common.logging import ROOT_LOGGER_NAME

__all__ = ["ConsoleFallbackHandler", "install_console_handler"]


class ConsoleFallbackHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Warnings and errors to standard error, unless another handler emits them."""

    def __init__(self) -> None:
        super().__init__()
        self.setLevel(logging.WARNING)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    @property
    def stream(self) -> TextIO:
        """The current standard error (redirected streams included)."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is always the current standard error."""

    def handle(self, record: logging.LogRecord) -> bool:
        """Emit ``record`` unless another handler on its way emits it too."""
        if self._shown_elsewhere(record):
            return False
        return bool(super().handle(record))

    def _shown_elsewhere(self, record: logging.LogRecord) -> bool:
        """Whether a handler other than this one (or a NullHandler) takes ``record``."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            for handler in logger.handlers:
                if handler is self or isinstance(handler, logging.NullHandler):
                    continue
                if record.levelno >= handler.level:
                    return True
            logger = logger.parent if logger.propagate else None
        return False


def install_console_handler() -> None:
    """Give the ``orchestrix`` logger a :class:`ConsoleFallbackHandler` (see the module).

    Once per process, and not when the project configures the logger itself.
    """
    if getattr(settings, "LOGGING_CONFIG", None) is None:
        return
    configured = getattr(settings, "LOGGING", None) or {}
    loggers = configured.get("loggers", {}) if isinstance(configured, dict) else {}
    if any(
        name == ROOT_LOGGER_NAME or str(name).startswith(f"{ROOT_LOGGER_NAME}.") for name in loggers
    ):
        return
    logger = logging.getLogger(ROOT_LOGGER_NAME)
    if not any(isinstance(handler, ConsoleFallbackHandler) for handler in logger.handlers):
        logger.addHandler(ConsoleFallbackHandler())
