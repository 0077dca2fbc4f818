"""Where Orchestrix keeps its data: events, snapshots, checkpoints, saga state, dead letters.

The user-facing names below are imported on first access: ``models`` imports
:mod:`orchestrix_django.storage.append_only`, so this package must not import
the stores (which need the models) while it loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrix_django.storage.append_only import EventMutationError, allow_event_mutation
    from orchestrix_django.storage.async_events import DjangoAsyncEventStore
    from orchestrix_django.storage.dead_letters import (
        DjangoAsyncDeadLetterQueue,
        DjangoDeadLetterQueue,
    )
    from orchestrix_django.storage.events import DjangoEventStore
    from orchestrix_django.storage.projection_state import (
        DjangoAsyncProjectionStateStore,
        DjangoProjectionStateStore,
    )
    from orchestrix_django.storage.saga_state import DjangoAsyncSagaStateStore, DjangoSagaStateStore
    from orchestrix_django.storage.subject_keys import SubjectErasedError, forget_subject

#: Each public name, and the module of this package that defines it.
_MODULES = {
    "DjangoAsyncDeadLetterQueue": "dead_letters",
    "DjangoAsyncEventStore": "async_events",
    "DjangoAsyncProjectionStateStore": "projection_state",
    "DjangoAsyncSagaStateStore": "saga_state",
    "DjangoDeadLetterQueue": "dead_letters",
    "DjangoEventStore": "events",
    "DjangoProjectionStateStore": "projection_state",
    "DjangoSagaStateStore": "saga_state",
    "EventMutationError": "append_only",
    "SubjectErasedError": "subject_keys",
    "allow_event_mutation": "append_only",
    "forget_subject": "subject_keys",
}

__all__ = [
    "DjangoAsyncDeadLetterQueue",
    "DjangoAsyncEventStore",
    "DjangoAsyncProjectionStateStore",
    "DjangoAsyncSagaStateStore",
    "DjangoDeadLetterQueue",
    "DjangoEventStore",
    "DjangoProjectionStateStore",
    "DjangoSagaStateStore",
    "EventMutationError",
    "SubjectErasedError",
    "allow_event_mutation",
    "forget_subject",
]


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
