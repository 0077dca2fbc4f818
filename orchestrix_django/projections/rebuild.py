"""The zero-downtime rebuild: build a new projection beside the live one, then switch readers.

A read model is named after its first projection; :func:`active_projection`
tells which projection serves it (docs/operations.md, "Rebuilding without downtime").
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from django.db import transaction

from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix_django.models import ActiveProjection
from orchestrix_django.projections.control import reset_projection, resume
from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.projections.runner import CatchUpResult, StopReason, catch_up
from orchestrix_django.projections.status import projection_status
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

__all__ = [
    "NotCaughtUpError",
    "RebuildError",
    "RebuildResult",
    "SwitchResult",
    "active_projection",
    "active_read_model",
    "check_rebuild",
    "read_model_name",
    "rebuild",
    "switch_projection",
]

logger = logging.getLogger("orchestrix.projections")


class RebuildError(OrchestrixError):
    """A rebuild or switch that cannot be done as asked (the message says why and what to do)."""


class NotCaughtUpError(RebuildError):
    """The new projection is still behind the head of the log: the switch did not happen."""

    def __init__(self, projection_id: str, position: int, head: int) -> None:
        self.projection_id = projection_id
        self.position = position
        self.head = head
        super().__init__(
            f"projection {projection_id!r} is at position {position}, {head - position} "
            f"behind the head of the log ({head}): not switched"
        )


@dataclass(frozen=True)
class SwitchResult:
    """A switch :func:`switch_projection` made: ``name`` is now served by ``projection_id``."""

    name: str
    projection_id: str
    replaced_projection_id: str
    position: int
    head: int


@dataclass(frozen=True)
class RebuildResult:
    """What :func:`rebuild` did: the last catch-up, and the switch unless it stopped first."""

    projection_id: str
    applied: int
    last: CatchUpResult
    switched: SwitchResult | None
    stopped: StopReason | None = None


def active_projection(name: str) -> str:
    """The id of the projection that serves the read model ``name`` (``name`` until a switch).

    Read-side code picks its tables with it::

        v2 = active_projection("balances") == "balances-v2"
        model = AccountBalanceV2 if v2 else AccountBalance

    (or with :func:`active_read_model`). One primary-key lookup per call.
    """
    using = str(orchestrix_settings.DATABASE)
    found = (
        ActiveProjection.objects.using(using)
        .filter(pk=name)
        .values_list("projection_id", flat=True)
    )
    return next(iter(found), name)


_T = TypeVar("_T")


def active_read_model(name: str, choices: dict[str, _T]) -> _T:
    """The entry of ``choices`` (projection id → anything) for the projection serving ``name``.

    ``active_read_model("balances", {"balances": AccountBalance, "balances-v2": AccountBalanceV2})``
    """
    projection_id = active_projection(name)
    try:
        return choices[projection_id]
    except KeyError:
        raise RebuildError(
            f"read model {name!r} is served by projection {projection_id!r}, "
            f"which is not among the choices ({', '.join(sorted(choices))})"
        ) from None


def read_model_name(projection_id: str) -> str:
    """The read model ``projection_id`` serves: its switch row's name, or its own id."""
    using = str(orchestrix_settings.DATABASE)
    found = ActiveProjection.objects.using(using).filter(projection_id=projection_id)
    return next(iter(found.values_list("name", flat=True)), projection_id)


def check_rebuild(new: DjangoProjection, replace: DjangoProjection) -> str:
    """The read model a switch from ``replace`` to ``new`` is about; RebuildError if none.

    ``replace`` must be the projection serving its read model now, and
    ``new`` must serve none yet.
    """
    if new.projection_id == replace.projection_id:
        raise RebuildError(
            f"--replace names the projection being built ({new.projection_id!r}): "
            "give the id of the live projection the new one replaces"
        )
    using = str(orchestrix_settings.DATABASE)
    served = ActiveProjection.objects.using(using).filter(projection_id=new.projection_id).first()
    if served is not None:
        raise RebuildError(
            f"projection {new.projection_id!r} already serves read model {served.name!r}: "
            "nothing to switch"
        )
    name = read_model_name(replace.projection_id)
    current = active_projection(name)
    if current != replace.projection_id:
        raise RebuildError(
            f"read model {name!r} is served by {current!r}, not {replace.projection_id!r}: "
            f"replace {current!r} instead"
        )
    return name


def _check_not_stopped(projection: DjangoProjection) -> None:
    status = projection_status(projection.projection_id)
    if not status.healthy or status.parked:
        raise RebuildError(
            f"projection {projection.projection_id!r} is unhealthy "
            f"({status.parked} parked event(s); last error: {status.last_error}): "
            "retry or skip its parked events first"
        )


def switch_projection(
    new: DjangoProjection, *, replace: DjangoProjection, max_lag: int = 0
) -> SwitchResult:
    """Make ``new`` serve the read model ``replace`` serves, and pause ``replace``.

    Only when ``new`` is healthy, not paused and at most ``max_lag`` events
    behind the head of the log (raises :class:`NotCaughtUpError` otherwise:
    catch it up and try again). One transaction, under ``new``'s state row
    lock: readers see either the old projection or the caught-up new one.
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    states = DjangoProjectionStateStore()
    with (
        transaction.atomic(using=states.using),
        # First: on SQLite this write takes the database lock for the check below.
        states.lock(new.projection_id) as locked,
    ):
        name = check_rebuild(new, replace)
        if locked.paused:
            raise RebuildError(f"projection {new.projection_id!r} is paused: resume it first")
        _check_not_stopped(new)
        position = locked.state.last_processed_position
        head = DjangoEventStore(states.using).head_position()
        if head - position > max_lag:
            raise NotCaughtUpError(new.projection_id, position, head)
        ActiveProjection.objects.using(states.using).update_or_create(
            name=name,
            defaults={
                "projection_id": new.projection_id,
                "replaced_projection_id": replace.projection_id,
                "switched_at": datetime.now(UTC),
            },
        )
        states.set_paused(replace.projection_id, True)
    logger.warning(
        "read model %s switched from projection %s to %s at position %s (head %s); %s is paused",
        name,
        replace.projection_id,
        new.projection_id,
        position,
        head,
        replace.projection_id,
    )
    return SwitchResult(name, new.projection_id, replace.projection_id, position, head)


def rebuild(
    new: DjangoProjection,
    *,
    replace: DjangoProjection,
    reset: bool = False,
    max_lag: int = 0,
    timeout: float | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_batch: Callable[[CatchUpResult], None] | None = None,
) -> RebuildResult:
    """Build ``new`` beside the live ``replace``, then switch readers to it (zero downtime).

    ``replace`` keeps serving (and its runners keep it up to date) while
    ``new`` catches up from its checkpoint (from the start of the log with
    ``reset=True``, which clears its read model first). Once ``new`` is
    within ``max_lag`` events of the head, :func:`switch_projection` switches.
    Events written meanwhile are caught up too. When ``timeout`` seconds
    have passed, when ``should_stop()`` says so (both checked between
    batches) or when ``new`` stops at a failing event, the result has
    ``switched=None`` and ``stopped`` says why: nothing was switched, and
    running again continues from where it stopped. ``on_batch`` gets each
    batch's progress, with ``applied`` counted over the whole rebuild.
    """
    check_rebuild(new, replace)
    status = projection_status(new.projection_id)
    if reset:
        reset_projection(new)
    else:
        _check_not_stopped(new)
        if status.paused:
            # A healthy, paused projection: one retired by an earlier switch,
            # now switched back to, or one an operator paused. Being asked to
            # serve it, the runners must advance it.
            resume(new)
    deadline = None if timeout is None else time.monotonic() + timeout
    applied = 0

    def timed_out() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def stop() -> bool:
        return timed_out() or (should_stop is not None and should_stop())

    def progress(result: CatchUpResult) -> None:
        if on_batch is not None:
            on_batch(dataclasses.replace(result, applied=applied + result.applied))

    while True:
        last = catch_up(new, should_stop=stop, on_batch=progress)
        applied += last.applied
        if last.stopped is not None:
            reason = last.stopped
            if reason is StopReason.ASKED_TO_STOP and timed_out():
                reason = StopReason.TIMED_OUT
            return RebuildResult(new.projection_id, applied, last, None, reason)
        try:
            switched = switch_projection(new, replace=replace, max_lag=max_lag)
        except NotCaughtUpError:
            # Events were written since the catch-up read the head: go again.
            continue
        return RebuildResult(new.projection_id, applied, last, switched)
