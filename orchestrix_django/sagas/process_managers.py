"""Process managers: event-driven sagas, started and advanced by events, that issue commands.

A :class:`ProcessManager` is a projection whose read model is the state of
its processes (rows of the saga table): its handlers react to events, send
commands and schedule deadlines, which the periodic sweep fires. See
docs/django.md, "Process managers".
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.db import transaction

from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix.core.common.observability import (
    ObservabilityHooks,
    TracingProvider,
    get_observability,
)
from orchestrix.core.common.retry import RetryPolicy
from orchestrix.core.eventsourcing.projection_routes import EventKey
from orchestrix.core.execution.saga import SagaState, SagaStatus
from orchestrix.core.execution.saga_state import StepRecord, StepStatus
from orchestrix.core.messaging.message import Command, Event
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.projections.definition import DjangoProjection, FailureMode
from orchestrix_django.projections.registry import projections
from orchestrix_django.sagas.state import DeadlineStore
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.faults import is_database_fault
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

__all__ = [
    "CommandDispatchError",
    "Process",
    "ProcessManager",
    "dispatch_command",
    "fire_due_timeouts",
    "process_managers",
]

logger = logging.getLogger("orchestrix.sagas")

_H = TypeVar("_H", bound=Callable[..., Any])


def _now() -> datetime:
    return datetime.now(UTC)


class CommandDispatchError(OrchestrixError):
    """A command has no handler, or more than one, on the message bus."""


def dispatch_command(command: Command, bus: Any = None) -> None:
    """Hand ``command`` to the one handler subscribed to its class on ``bus``.

    ``bus`` defaults to the process-wide Django message bus. Raises
    :class:`CommandDispatchError` when no handler, or several, are
    subscribed, and the bus's ``HandlerError`` when the handler fails.
    """
    if not isinstance(command, Command):
        raise TypeError(f"only commands are dispatched, got {command!r}")
    if bus is None:
        from orchestrix_django.bus import get_bus

        bus = get_bus()
    handlers = bus.handlers_for(type(command))
    if len(handlers) != 1:
        found = "no handler is" if not handlers else f"{len(handlers)} handlers are"
        raise CommandDispatchError(
            f"cannot dispatch {command.type}: {found} subscribed to {type(command).__name__} "
            "(a command has exactly one handler; subscribe it in a module of "
            "ORCHESTRIX['MODULES'])"
        )
    bus.publish(command)


class Process:
    """One process of a :class:`ProcessManager`, as its handlers see and change it.

    ``data`` is the process's own dict (saved after the handler returns);
    ``trigger`` is the event being handled (None in a timeout handler).
    """

    def __init__(self, manager: ProcessManager, state: SagaState, trigger: Event | None) -> None:
        self.manager = manager
        self.process_id = state.saga_id
        self.key: str = str(state.kwargs.get("key", ""))
        self.data: dict[str, Any] = dict(state.kwargs.get("data") or {})
        self.trigger = trigger
        self.correlation_id = state.correlation_id
        self.causation_id = state.causation_id
        self.trace_id = state.trace_id
        self.error = state.error
        self.commands: list[Command] = []
        self._deadlines: dict[str, datetime] = dict(state.kwargs.get("deadlines") or {})
        self._status = state.status
        self._state = state

    @property
    def status(self) -> SagaStatus:
        """IN_PROGRESS, or COMPLETED / FAILED once :meth:`complete` / :meth:`fail` was called."""
        return self._status

    @property
    def is_finished(self) -> bool:
        """Whether the process completed or failed."""
        return self._status in (SagaStatus.COMPLETED, SagaStatus.FAILED)

    @property
    def deadlines(self) -> dict[str, datetime]:
        """The pending deadlines, by name (a copy)."""
        return dict(self._deadlines)

    def send(self, command: Command) -> Command:
        """Dispatch ``command`` once the handler returns (see the module docs); returns it.

        Without a correlation id, the command gets those of the triggering
        event (in a timeout handler: the process's own).
        """
        if not isinstance(command, Command):
            raise TypeError(f"process.send() takes a Command, got {command!r}")
        if command.correlation_id is None:
            if self.trigger is not None:
                command = command.correlated_with(self.trigger)
            else:
                command = dataclasses.replace(
                    command,
                    correlation_id=self.correlation_id,
                    causation_id=self.causation_id,
                    trace_id=self.trace_id,
                )
        self.commands.append(command)
        return command

    def schedule(self, name: str, when: timedelta | datetime) -> datetime:
        """Set deadline ``name`` (replacing one of that name) at, or after, ``when``; returns it."""
        if not name:
            raise ValueError("a deadline needs a name")
        if isinstance(when, timedelta):
            due = _now() + when
        elif isinstance(when, datetime) and when.tzinfo is not None:
            due = when.astimezone(UTC)
        else:
            raise TypeError(f"schedule() takes a timedelta or an aware datetime, got {when!r}")
        self._deadlines[name] = due
        return due

    def cancel(self, name: str) -> bool:
        """Remove deadline ``name``; whether there was one."""
        return self._deadlines.pop(name, None) is not None

    def complete(self) -> None:
        """End the process successfully (its deadlines are cancelled)."""
        self._status = SagaStatus.COMPLETED
        self._deadlines.clear()

    def fail(self, reason: str) -> None:
        """End the process as failed, with ``reason`` (its deadlines are cancelled)."""
        self._status = SagaStatus.FAILED
        self.error = reason
        self._deadlines.clear()

    def _to_state(self, records: list[StepRecord]) -> SagaState:
        state = self._state.copy()
        state.status = self._status
        state.error = self.error
        state.kwargs = {"key": self.key, "data": dict(self.data), "deadlines": self._deadlines}
        state.steps = [*state.steps, *records]
        state.current_step = records[-1].name if records else state.current_step
        return state

    def __repr__(self) -> str:
        return f"<Process {self.process_id} {self._status.value}>"


class _ProcessStore(DeadlineStore):
    """The saga table, its ``deadline`` column holding a process's earliest deadline."""

    def deadline_of(self, state: SagaState) -> datetime | None:
        """The earliest pending deadline of a running process."""
        deadlines = state.kwargs.get("deadlines") or {}
        if deadlines and state.status is SagaStatus.IN_PROGRESS:
            earliest: datetime = min(deadlines.values())
            return earliest
        return None


class ProcessManager(DjangoProjection):
    """An event-driven saga run by the projection runners (see the module docs).

    ``process_type`` is both the projection id and the ``saga_type`` of its
    processes. ``key`` maps an event to its process's key (default: its
    ``correlation_id``); ``since`` ignores older events; ``allow_reset``
    lets a reset delete the processes. The other options are those of
    :class:`DjangoProjection`.
    """

    def __init__(
        self,
        process_type: str,
        *,
        key: Callable[[Event], str | None] | None = None,
        since: datetime | None = None,
        allow_reset: bool = False,
        retry_policy: RetryPolicy | None = None,
        failure_mode: FailureMode = "park-and-stop",
        batch_size: int | None = None,
        tracing: TracingProvider | None = None,
        observability: ObservabilityHooks | None = None,
    ) -> None:
        super().__init__(
            process_type,
            retry_policy=retry_policy,
            failure_mode=failure_mode,
            batch_size=batch_size,
            tracing=tracing,
            observability=observability,
        )
        if since is not None and since.tzinfo is None:
            raise ValueError("since must be a timezone-aware datetime")
        self.process_type = process_type
        self.key: Callable[[Event], str | None] = key or _by_correlation_id
        self.since = since
        self.allow_reset = allow_reset
        self._hooks = observability
        self._timeouts: dict[str, Callable[[Process], Any]] = {}
        super().on_reset(self._reset_processes)

    @property
    def observability(self) -> ObservabilityHooks:
        """The constructor's hooks, else ``ORCHESTRIX["OBSERVABILITY"]``, else the global ones."""
        if self._hooks is not None:
            return self._hooks
        configured: ObservabilityHooks | None = orchestrix_settings.OBSERVABILITY
        return configured if configured is not None else get_observability()

    def process_id(self, key: str) -> str:
        """The saga id of the process with key ``key``."""
        return f"{self.process_type}:{key}"

    def _store(self) -> _ProcessStore:
        return _ProcessStore()

    # -- registration -----------------------------------------------------------

    def starts(self, event_type: EventKey) -> Callable[[_H], _H]:
        """Decorator: ``handler(process, event)`` for events that start a process."""
        return self._register(event_type, starts=True)

    def on(self, event_type: EventKey) -> Callable[[_H], _H]:
        """Decorator: ``handler(process, event)`` for events that advance a running process."""
        return self._register(event_type, starts=False)

    def on_timeout(self, name: str) -> Callable[[_H], _H]:
        """Decorator: ``handler(process)`` for when deadline ``name`` passes."""

        def register(handler: _H) -> _H:
            if name in self._timeouts:
                raise ValueError(f"{self.process_type}: deadline {name!r} has a handler already")
            self._timeouts[name] = handler
            return handler

        return register

    def _register(self, event_type: EventKey, *, starts: bool) -> Callable[[_H], _H]:
        def register(handler: _H) -> _H:
            if not callable(handler):
                raise TypeError(f"a process handler must be callable, got {handler!r}")

            def apply(event: Event) -> None:
                self._handle(handler, event, starts=starts)

            # Dead letters and logs name the user's handler.
            apply.__name__ = getattr(handler, "__name__", "handler")
            apply.__qualname__ = getattr(handler, "__qualname__", apply.__name__)
            apply.__module__ = getattr(handler, "__module__", __name__)
            super(ProcessManager, self).on(event_type)(apply)
            return handler

        return register

    # -- handling -----------------------------------------------------------------

    def _handle(self, handler: Callable[..., Any], event: Event, *, starts: bool) -> None:
        """Run ``handler`` for ``event`` on its process (in the runner's savepoint)."""
        if self.since is not None and event.timestamp < self.since:
            return
        key = self.key(event)
        if not key:
            logger.debug("%s: %s %s has no key: ignored", self.process_type, event.type, event.id)
            return
        store = self._store()
        saga_id = self.process_id(key)
        state = store.load(saga_id)
        created = state is None
        if state is None:
            if not starts:
                logger.debug("%s: no process %s: %s ignored", self.process_type, key, event.type)
                return
            state = SagaState(
                saga_id=saga_id,
                saga_type=self.process_type,
                status=SagaStatus.IN_PROGRESS,
                kwargs={"key": key, "data": {}, "deadlines": {}},
                correlation_id=event.correlation_id or event.id,
                causation_id=event.id,
                trace_id=event.trace_id,
            )
        elif state.is_finished:
            return
        process = Process(self, state, event)
        started_at = _now()
        record = self._timed(handler, (process, event), event.type)
        record.name = f"{event.type} {event.id}"
        record.started_at = started_at
        self._commit(store, process, [record], created=created)

    def _timed(self, handler: Callable[..., Any], args: tuple[Any, ...], label: str) -> StepRecord:
        started = time.perf_counter()
        succeeded = False
        try:
            handler(*args)
            succeeded = True
        finally:
            self.observability.record_saga_step(
                self.process_type, label, time.perf_counter() - started, succeeded
            )
        return StepRecord(name=label, status=StepStatus.COMPLETED, attempts=1)

    def _commit(
        self,
        store: _ProcessStore,
        process: Process,
        records: list[StepRecord],
        *,
        created: bool,
    ) -> None:
        now = _now()
        for record in records:
            record.started_at = record.started_at or now
            record.finished_at = now
            record.result = {"commands": [command.type for command in process.commands]}
        state = process._to_state(records)
        state.updated_at = now
        store.save(state)
        hooks = self.observability
        if created:
            hooks.record_saga_started(self.process_type, state.saga_id)
        if state.status is SagaStatus.COMPLETED:
            hooks.record_saga_completed(self.process_type, state.saga_id)
        elif state.status is SagaStatus.FAILED:
            hooks.record_saga_failed(self.process_type, state.saga_id, state.error or "failed")
        for command in process.commands:
            dispatch_command(command)

    # -- deadlines ------------------------------------------------------------------

    def fire_due_timeouts(self, *, now: datetime | None = None, limit: int = 100) -> list[str]:
        """Run the handlers of the deadlines due at ``now``; the ids of the processes concerned.

        One transaction under this manager's projection lock; a savepoint per
        process, so that one failing handler (logged, counted, tried again at
        the next sweep) does not hold the others back.
        """
        now = now or _now()
        store = self._store()
        alias = store.using
        due = list(
            SagaStateRecord.objects.using(alias)
            .filter(
                saga_type=self.process_type,
                status=SagaStatus.IN_PROGRESS.value,
                deadline__lte=now,
            )
            .order_by("deadline")
            .values_list("saga_id", flat=True)[:limit]
        )
        if not due:
            return []
        fired: list[str] = []
        states = DjangoProjectionStateStore(alias)
        with transaction.atomic(using=alias), states.lock(self.projection_id):
            for saga_id in due:
                try:
                    with transaction.atomic(using=alias):
                        if self._fire(store, saga_id, now):
                            fired.append(saga_id)
                except Exception as error:
                    if is_database_fault(error):
                        raise  # the transaction is lost: the sweep notes it, the next one retries
                    logger.exception(
                        "%s: a deadline handler of process %s failed; tried again next sweep",
                        self.process_type,
                        saga_id,
                    )
                    self.observability.record_handler_error(
                        "deadline", f"{self.process_type}:{saga_id}", _describe(error)
                    )
        return fired

    def _fire(self, store: _ProcessStore, saga_id: str, now: datetime) -> bool:
        state = store.load(saga_id)
        if state is None or state.status is not SagaStatus.IN_PROGRESS:
            return False
        process = Process(self, state, None)
        due = sorted((when, name) for name, when in process.deadlines.items() if when <= now)
        if not due:
            return False
        records: list[StepRecord] = []
        for when, name in due:
            if process.is_finished:
                break
            process.cancel(name)
            handler = self._timeouts.get(name)
            label = f"timeout {name}"
            logger.info("%s: process %s: deadline %s passed", self.process_type, saga_id, name)
            if handler is None:
                process.fail(f"deadline {name!r} passed at {when.isoformat()}")
                records.append(StepRecord(name=label, status=StepStatus.FAILED, attempts=1))
                continue
            records.append(self._timed(handler, (process,), label))
        self._commit(store, process, records, created=False)
        return True

    # -- reset ------------------------------------------------------------------------

    def _reset_processes(self) -> None:
        if not self.allow_reset:
            raise OrchestrixError(
                f"process manager {self.process_type!r} is not reset: a replay would send "
                "every command again (create it with allow_reset=True to allow it)"
            )
        SagaStateRecord.objects.using(self._store().using).filter(
            saga_type=self.process_type
        ).delete()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _by_correlation_id(event: Event) -> str | None:
    return event.correlation_id


def process_managers() -> list[ProcessManager]:
    """The process managers among ``ORCHESTRIX["PROJECTIONS"]``."""
    return [p for p in projections().values() if isinstance(p, ProcessManager)]


def fire_due_timeouts(*, now: datetime | None = None) -> list[str]:
    """:meth:`ProcessManager.fire_due_timeouts` for every configured process manager."""
    fired: list[str] = []
    for manager in process_managers():
        try:
            fired += manager.fire_due_timeouts(now=now)
        except Exception as error:
            if is_database_fault(error):
                raise  # not the manager's: the sweep notes it, the next one retries
            logger.exception("firing the deadlines of %s failed", manager.process_type)
    return fired
