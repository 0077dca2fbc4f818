"""The persisted state of a saga and of each of its steps, and the protocols of what keeps it.

Stores use optimistic locking: ``SagaState.version`` is the version the caller
read (0 for a state never saved); ``save`` succeeds only if it is still the
stored version, stores a copy with ``version + 1`` and returns that copy.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Protocol, runtime_checkable

from orchestrix.core.common.clock import utc_now
from orchestrix.core.serialization.values import decode_value, encode_value

__all__ = [
    "SagaState",
    "SagaStateStore",
    "SagaStatus",
    "StepRecord",
    "StepStatus",
    "SyncSagaStateStore",
]


def _datetime_or_none(value: Any) -> datetime | None:
    if value is None:
        return None
    stamp = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    # Every timestamp is aware UTC; a naive one from an old row is taken as UTC.
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def _iso_or_none(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


# ------------------------------------------------------------------ statuses


class SagaStatus(Enum):
    """Where a saga is in its life."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    COMPENSATING = "compensating"
    FAILED = "failed"


class StepStatus(StrEnum):
    """Where one step is. A ``StrEnum``, so it also compares equal to its value."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATING = "compensating"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"


#: Statuses of a step whose action finished successfully (whatever happened after).
_ACTION_DONE = frozenset(
    {
        StepStatus.COMPLETED,
        StepStatus.COMPENSATING,
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATION_FAILED,
    }
)


@dataclass
class StepRecord:
    """The history of one step within one saga run.

    ``attempts`` counts calls of the action (1 after the first call, counting
    retries and calls interrupted by a crash); ``error`` is the action's last
    error. ``compensation_attempts`` and ``compensation_error`` are the same
    for the compensation. A step without a compensation is marked
    ``compensated`` when the saga unwinds (there is nothing to undo).
    """

    name: str
    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    result: Any = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    compensated_at: datetime | None = None
    compensation_attempts: int = 0
    compensation_error: str | None = None

    @property
    def action_completed(self) -> bool:
        """Whether the action finished successfully (even if compensated since)."""
        return self.status in _ACTION_DONE

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data (the result goes through the Orchestrix codec)."""
        return {
            "name": self.name,
            "status": self.status.value,
            "attempts": self.attempts,
            "result": encode_value(self.result),
            "error": self.error,
            "started_at": _iso_or_none(self.started_at),
            "finished_at": _iso_or_none(self.finished_at),
            "compensated_at": _iso_or_none(self.compensated_at),
            "compensation_attempts": self.compensation_attempts,
            "compensation_error": self.compensation_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        """The record :meth:`to_dict` described."""
        return cls(
            name=data["name"],
            status=StepStatus(data.get("status", StepStatus.PENDING.value)),
            attempts=int(data.get("attempts", 0)),
            result=decode_value(data.get("result")),
            error=data.get("error"),
            started_at=_datetime_or_none(data.get("started_at")),
            finished_at=_datetime_or_none(data.get("finished_at")),
            compensated_at=_datetime_or_none(data.get("compensated_at")),
            compensation_attempts=int(data.get("compensation_attempts", 0)),
            compensation_error=data.get("compensation_error"),
        )


@dataclass
class SagaState:
    """Everything persisted about one saga.

    ``steps`` holds one :class:`StepRecord` per step, in the saga's order;
    ``kwargs`` are the keyword arguments given to :meth:`Saga.execute` (kept
    so that a resumed saga runs with the same ones). ``version`` is the
    optimistic-locking version: 0 until first saved, then the stored version
    this copy was read at. Timestamps are aware UTC.
    """

    saga_id: str
    saga_type: str
    status: SagaStatus = SagaStatus.PENDING
    current_step: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    trace_id: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    version: int = 0

    # -- queries --------------------------------------------------------------

    def step(self, name: str) -> StepRecord:
        """The record of step ``name`` (``KeyError`` if the saga has no such step)."""
        for record in self.steps:
            if record.name == name:
                return record
        raise KeyError(f"saga {self.saga_id!r} has no step {name!r}")

    @property
    def is_finished(self) -> bool:
        """Whether the saga reached COMPLETED or FAILED."""
        return self.status in (SagaStatus.COMPLETED, SagaStatus.FAILED)

    @property
    def completed_steps(self) -> list[str]:
        """Names of the steps whose action succeeded (also if compensated since)."""
        return [record.name for record in self.steps if record.action_completed]

    @property
    def compensated_steps(self) -> list[str]:
        """Names of the steps that were compensated."""
        return [r.name for r in self.steps if r.status is StepStatus.COMPENSATED]

    @property
    def failed_compensations(self) -> list[str]:
        """Names of the steps whose compensation failed (their effects remain)."""
        return [r.name for r in self.steps if r.status is StepStatus.COMPENSATION_FAILED]

    @property
    def failed_step(self) -> str | None:
        """The step whose failure made the saga compensate, if any."""
        return next((r.name for r in self.steps if r.status is StepStatus.FAILED), None)

    @property
    def results(self) -> dict[str, Any]:
        """Step name -> result, for every step whose action succeeded."""
        return {r.name: r.result for r in self.steps if r.action_completed}

    @property
    def fully_compensated(self) -> bool:
        """True for a FAILED saga every completed step of which was undone."""
        left_undone = (
            StepStatus.COMPLETED,
            StepStatus.COMPENSATING,
            StepStatus.COMPENSATION_FAILED,
        )
        return self.status is SagaStatus.FAILED and not any(
            r.status in left_undone for r in self.steps
        )

    # -- copies and serialisation ---------------------------------------------

    def copy(self) -> SagaState:
        """A deep copy, sharing no mutable state with this one."""
        return copy.deepcopy(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible data, for stores that persist JSON.

        ``kwargs`` and step results go through the Orchestrix codec, so a
        ``Decimal``, ``datetime`` or ``UUID`` comes back as what it was.
        Raises ``TypeError`` for values the codec cannot store.
        """
        return {
            "saga_id": self.saga_id,
            "saga_type": self.saga_type,
            "status": self.status.value,
            "current_step": self.current_step,
            "steps": [record.to_dict() for record in self.steps],
            "kwargs": encode_value(self.kwargs),
            "error": self.error,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "trace_id": self.trace_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SagaState:
        """The state :meth:`to_dict` described."""
        created_at = _datetime_or_none(data.get("created_at")) or utc_now()
        return cls(
            saga_id=data["saga_id"],
            saga_type=data["saga_type"],
            status=SagaStatus(data.get("status", SagaStatus.PENDING.value)),
            current_step=data.get("current_step"),
            steps=[StepRecord.from_dict(item) for item in data.get("steps", ())],
            kwargs=dict(decode_value(data.get("kwargs") or {})),
            error=data.get("error"),
            correlation_id=data.get("correlation_id"),
            causation_id=data.get("causation_id"),
            trace_id=data.get("trace_id"),
            created_at=created_at,
            updated_at=_datetime_or_none(data.get("updated_at")) or created_at,
            version=int(data.get("version", 0)),
        )


# ------------------------------------------------------------------ stores


@runtime_checkable
class SagaStateStore(Protocol):
    """Persists saga states with optimistic locking (async).

    * ``save(state)``: ``state.version`` is the version the caller read (0
      for a saga never saved). If the stored version (0 when absent) differs,
      raise :class:`ConcurrencyError` with ``aggregate_id=state.saga_id``,
      ``expected_version=state.version`` and ``actual_version`` the stored
      one. Otherwise store a copy with ``version = state.version + 1`` (and
      everything else as given) and return a copy of it. The caller's object
      is left unchanged.
    * ``load(saga_id)``: a copy of the stored state, or ``None``.
    * ``list(status=None, saga_type=None)``: copies of the stored states
      matching both filters (``None``: any), oldest ``created_at`` first.

    Stores never share mutable objects with callers. Stores that persist
    JSON use :meth:`SagaState.to_dict` / :meth:`SagaState.from_dict`.
    """

    async def save(self, state: SagaState) -> SagaState:
        """Store ``state`` if ``state.version`` is the stored version; return the stored copy."""
        ...

    async def load(self, saga_id: str) -> SagaState | None:
        """The stored state of ``saga_id``, or ``None``."""
        ...

    async def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Stored states matching the filters, oldest first."""
        ...


@runtime_checkable
class SyncSagaStateStore(Protocol):
    """The synchronous twin of :class:`SagaStateStore`, with the same semantics.

    A :class:`Saga` accepts either; it awaits whatever a store method returns
    when that is awaitable. (At run time ``isinstance`` cannot tell the two
    protocols apart: both only check that the methods exist.)
    """

    def save(self, state: SagaState) -> SagaState:
        """Store ``state`` if ``state.version`` is the stored version; return the stored copy."""
        ...

    def load(self, saga_id: str) -> SagaState | None:
        """The stored state of ``saga_id``, or ``None``."""
        ...

    def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Stored states matching the filters, oldest first."""
        ...
