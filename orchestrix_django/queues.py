"""Which queues the Orchestrix tasks go to, and whether a running worker consumes them.

With ``ORCHESTRIX["WAKE_UP"] = "celery"`` the work happens in Celery workers,
and a task routed to a queue that no worker consumes waits there forever:
``CELERY_TASK_ROUTES`` sends ``orchestrix.advance_projection`` to
``projections`` while the only worker runs ``celery -A proj worker`` (the
default queue ``celery``), and nothing becomes visible. :func:`inspect_queues`
routes each Orchestrix task the configuration uses through the Celery app's
own router (``task_routes``, a task's ``queue``, ``task_default_queue``), asks
the running workers which queues they consume (Celery's ``inspect
active_queues``, waiting ``timeout`` seconds for the answers) and reports the
queues nobody consumes, with the command that starts a worker for them.

It waits at most about ``timeout`` seconds more than the broker takes to
refuse a connection: one connection attempt, no retries. An unreachable broker
is a finding too (:attr:`QueueReport.broker_error`), never an exception.
``orchestrix_status`` reports it, and ``--check`` fails on it; the system
check ``orchestrix.W020``/``W021`` (``manage.py check --deploy``) warns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrix_django.projections.registry import projections
from orchestrix_django.sagas.sweep import has_saga_work

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["DEFAULT_TIMEOUT", "QueueReport", "inspect_queues", "orchestrix_tasks"]

#: Seconds :func:`inspect_queues` waits for the workers' answers by default.
DEFAULT_TIMEOUT = 1.0

#: The tasks that keep projections up to date (orchestrix_django.tasks).
PROJECTION_TASKS = ("orchestrix.advance_projection", "orchestrix.catch_up_projections")

#: The tasks that run sagas and process managers' deadlines (orchestrix_django.tasks).
SAGA_TASKS = ("orchestrix.run_saga", "orchestrix.sweep_sagas")


def orchestrix_tasks() -> list[str]:
    """The Orchestrix tasks this configuration sends: projections' and, with sagas, sagas'."""
    names: list[str] = []
    if projections():
        names += PROJECTION_TASKS
    if has_saga_work():
        names += SAGA_TASKS
    return names


@dataclass(frozen=True)
class QueueReport:
    """Where the Orchestrix tasks go, and who consumes those queues."""

    #: The Celery app's main name (what ``celery -A`` usually names).
    app: str
    #: Task name -> the queue its messages are routed to.
    routes: dict[str, str]
    #: Worker name -> the queues it consumes (empty when none answered).
    workers: dict[str, list[str]] = field(default_factory=dict)
    #: Why the broker could not be asked (None when it answered).
    broker_error: str | None = None
    #: Seconds the workers were given to answer.
    timeout: float = DEFAULT_TIMEOUT

    @property
    def consumed(self) -> set[str]:
        """The queues at least one running worker consumes."""
        return {queue for queues in self.workers.values() for queue in queues}

    @property
    def unconsumed(self) -> dict[str, list[str]]:
        """Queue -> the Orchestrix tasks routed to it that no running worker consumes."""
        if self.broker_error is not None:
            return {}
        consumed = self.consumed
        missing: dict[str, list[str]] = {}
        for task, queue in self.routes.items():
            if queue not in consumed:
                missing.setdefault(queue, []).append(task)
        return missing

    def worker_command(self) -> str:
        """The command that starts a worker for every unconsumed queue."""
        queues = ",".join(sorted(self.unconsumed))
        return f"celery -A {self.app} worker -Q {queues} -l info"

    def problems(self) -> list[str]:
        """One sentence per thing that keeps the tasks from running (empty when none)."""
        if self.broker_error is not None:
            return [
                f"cannot reach the Celery broker to ask the workers ({self.broker_error}): "
                "no wake-up, catch-up or saga task can be sent or received"
            ]
        missing = self.unconsumed
        if not missing:
            return []
        answered = (
            f"the running workers, {', '.join(sorted(self.workers))}, consume "
            f"{', '.join(sorted(self.consumed)) or 'no queue'}"
            if self.workers
            else f"no Celery worker answered within {self.timeout:g} s"
        )
        return [
            *(
                f"{', '.join(tasks)} {'is' if len(tasks) == 1 else 'are'} routed to queue "
                f"{queue!r}, which no running worker consumes"
                for queue, tasks in sorted(missing.items())
            ),
            f"{answered}: start a worker with `{self.worker_command()}`",
        ]


def inspect_queues(
    app: Celery | None = None,
    *,
    tasks: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> QueueReport:
    """Route ``tasks`` (default: :func:`orchestrix_tasks`) and ask the workers (see the module).

    ``app`` is the Celery app (default: the current one, the project's, which
    its ``proj/__init__.py`` imports). Never raises for an unreachable broker.
    """
    from celery.app import app_or_default

    app = app_or_default(app)
    names = orchestrix_tasks() if tasks is None else tasks
    # A fresh router: the app's cached one keeps the routes it was first built with.
    router = app.amqp.Router()
    routes: dict[str, str] = {}
    for name in names:
        task = app.tasks.get(name)
        queue = getattr(task, "queue", None)
        options = {"queue": queue} if queue else {}
        # The task instance, as Celery's send_task passes it; the stubs expect its class.
        routed = router.route(options, name, (), {}, task)  # type: ignore[arg-type]
        queue = routed.get("queue")
        routes[name] = str(getattr(queue, "name", queue))
    main = app.main if app.main and app.main != "__main__" else "<your Celery app>"
    workers: dict[str, list[str]] = {}
    try:
        with app.connection_for_write(connect_timeout=timeout) as connection:
            # kombu takes any number of seconds; its stubs say int.
            connection.ensure_connection(
                max_retries=0,
                interval_start=0,
                timeout=timeout,  # type: ignore[arg-type]
            )
            answers = (
                app.control.inspect(timeout=timeout, connection=connection).active_queues() or {}
            )
    except Exception as error:
        return QueueReport(
            main, routes, broker_error=f"{type(error).__name__}: {error}", timeout=timeout
        )
    for worker, queues in answers.items():
        workers[worker] = sorted(str(queue.get("name")) for queue in queues or ())
    return QueueReport(main, routes, workers, timeout=timeout)
