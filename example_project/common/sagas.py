"""What the example's sagas share."""

from __future__ import annotations

from orchestrix_django.storage import DjangoSagaStateStore

__all__ = ["failure_reason"]


def failure_reason(saga_id: str) -> str:
    """Why a saga is compensating: the error of the step that failed, as the saga stored it.

    Compensations receive the saga's arguments and their step's result, not
    the error that made the saga unwind; the saga's stored state has it.
    """
    state = DjangoSagaStateStore().load(saga_id)
    return (state.error if state is not None and state.error else None) or "compensated"
