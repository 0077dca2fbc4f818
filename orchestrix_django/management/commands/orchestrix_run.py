"""``python manage.py orchestrix_run``: the in-process runner (the embedded default, no broker).

The runner keeps the configured projections up to date from this process:
it catches each one up (:func:`~orchestrix_django.projections.runner.catch_up`, one
transaction per batch), then waits until it is woken, either by the
``events_committed`` signal of a commit in this process or by the poll
interval (for events other processes write), and goes again. Projections
take turns of a few batches each, so one long catch-up (a new projection
building from the start of the log) does not hold the others back, and a
failing projection never stops the others.

SIGINT or SIGTERM stops it after the batch in hand (which commits whole),
with a summary and exit code 0; a second signal stops it at once, and the
database rolls the unfinished batch back. ``--once`` catches everything up
and exits: 0 when every projection is healthy, 1 (saying what to do) when
one is stopped at a failing event, unhealthy, or failed.

The loop is :class:`~orchestrix_django.projections.embedded.EmbeddedRunner`,
usable without the command.

When ``ORCHESTRIX["SAGAS"]`` (or a process manager) is configured and no
``--projection`` is chosen, the command also runs the sagas in this process
(:class:`~orchestrix_django.sagas.sweep.EmbeddedSagaRunner`, a thread of its
own): every poll interval it times out overdue sagas, fires the due deadlines
of process managers and runs the sagas nobody runs (PENDING ones started with
``WAKE_UP = "none"``, and those whose runner died). A stop lets the saga in
hand finish its step. ``--once`` does one such pass after the catch-up;
``--no-sagas`` leaves sagas alone.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from orchestrix_django.management.arguments import positive_float, positive_int
from orchestrix_django.management.console import (
    GracefulStop,
    count,
    find_projection,
    stopped_advice,
)
from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.projections.embedded import EmbeddedRunner, Turn
from orchestrix_django.projections.registry import projections
from orchestrix_django.projections.runner import FAILURE_STOPS, CatchUpResult, StopReason
from orchestrix_django.projections.status import projection_status
from orchestrix_django.settings import orchestrix_settings

__all__ = ["Command"]

#: At verbosity 1, a projection catching up reports at most this often, in seconds.
PROGRESS_SECONDS = 10.0


class Command(BaseCommand):
    """``orchestrix_run``: run the projections in this process (see the module docs)."""

    help = (
        "Run the configured projections in this process, without a broker: catch each one "
        "up from its checkpoint, then wait for new events (a commit in this process wakes "
        "the runner at once; events written by other processes are found by polling). "
        "SIGINT/SIGTERM stops it after the batch in hand, with a summary and exit code 0; "
        "a second signal stops it at once, rolling that batch back. With --once: catch up "
        "and exit, with exit code 1 and what to do when a projection is stopped or failing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's options."""
        parser.add_argument(
            "--projection",
            action="append",
            dest="projection_ids",
            metavar="ID",
            help="Run only this projection (repeat the option for several). "
            "Default: every projection of ORCHESTRIX['PROJECTIONS'].",
        )
        parser.add_argument(
            "--once",
            action="store_true",
            help="Catch every projection up to the head of the log, then exit: 0 when all "
            "are healthy, 1 when one is stopped at a failing event, unhealthy or failing "
            "(or a signal stopped the run first). For cron jobs, deploy scripts and CI.",
        )
        parser.add_argument(
            "--poll-interval",
            type=positive_float,
            metavar="SECONDS",
            help="Seconds between two looks for events written by other processes "
            "(default: ORCHESTRIX['POLL_INTERVAL'], 1.0). Commits in this process wake "
            "the runner at once.",
        )
        parser.add_argument(
            "--batches-per-turn",
            type=positive_int,
            default=10,
            metavar="N",
            help="Batches a projection runs before the next one gets its turn, so that "
            "one long catch-up does not hold the others back (default: 10).",
        )
        parser.add_argument(
            "--no-sagas",
            action="store_true",
            help="Do not run sagas (they run, with ORCHESTRIX['SAGAS'] configured, unless "
            "--projection is given).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the loop (or one catch-up with --once)."""
        self.verbosity = int(options["verbosity"])
        poll_interval = options["poll_interval"] or float(orchestrix_settings.POLL_INTERVAL)
        saga_runner = self._saga_runner(options, poll_interval)
        selected = self._select(options["projection_ids"], sagas=saga_runner is not None)
        self._reported: dict[str, str] = {}
        self._pending: dict[str, tuple[int, int, float]] = {}
        self._last_line: dict[str, float] = {}
        self._started = time.monotonic()
        self._by_id = {p.projection_id: p for p in selected}
        self._live_advice = not options["once"]
        runner = EmbeddedRunner(
            selected,
            poll_interval=poll_interval,
            batches_per_turn=options["batches_per_turn"],
            on_turn=self._print_turn,
        )
        stop = GracefulStop(self.stderr)
        stop.on_stop.append(runner.stop)
        if saga_runner is not None:
            stop.on_stop.append(saga_runner.stop)
        ids = ", ".join(p.projection_id for p in selected)
        started = time.perf_counter()
        with stop.install():
            if options["once"]:
                self._say(
                    1, f"orchestrix_run --once: catching up {len(selected)} projection(s) ({ids})"
                )
                last = runner.catch_up_all()
                if saga_runner is not None and not stop():
                    saga_runner.run_pass()
                self._summary(runner, selected, stop, started)
                self._saga_summary(saga_runner)
                self._exit_status(selected, last, stop)
                return
            self._say(
                1,
                f"orchestrix_run: running {len(selected)} projection(s) ({ids}) in this "
                f"process; polling every {poll_interval:g} s for events of other processes. "
                "Stop with Ctrl-C or SIGTERM (the batch in hand finishes first).",
            )
            if saga_runner is not None:
                saga_runner.start()
            try:
                runner.run()
            finally:
                if saga_runner is not None:
                    saga_runner.stop(wait=60)
            self._summary(runner, selected, stop, started)
            self._saga_summary(saga_runner)

    # -- helpers --------------------------------------------------------------------

    def _saga_runner(self, options: dict[str, Any], poll_interval: float) -> Any:
        """The saga runner, unless sagas are left out (no saga, --no-sagas, --projection)."""
        if options["no_sagas"] or options["projection_ids"]:
            return None
        from orchestrix_django.sagas.sweep import EmbeddedSagaRunner, has_saga_work

        if not has_saga_work():
            return None
        return EmbeddedSagaRunner(poll_interval=poll_interval, on_pass=self._print_saga_pass)

    def _print_saga_pass(self, outcome: dict[str, list[str]]) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        for action, saga_ids in outcome.items():
            if saga_ids:
                what = action.replace("_", " ")
                self._say(1, f"{stamp} sagas {what}: {', '.join(saga_ids)}")

    def _saga_summary(self, saga_runner: Any) -> None:
        if saga_runner is None or self.verbosity < 1:
            return
        line = (
            f"  sagas: {count(saga_runner.ran)} run, "
            f"{count(saga_runner.fired)} process deadline(s) fired"
        )
        if saga_runner.errors:
            line += f", {saga_runner.errors} failed pass(es) (see the log)"
        self.stdout.write(line)
        self.stdout.flush()

    def _select(self, projection_ids: list[str] | None, *, sagas: bool) -> list[DjangoProjection]:
        if projection_ids:
            return [find_projection(pid) for pid in dict.fromkeys(projection_ids)]
        configured = list(projections().values())
        if not configured and not sagas:
            raise CommandError(
                "no projection is configured: list your DjangoProjection objects in "
                "ORCHESTRIX['PROJECTIONS'] (dotted paths), then run this command again."
            )
        return configured

    def _say(self, level: int, message: str) -> None:
        if self.verbosity >= level:
            self.stdout.write(message)
            self.stdout.flush()

    def _warn(self, message: str) -> None:
        self.stderr.write(message)
        self.stderr.flush()

    def _print_turn(self, turn: Turn) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        pid = turn.projection_id
        if turn.error is not None:
            message = f"{type(turn.error).__name__}: {turn.error}"
            if self._reported.get(pid) != message or self.verbosity >= 2:
                self._reported[pid] = message
                hint = (
                    " Is the database reachable and migrated (python manage.py migrate)?"
                    if isinstance(turn.error, DatabaseError)
                    else ""
                )
                self._warn(
                    f"{stamp} {pid} failed: {message}. The batch in hand was rolled back; "
                    f"the other projections go on.{hint}"
                )
            return
        result = turn.result
        assert result is not None
        if result.faults:
            self._warn(
                f"{stamp} {pid}: rode out {result.faults} database fault(s) (lost connection, "
                "restart, deadlock): each rolled its batch back, which ran again once the "
                "database answered. Nothing to do."
            )
        self._print_applied(stamp, turn, result)
        state = result.stopped if result.stopped is not StopReason.ASKED_TO_STOP else None
        if state is None:
            self._reported.pop(pid, None)
            return
        if self._reported.get(pid) == state or not self._live_advice:
            return
        self._reported[pid] = state
        status = projection_status(pid)
        advice = stopped_advice(self._by_id[pid], status)
        if advice is None:
            return
        if state in FAILURE_STOPS or not status.healthy:
            self._warn(f"{stamp} {advice}")
        else:
            self._say(1, f"{stamp} {advice}")

    def _print_applied(self, stamp: str, turn: Turn, result: CatchUpResult) -> None:
        """One line per turn at verbosity 2 (3: idle turns too); at 1, sums.

        At verbosity 1 the turns of a long catch-up are summed into a line
        every PROGRESS_SECONDS, and one when the projection reaches the head.
        """
        pid = turn.projection_id
        if self.verbosity >= 2:
            if result.applied or self.verbosity >= 3:
                line = self._applied_line(result.applied, result.batches, turn.seconds, result)
                self._say(2, f"{stamp} {pid}: {line}")
            return
        applied, batches, seconds = self._pending.get(pid, (0, 0, 0.0))
        applied, batches, seconds = (
            applied + result.applied,
            batches + result.batches,
            seconds + turn.seconds,
        )
        now = time.monotonic()
        due = result.lag == 0 or result.stopped is not None
        if applied and (due or now - self._last_line.get(pid, self._started) >= PROGRESS_SECONDS):
            self._say(1, f"{stamp} {pid}: {self._applied_line(applied, batches, seconds, result)}")
            self._last_line[pid] = now
            applied, batches, seconds = 0, 0, 0.0
        self._pending[pid] = (applied, batches, seconds)

    @staticmethod
    def _applied_line(applied: int, batches: int, seconds: float, result: CatchUpResult) -> str:
        return (
            f"applied {count(applied)} event(s) in {batches} "
            f"batch{'es' if batches != 1 else ''} ({seconds:.2f} s), "
            f"position {count(result.position)}, lag {count(result.lag)}"
        )

    def _summary(
        self,
        runner: EmbeddedRunner,
        selected: list[DjangoProjection],
        stop: GracefulStop,
        started: float,
    ) -> None:
        if self.verbosity < 1:
            return
        how = stop.reason or ("caught up" if runner.passes else "stopped")
        self.stdout.write(
            f"orchestrix_run: {how} after {runner.passes} pass(es) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        for projection in selected:
            pid = projection.projection_id
            line = f"  {pid}: {count(runner.applied.get(pid, 0))} event(s) applied"
            try:
                status = projection_status(pid)
            except DatabaseError as error:
                line += f" (status unavailable: {error})"
            else:
                line += (
                    f", position {count(status.position)}/{count(status.head)} "
                    f"(lag {count(status.lag)})"
                )
                if status.paused:
                    line += ", paused"
                if not status.healthy:
                    line += f", unhealthy: {status.last_error}"
            self.stdout.write(line)
        self.stdout.flush()

    def _exit_status(
        self, selected: list[DjangoProjection], last: dict[str, Turn], stop: GracefulStop
    ) -> None:
        """--once: exit code 1, with what to do, when a projection needs an operator."""
        problems: list[str] = []
        for projection in selected:
            pid = projection.projection_id
            turn = last.get(pid)
            if turn is not None and turn.error is not None:
                problems.append(
                    f"{pid} failed: {type(turn.error).__name__}: {turn.error}. Its batch was "
                    "rolled back; fix the cause (is the database reachable and migrated?) and "
                    "run again."
                )
                continue
            status = projection_status(pid)
            advice = stopped_advice(projection, status)
            if advice is None:
                continue
            if status.healthy and not status.parked:
                self._say(1, advice)  # paused or retired: a note, not a failure
            else:
                problems.append(advice)
        if stop():
            problems.append(
                f"interrupted ({stop.reason}) before every projection caught up: "
                "run the command again to finish."
            )
        if problems:
            raise CommandError(f"{len(problems)} problem(s):\n" + "\n".join(problems), returncode=1)
