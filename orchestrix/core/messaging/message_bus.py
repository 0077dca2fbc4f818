"""Message bus protocols: publish a message to every handler subscribed to its type."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar, runtime_checkable

from orchestrix.core.messaging.message import Message

__all__ = ["AsyncMessageBus", "MessageBus"]

T = TypeVar("T", bound=Message)


@runtime_checkable
class MessageBus(Protocol):
    """Synchronous message bus for command and event routing.

    A handler subscribed to a class also receives its subclasses' messages
    (subscribe to ``Event`` to see every event). Every handler runs; failures
    are raised as ``HandlerError`` after all handlers ran.
    """

    def publish(self, message: Message) -> None:
        """Deliver ``message`` to its handlers."""
        ...

    def subscribe(self, message_type: type[T], handler: Callable[[T], None]) -> None:
        """Call ``handler`` for each published message of ``message_type``."""
        ...


@runtime_checkable
class AsyncMessageBus(Protocol):
    """Asynchronous variant: handlers execute concurrently via ``asyncio.gather``."""

    async def publish(self, message: Message) -> None:
        """Deliver ``message`` to its handlers, concurrently."""
        ...

    def subscribe(
        self, message_type: type[T], handler: Callable[[T], Coroutine[Any, Any, None]]
    ) -> None:
        """Call ``handler`` for each published message of ``message_type``."""
        ...
