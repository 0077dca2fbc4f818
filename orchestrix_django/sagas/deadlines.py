"""A saga's time limits: per step (from its first attempt) and overall (from its start)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrix.core.execution.saga import SagaState, SagaStatus, SagaStep
from orchestrix.core.execution.saga_state import StepRecord, StepStatus
from orchestrix_django.sagas.context import RunContext
from orchestrix_django.sagas.errors import StepCancelled

__all__ = ["SagaDeadlines", "now"]

#: The statuses whose deadlines still matter.
_OPEN = (SagaStatus.PENDING, SagaStatus.IN_PROGRESS)


def now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)


class SagaDeadlines:
    """The deadlines of one saga type: what is due next, what was missed, what completed late."""

    def __init__(
        self,
        saga_type: str,
        step_names: Collection[str],
        steps: Mapping[str, timedelta] | None,
        timeout: timedelta | None,
    ) -> None:
        limits = dict(steps or {})
        unknown = sorted(set(limits) - set(step_names))
        if unknown:
            raise ValueError(f"saga {saga_type!r}: deadlines name unknown steps {unknown}")
        for name, limit in [*limits.items(), ("timeout", timeout)]:
            if limit is not None and (not isinstance(limit, timedelta) or limit <= timedelta(0)):
                raise ValueError(
                    f"saga {saga_type!r}: {name} must be a positive timedelta, got {limit!r}"
                )
        self.steps: dict[str, timedelta] = limits
        self.timeout = timeout

    def next_deadline(self, state: SagaState) -> datetime | None:
        """The earliest deadline ``state`` must meet next (None: none pending)."""
        if state.status not in _OPEN:
            return None
        candidates: list[datetime] = []
        if self.timeout is not None:
            candidates.append(state.created_at + self.timeout)
        record = self._running_step(state)
        if record is not None and record.started_at is not None:
            candidates.append(record.started_at + self.steps[record.name])
        return min(candidates, default=None)

    def missed(self, state: SagaState, at: datetime | None = None) -> str | None:
        """Why ``state`` is overdue at ``at`` (default: now); None when it is not."""
        at = at or now()
        if state.status not in _OPEN:
            return None
        if self.timeout is not None and state.created_at + self.timeout <= at:
            return f"saga did not finish within {self.timeout}"
        record = self._running_step(state)
        if record is not None and record.started_at is not None:
            limit = self.steps[record.name]
            if record.started_at + limit <= at:
                return f"step {record.name!r} did not complete within {limit}"
        return None

    def completed_late(self, state: SagaState) -> str | None:
        """Why ``state``'s current step, just completed, was too late (None when it was not)."""
        name = state.current_step
        if state.status is not SagaStatus.IN_PROGRESS or name not in self.steps:
            return None
        record = state.step(name)
        if (
            record.status is StepStatus.COMPLETED
            and record.started_at is not None
            and record.finished_at is not None
            and record.finished_at - record.started_at > self.steps[name]
        ):
            return f"step {name!r} completed after its deadline ({self.steps[name]})"
        return None

    def bound(self, step: SagaStep, context: RunContext) -> SagaStep:
        """``step``, its async action cancelled at the deadline ``context`` holds."""
        if step.name not in self.steps and self.timeout is None:
            return step
        action = step.action
        limit = self.steps.get(step.name, self.timeout)

        @functools.wraps(action)
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            current = context.get()
            deadline = current.deadline if current is not None else None
            if deadline is None:
                return await action(*args, **kwargs)
            remaining = (deadline - now()).total_seconds()
            try:
                return await asyncio.wait_for(action(*args, **kwargs), max(remaining, 0.0))
            except TimeoutError:
                raise StepCancelled(f"step {step.name!r} did not complete within {limit}") from None

        return dataclasses.replace(step, action=bounded)

    def _running_step(self, state: SagaState) -> StepRecord | None:
        """The step ``state`` is running, when it has a deadline."""
        name = state.current_step
        if state.status is not SagaStatus.IN_PROGRESS or name not in self.steps:
            return None
        record = state.step(name)
        return record if record.status is StepStatus.RUNNING else None
