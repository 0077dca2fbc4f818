"""In-memory message buses: deliver a message to every handler of its type.

A handler subscribed to a class receives messages of that class and of its
subclasses, in subscription order. No failure is swallowed: every handler
runs, each failure is logged and counted, and then the first one is raised as
:class:`HandlerError` carrying all of them in ``errors``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.observability import ObservabilityHooks, get_observability
from orchestrix.core.messaging.message import Message

__all__ = ["InMemoryAsyncMessageBus", "InMemoryMessageBus", "handler_name"]

T = TypeVar("T", bound=Message)

logger = logging.getLogger("orchestrix.bus")


def handler_name(handler: Callable[..., Any]) -> str:
    """A readable name for a handler: ``module.qualname`` or its class for callables."""
    target = getattr(handler, "__func__", handler)
    name = getattr(target, "__qualname__", None) or type(handler).__qualname__
    module = getattr(target, "__module__", None) or type(handler).__module__
    return f"{module}.{name}"


class _Subscriptions:
    """Handlers by message class, with a per-class cache of who receives what."""

    def __init__(self) -> None:
        # One list in subscription order: a handler subscribed earlier runs earlier,
        # whichever class it was subscribed to.
        self._entries: list[tuple[type[Message], Callable[..., Any]]] = []
        self._resolved: dict[type[Message], list[Callable[..., Any]]] = {}
        self._lock = threading.Lock()

    def add(self, message_type: type[Message], handler: Callable[..., Any]) -> None:
        if not (isinstance(message_type, type) and issubclass(message_type, Message)):
            raise TypeError(f"subscribe() needs a Message subclass, got {message_type!r}")
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        with self._lock:
            self._entries.append((message_type, handler))
            self._resolved = {}

    def remove(self, message_type: type[Message], handler: Callable[..., Any]) -> None:
        with self._lock:
            for index, (klass, subscribed) in enumerate(self._entries):
                if klass is message_type and subscribed == handler:
                    del self._entries[index]
                    self._resolved = {}
                    return
        raise ValueError(f"{handler_name(handler)} is not subscribed to {message_type.__name__}")

    def for_class(self, message_class: type[Message]) -> list[Callable[..., Any]]:
        resolved = self._resolved.get(message_class)
        if resolved is None:
            with self._lock:
                resolved = [h for k, h in self._entries if issubclass(message_class, k)]
                self._resolved[message_class] = resolved
        return resolved


def _raise_failures(message: Message, failures: list[HandlerError]) -> None:
    if failures:
        first = failures[0]
        first.errors = list(failures)
        raise first


class InMemoryMessageBus:
    """A synchronous in-process :class:`MessageBus`."""

    def __init__(self, observability: ObservabilityHooks | None = None) -> None:
        self._subscriptions = _Subscriptions()
        self._observability = observability

    def subscribe(self, message_type: type[T], handler: Callable[[T], None]) -> None:
        """Call ``handler`` for every published ``message_type`` (and subclass) message."""
        self._subscriptions.add(message_type, handler)

    def unsubscribe(self, message_type: type[T], handler: Callable[[T], None]) -> None:
        """Undo :meth:`subscribe`."""
        self._subscriptions.remove(message_type, handler)

    def handlers_for(self, message_type: type[Message]) -> list[Callable[..., Any]]:
        """The handlers a message of ``message_type`` is delivered to, in order."""
        return list(self._subscriptions.for_class(message_type))

    def publish(self, message: Message) -> None:
        """Run every handler of ``message``; then raise the failures, if any."""
        failures: list[HandlerError] = []
        for handler in self._subscriptions.for_class(type(message)):
            try:
                result = handler(message)
                if inspect.isawaitable(result):
                    _close(result)
                    raise TypeError(
                        "async handler subscribed to a synchronous bus; use InMemoryAsyncMessageBus"
                    )
            except Exception as error:
                failures.append(self._failed(message, handler, error))
        _raise_failures(message, failures)

    def _failed(
        self, message: Message, handler: Callable[..., Any], error: Exception
    ) -> HandlerError:
        name = handler_name(handler)
        logger.error("handler %s failed on %s %s", name, message.type, message.id, exc_info=error)
        (self._observability or get_observability()).record_handler_error(
            message.type, name, f"{type(error).__name__}: {error}"
        )
        return HandlerError(message.type, name, error)


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


class InMemoryAsyncMessageBus:
    """An asynchronous in-process :class:`AsyncMessageBus`.

    The handlers of one message run concurrently (``asyncio.gather``); plain
    functions are accepted too and run in the event loop's thread.
    """

    def __init__(self, observability: ObservabilityHooks | None = None) -> None:
        self._subscriptions = _Subscriptions()
        self._sync = InMemoryMessageBus(observability)

    def subscribe(self, message_type: type[T], handler: Callable[[T], Any]) -> None:
        """Call ``handler`` (a coroutine function) for every ``message_type`` message."""
        self._subscriptions.add(message_type, handler)

    def unsubscribe(self, message_type: type[T], handler: Callable[[T], Any]) -> None:
        """Undo :meth:`subscribe`."""
        self._subscriptions.remove(message_type, handler)

    def handlers_for(self, message_type: type[Message]) -> list[Callable[..., Any]]:
        """The handlers a message of ``message_type`` is delivered to, in order."""
        return list(self._subscriptions.for_class(message_type))

    async def publish(self, message: Message) -> None:
        """Run every handler of ``message`` concurrently; then raise the failures."""
        handlers = self._subscriptions.for_class(type(message))
        if not handlers:
            return
        outcomes = await asyncio.gather(
            *(self._run(handler, message) for handler in handlers), return_exceptions=True
        )
        failures: list[HandlerError] = []
        for handler, outcome in zip(handlers, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failures.append(self._sync._failed(message, handler, outcome))
            elif isinstance(outcome, BaseException):
                # Cancellation and interpreter exits are not handler failures.
                raise outcome
        _raise_failures(message, failures)

    @staticmethod
    async def _run(handler: Callable[..., Any], message: Message) -> None:
        result = handler(message)
        if inspect.isawaitable(result):
            await result
