"""What a running saga step knows about its saga: :func:`current_saga`."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from orchestrix.core.execution.saga import SagaState
from orchestrix.core.messaging.message import Message

__all__ = ["RunContext", "SagaContext", "current_saga", "running"]

_M = TypeVar("_M", bound=Message)


@dataclass(frozen=True)
class SagaContext:
    """The saga a step is running for (see :func:`current_saga`)."""

    saga_id: str
    saga_type: str
    step: str | None
    correlation_id: str | None
    causation_id: str | None
    trace_id: str | None
    deadline: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """``"<saga id>:<step>"``: the key the core passes to a step as ``idempotency_key``."""
        return f"{self.saga_id}:{self.step}"

    def message_ids(self) -> dict[str, str | None]:
        """The correlation, causation and trace ids messages caused by this saga carry."""
        return {
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "trace_id": self.trace_id,
        }

    def caused(self, message_class: type[_M], /, **fields: Any) -> _M:
        """A ``message_class`` message (an event or a command) caused by this saga.

        It carries the saga's correlation, causation and trace ids (those of
        the message that started it); explicit keyword arguments win.
        """
        ids = {name: value for name, value in self.message_ids().items() if value is not None}
        return message_class(**{**ids, **fields})


class RunContext:
    """The :class:`SagaContext` of one running saga, updated at every save of its state.

    Shared by reference with the threads and tasks its steps run in (context
    variables are copied, this object is not).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._context: SagaContext | None = None

    def update(self, state: SagaState, deadline: datetime | None) -> None:
        """Point the context at ``state``'s current step, due at ``deadline``."""
        with self._lock:
            self._context = SagaContext(
                saga_id=state.saga_id,
                saga_type=state.saga_type,
                step=state.current_step,
                correlation_id=state.correlation_id,
                causation_id=state.causation_id,
                trace_id=state.trace_id,
                deadline=deadline,
            )

    def get(self) -> SagaContext | None:
        """The current context (None before the first update)."""
        with self._lock:
            return self._context


_current: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "orchestrix_saga", default=None
)


@contextmanager
def running(context: RunContext) -> Iterator[RunContext]:
    """Make ``context`` what :func:`current_saga` reads, in this context, until the block ends."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current_saga() -> SagaContext:
    """The saga whose step (or compensation) is running; ``LookupError`` outside one."""
    holder = _current.get()
    context = holder.get() if holder is not None else None
    if context is None:
        raise LookupError("current_saga() is only available while a DjangoSaga step runs")
    return context
