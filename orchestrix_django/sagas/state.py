"""The saga table as sagas and process managers run on it: saves also write the next deadline."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.db import transaction

from orchestrix.core.execution.saga import SagaState, SagaStatus
from orchestrix.core.execution.saga_state import StepStatus
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.sagas.context import RunContext
from orchestrix_django.sagas.deadlines import SagaDeadlines
from orchestrix_django.sagas.errors import DeadlinePassed, SagaInterrupted
from orchestrix_django.storage.saga_state import DjangoSagaStateStore

__all__ = ["DeadlineStore", "SagaRunStore"]


class DeadlineStore(DjangoSagaStateStore):
    """A saga state store that keeps the ``deadline`` column (what the sweep looks for) current."""

    def deadline_of(self, state: SagaState) -> datetime | None:
        """The earliest deadline ``state`` must meet next (None: none pending)."""
        raise NotImplementedError

    def save(self, state: SagaState) -> SagaState:
        """Save ``state`` and its next deadline, in one transaction."""
        deadline = self.deadline_of(state)
        with transaction.atomic(using=self.using):
            saved = super().save(state)
            SagaStateRecord.objects.using(self.using).filter(
                saga_id=state.saga_id, version=saved.version
            ).update(deadline=deadline)
        return saved


class SagaRunStore(DeadlineStore):
    """The store one run of a :class:`~orchestrix_django.sagas.definition.DjangoSaga` saves to.

    Around each save it checks the saga's deadlines (and ``should_stop``) and
    keeps its :class:`RunContext` current: a step that starts or completes too
    late raises :class:`DeadlinePassed`, a stop request before a step starts
    :class:`SagaInterrupted`. The core then stops, its state resumable.
    """

    def __init__(
        self,
        using: str | None,
        deadlines: SagaDeadlines,
        context: RunContext,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(using)
        self.deadlines = deadlines
        self.context = context
        self.should_stop = should_stop

    def deadline_of(self, state: SagaState) -> datetime | None:
        """The saga's next deadline (see :meth:`SagaDeadlines.next_deadline`)."""
        return self.deadlines.next_deadline(state)

    def save(self, state: SagaState) -> SagaState:
        """Check, save ``state`` with its deadline, update the context, check again."""
        if state.status is SagaStatus.IN_PROGRESS:
            starting = state.current_step is not None and (
                state.step(state.current_step).status is StepStatus.RUNNING
            )
            if starting and self.should_stop is not None and self.should_stop():
                raise SagaInterrupted(f"saga {state.saga_id!r}: stop requested")
            missed = self.deadlines.missed(state)
            if missed is not None:
                raise DeadlinePassed(missed)
        saved = super().save(state)
        self.context.update(state, self.deadline_of(state))
        late = self.deadlines.completed_late(state)
        if late is not None:
            raise DeadlinePassed(late)
        return saved
