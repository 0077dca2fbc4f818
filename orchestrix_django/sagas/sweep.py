"""The saga sweep, and the in-process saga runner of ``orchestrix_run``.

:func:`sweep` is one pass of the work no message asks for: it times out
overdue sagas (:func:`~orchestrix_django.sagas.runner.expire_overdue_sagas`), fires
the due deadlines of process managers
(:func:`~orchestrix_django.sagas.process_managers.fire_due_timeouts`) and resumes
unfinished sagas that nobody runs (:func:`~orchestrix_django.sagas.runner.resume_sagas`).
The Celery task ``orchestrix.sweep_sagas`` runs it with ``inline=False`` (the
sagas themselves go to ``orchestrix.run_saga`` tasks); the embedded runner
runs it with ``inline=True``, executing the sagas in its own thread.

:class:`EmbeddedSagaRunner` is that thread: ``orchestrix_run`` starts it next
to the projection runner when ``ORCHESTRIX["SAGAS"]`` (or a process manager)
is configured, so that, without a broker, sagas started anywhere
(``WAKE_UP = "none"``: :meth:`DjangoSaga.start` only stores them) are run
within ``POLL_INTERVAL`` seconds, and their deadlines are kept. Stopping it
lets the saga in hand finish its current step; the saga is left resumable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connections

from orchestrix_django.sagas.process_managers import fire_due_timeouts, process_managers
from orchestrix_django.sagas.runner import expire_overdue_sagas, resume_sagas, sagas
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.configured import configured_observability
from orchestrix_django.storage.faults import FaultComponent, FaultRetry, drop_broken_connections

__all__ = ["EmbeddedSagaRunner", "has_saga_work", "sweep"]

logger = logging.getLogger("orchestrix.runner")


def has_saga_work() -> bool:
    """Whether sagas or process managers are configured (something for :func:`sweep` to do)."""
    return bool(sagas()) or bool(process_managers())


def sweep(
    *,
    inline: bool,
    resume_after: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, list[str]]:
    """One pass: time out, fire deadlines, resume. Returns the saga ids acted on, by action.

    ``resume_after``: only sagas idle for that many seconds are resumed
    (with Celery, a fresh saga's message is usually on its way). A saga
    timed out in this pass is not resumed in it too: it was run or sent already.
    """
    outcome: dict[str, list[str]] = {"timed_out": [], "deadlines": [], "resumed": []}
    outcome["timed_out"] = expire_overdue_sagas(inline=inline)
    outcome["deadlines"] = fire_due_timeouts()
    if should_stop is None or not should_stop():
        outcome["resumed"] = resume_sagas(
            older_than=resume_after,
            inline=inline,
            should_stop=should_stop,
            exclude=frozenset(outcome["timed_out"]),
        )
    return outcome


class EmbeddedSagaRunner:
    """Runs :func:`sweep` (inline) every ``poll_interval`` seconds in a thread, until :meth:`stop`.

    ``on_pass`` is called with each pass's outcome (the command prints from it).
    A pass that raises is logged and retried at the next interval; a pass
    that meets a database fault is logged as such and counted
    (``orchestrix.faults``), and the next one waits a capped backoff more.
    """

    def __init__(
        self,
        *,
        poll_interval: float,
        on_pass: Callable[[dict[str, list[str]]], None] | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self.poll_interval = poll_interval
        self.on_pass = on_pass
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Sagas run (resumed or timed out) and process deadlines fired since the start.
        self.ran = 0
        self.fired = 0
        self.errors = 0
        self._faults = FaultRetry(
            FaultComponent.SAGA_SWEEP,
            "sweep",
            using=str(orchestrix_settings.DATABASE),
            observability=configured_observability(),
            should_stop=self.should_stop,
        )

    def should_stop(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def run_pass(self) -> dict[str, list[str]]:
        """One sweep, in this thread; errors are logged and counted, not raised."""
        try:
            outcome = sweep(inline=True, should_stop=self.should_stop)
        except Exception as error:
            if not self._faults.absorb(error):
                self.errors += 1
                logger.exception("the saga sweep failed; tried again in %s s", self.poll_interval)
                drop_broken_connections()
            return {"timed_out": [], "deadlines": [], "resumed": []}
        self._faults.succeeded()
        self.ran += len(set(outcome["timed_out"]) | set(outcome["resumed"]))
        self.fired += len(outcome["deadlines"])
        if self.on_pass is not None:
            self.on_pass(outcome)
        return outcome

    def run(self) -> None:
        """Sweep until :meth:`stop`, in this thread."""
        try:
            while not self.should_stop():
                self.run_pass()
                self._stop.wait(self.poll_interval)
        finally:
            connections.close_all()

    def start(self) -> EmbeddedSagaRunner:
        """Run :meth:`run` in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="orchestrix-sagas", daemon=True)
        self._thread.start()
        return self

    def stop(self, wait: float | None = None) -> None:
        """Stop after the step in hand (thread- and signal-safe); wait up to ``wait`` seconds."""
        self._stop.set()
        if wait is not None and self._thread is not None:
            self._thread.join(wait)
