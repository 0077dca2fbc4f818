"""``python manage.py orchestrix_status``: how projections, sagas and dead letters are doing.

* **Projections**: every configured projection, and every other one with a
  checkpoint: position, lag behind the head of the log, health, parked
  events and last error; below the table, what to do about each one that
  needs an operator.
* **Sagas**: counts by saga type and status, and the unfinished sagas whose
  deadline has passed (the runner or Celery beat times them out; if they
  stay overdue, nothing is running them).
* **Dead letters**: parked letters by source.
* **Celery workers** (with ``ORCHESTRIX["WAKE_UP"] = "celery"``): the queue
  each Orchestrix task is routed to, the queues the running workers consume,
  and the queues nobody consumes, with the command that starts a worker for
  them (:mod:`orchestrix_django.queues`; it waits ``--workers-timeout``
  seconds for the workers' answers).

A projection is *stalled* when events wait after its checkpoint and nothing
has advanced it for ``ORCHESTRIX["STALLED_AFTER"]`` seconds
(:func:`~orchestrix_django.projections.status.is_stalled`): no runner holds it.

``--json`` writes the same as one JSON object (for monitoring). ``--check``
makes the command exit 1, saying what is wrong, when a projection is
unhealthy, stopped or stalled, a saga is overdue, a queue the Orchestrix
tasks are routed to has no worker, or the broker cannot be reached: a cron
job or a health check can alert on it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from django.utils import timezone

from orchestrix.core.execution.saga import SagaStatus
from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django.management.arguments import positive_float, positive_int
from orchestrix_django.management.console import count, stopped_advice
from orchestrix_django.models import DeadLetterRecord, ProjectionStateRecord, SagaStateRecord
from orchestrix_django.projections.registry import projections
from orchestrix_django.projections.status import ProjectionStatus, projection_status, stalled_after
from orchestrix_django.queues import DEFAULT_TIMEOUT, QueueReport
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.append_only import guard_problems
from orchestrix_django.storage.events import DjangoEventStore

__all__ = ["Command"]

#: Saga statuses whose deadline still matters (as in orchestrix_django.sagas.deadlines).
_DEADLINE_STATUSES = (SagaStatus.PENDING.value, SagaStatus.IN_PROGRESS.value)

#: The longest last error shown in the table (``--json`` has all of it).
_ERROR_WIDTH = 60


class Command(BaseCommand):
    """``orchestrix_status``: a report for operators (see the module docs)."""

    help = (
        "Show the projections (position, lag behind the head of the log, health, parked "
        "events, last error, and what to do about a stopped or stalled one), the sagas "
        "(counts by type and status, overdue deadlines), the parked dead letters and, with "
        "WAKE_UP = 'celery', the queues of the Orchestrix tasks that no running worker "
        "consumes, as tables or, with --json, as one JSON object. With --check, exit 1 when "
        "any of those needs an operator."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        parser.add_argument(
            "--json",
            action="store_true",
            help="Write one JSON object instead of tables.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Exit 1 (saying what to do) when a projection is unhealthy, stopped or "
            "stalled, a saga is past its deadline, or (WAKE_UP = 'celery') an Orchestrix task "
            "is routed to a queue no running worker consumes or the broker is unreachable; "
            "0 otherwise.",
        )
        parser.add_argument(
            "--workers-timeout",
            type=positive_float,
            default=DEFAULT_TIMEOUT,
            metavar="SECONDS",
            help="With WAKE_UP = 'celery': how long to wait for the Celery workers to say "
            f"which queues they consume (default: {DEFAULT_TIMEOUT:g}).",
        )
        parser.add_argument(
            "--overdue-limit",
            type=positive_int,
            default=10,
            metavar="N",
            help="List at most N overdue sagas, the most overdue first (default: 10).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Gather the report, write it, then judge it when asked to."""
        now = timezone.now()
        head = DjangoEventStore().head_position()
        configured = projections()
        statuses = [projection_status(pid, head=head) for pid in sorted(configured)]
        using = str(orchestrix_settings.DATABASE)
        others = (
            ProjectionStateRecord.objects.using(using)
            .exclude(projection_id__in=list(configured))
            .order_by("projection_id")
            .values_list("projection_id", flat=True)
        )
        statuses += [projection_status(pid, head=head) for pid in others]
        sagas = _saga_counts(using)
        overdue = SagaStateRecord.objects.using(using).filter(
            deadline__lte=now, status__in=_DEADLINE_STATUSES
        )
        overdue_count = overdue.count()
        overdue_rows = list(
            overdue.order_by("deadline").values_list("saga_id", "saga_type", "status", "deadline")[
                : options["overdue_limit"]
            ]
        )
        letters = dict(
            DeadLetterRecord.objects.using(using)
            .filter(status=DeadLetterStatus.PARKED.value)
            .values("source")
            .annotate(n=Count("pk"))
            .order_by("source")
            .values_list("source", "n")
        )
        advice = {
            status.projection_id: stopped_advice(configured[status.projection_id], status)
            for status in statuses
            if status.projection_id in configured
        }
        queues = _queue_report(options["workers_timeout"])
        guard = guard_problems(using)
        if options["json"]:
            report = {
                "time": now.isoformat(),
                "head": head,
                "projections": [
                    {
                        **asdict(status),
                        "configured": status.projection_id in configured,
                        "health": status.health,
                        "advice": advice.get(status.projection_id),
                    }
                    for status in statuses
                ],
                "sagas": {
                    "by_type": sagas,
                    "overdue": overdue_count,
                    "overdue_sagas": [
                        {"saga_id": sid, "saga_type": kind, "status": state, "deadline": when}
                        for sid, kind, state, when in overdue_rows
                    ],
                },
                "dead_letters": {"parked": letters},
                "workers": _queues_json(queues),
                "append_only_guard": guard,
            }
            self.stdout.write(json.dumps(report, indent=2, default=_json_default))
        else:
            self._tables(head, statuses, configured, advice, sagas, overdue_count, overdue_rows)
            self._letters(letters)
            self._workers(queues)
            self._guard(guard)
        if options["check"]:
            self._judge(statuses, overdue_count, queues, guard)

    # -- tables ------------------------------------------------------------------------

    def _tables(
        self,
        head: int,
        statuses: list[ProjectionStatus],
        configured: dict[str, Any],
        advice: dict[str, str | None],
        sagas: dict[str, dict[str, int]],
        overdue_count: int,
        overdue_rows: list[tuple[str, str, str, datetime | None]],
    ) -> None:
        self.stdout.write(f"Projections (head of the log: position {count(head)})")
        if not statuses:
            self.stdout.write("  none configured (ORCHESTRIX['PROJECTIONS'] is empty)")
        rows = [
            [
                status.projection_id
                + ("" if status.projection_id in configured else " (not configured)"),
                count(status.position),
                count(status.lag),
                status.health,
                count(status.parked),
                _shorten(status.last_error or ""),
            ]
            for status in statuses
        ]
        self._table(["PROJECTION", "POSITION", "LAG", "HEALTH", "PARKED", "LAST ERROR"], rows)
        for note in advice.values():
            if note:
                self.stdout.write(note)
        for status in statuses:
            if status.stalled:
                self.stdout.write(_stalled_advice(status))
        self.stdout.write("")
        self.stdout.write("Sagas")
        if not sagas:
            self.stdout.write("  none stored")
        else:
            names = [status.value for status in SagaStatus]
            self._table(
                ["SAGA TYPE", *(name.upper() for name in names)],
                [[kind, *(count(by.get(name, 0)) for name in names)] for kind, by in sagas.items()],
            )
        if overdue_count:
            self.stdout.write(
                f"{count(overdue_count)} saga(s) past their deadline (the most overdue first):"
            )
            self._table(
                ["SAGA ID", "SAGA TYPE", "STATUS", "DEADLINE"],
                # The query filters on the deadline: none is None (the column is nullable).
                [
                    [sid, kind, state, when.isoformat() if when else ""]
                    for sid, kind, state, when in overdue_rows
                ],
            )
            self.stdout.write(
                "  Overdue sagas are timed out (and compensated) by `python manage.py "
                "orchestrix_run`, or by the orchestrix.sweep_sagas task of Celery beat; if they "
                "stay overdue, neither is running (or the saga is not in ORCHESTRIX['SAGAS'])."
            )
        else:
            self.stdout.write("No saga is past its deadline.")

    def _letters(self, letters: dict[str, int]) -> None:
        self.stdout.write("")
        if not letters:
            self.stdout.write("No dead letter is parked.")
            return
        self.stdout.write("Parked dead letters")
        self._table(["SOURCE", "PARKED"], [[source, count(n)] for source, n in letters.items()])
        self.stdout.write(
            "  Retry or discard them in the admin (Dead letters), or through the API "
            "(POST dead-letters/<id>/retry/)."
        )

    def _workers(self, queues: QueueReport | None) -> None:
        if queues is None:
            return  # WAKE_UP is "none": orchestrix_run does the work, no worker to ask
        self.stdout.write("")
        self.stdout.write("Celery workers")
        if queues.broker_error is None:
            self._table(
                ["TASK", "QUEUE", "CONSUMED BY"],
                [
                    [
                        task,
                        queue,
                        ", ".join(w for w, qs in sorted(queues.workers.items()) if queue in qs)
                        or "nobody",
                    ]
                    for task, queue in queues.routes.items()
                ],
            )
        for problem in queues.problems():
            self.stdout.write(f"  {problem}.")
        if not queues.problems():
            self.stdout.write("  Every queue of the Orchestrix tasks has a running worker.")

    def _table(self, headers: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        widths = [
            max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)
        ]
        for row in [headers, *rows]:
            cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)]
            self.stdout.write("  " + "  ".join(cells).rstrip())

    # -- judging -----------------------------------------------------------------------

    def _guard(self, guard: list[str]) -> None:
        self.stdout.write("")
        if not guard:
            self.stdout.write("Append-only guard: in place")
            return
        self.stdout.write("Append-only guard: incomplete (orchestrix_append_only --install)")
        for problem in guard:
            self.stdout.write(f"  {problem}")

    @staticmethod
    def _judge(
        statuses: list[ProjectionStatus],
        overdue_count: int,
        queues: QueueReport | None,
        guard: list[str],
    ) -> None:
        problems = [
            f"projection {status.projection_id} is {status.health}"
            + (f" ({status.parked} parked event(s))" if status.parked else "")
            for status in statuses
            if not status.healthy or status.parked
        ]
        problems += [
            f"projection {status.projection_id} is stalled ({status.lag} event(s) behind, "
            f"no progress for {stalled_after():g} s or more)"
            for status in statuses
            if status.stalled and status.healthy and not status.parked
        ]
        if overdue_count:
            problems.append(f"{overdue_count} saga(s) past their deadline")
        if queues is not None:
            problems += queues.problems()
        problems += [
            f"the append-only guard is incomplete: {problem} "
            "(python manage.py orchestrix_append_only --install)"
            for problem in guard
        ]
        if problems:
            stopped = any(not status.healthy or status.parked for status in statuses)
            raise CommandError(
                "; ".join(problems)
                + ". See the advice above (or run orchestrix_status without --json)"
                + (", fix the cause, then retry or skip the parked events." if stopped else ".")
            )


def _queue_report(timeout: float) -> QueueReport | None:
    """Where the Orchestrix tasks go and who consumes them; None unless WAKE_UP is celery."""
    if orchestrix_settings.WAKE_UP != "celery":
        return None
    from orchestrix_django.queues import inspect_queues

    return inspect_queues(timeout=timeout)


def _queues_json(queues: QueueReport | None) -> dict[str, Any] | None:
    if queues is None:
        return None
    return {
        "routes": queues.routes,
        "workers": queues.workers,
        "unconsumed": queues.unconsumed,
        "broker_error": queues.broker_error,
        "problems": queues.problems(),
    }


def _stalled_advice(status: ProjectionStatus) -> str:
    """What to do about a stalled projection: start (or fix) what runs it."""
    if orchestrix_settings.WAKE_UP == "celery":
        runner = (
            "Celery workers consuming the queue of orchestrix.advance_projection, and one "
            "beat (for orchestrix.catch_up_projections)"
        )
    else:
        runner = "`python manage.py orchestrix_run`"
    since = f" since {status.updated_at.isoformat()}" if status.updated_at else ""
    return (
        f"  {status.projection_id}: stalled, {count(status.lag)} event(s) waiting and its "
        f"checkpoint has not moved{since}: nothing is advancing it. Start {runner}; if one "
        "runs, see its log (a batch that takes this long, or a lost connection)."
    )


def _saga_counts(using: str) -> dict[str, dict[str, int]]:
    """``{saga type: {status: count}}``, from the (saga_type, status) index."""
    counts: dict[str, dict[str, int]] = {}
    rows = (
        SagaStateRecord.objects.using(using)
        .values("saga_type", "status")
        .annotate(n=Count("pk"))
        .order_by("saga_type", "status")
        .values_list("saga_type", "status", "n")
    )
    for kind, state, n in rows:
        counts.setdefault(kind, {})[state] = n
    return counts


def _shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 1] + "…"


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
