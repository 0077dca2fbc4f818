"""``python manage.py orchestrix_demo``: the example project, from nothing to a browsable admin.

In order, it

1. migrates the database;
2. creates the demo superuser (``admin``, with a generated password it
   prints; an existing user keeps its password: the command says so);
3. generates a workload of a few hundred commands against the bank and the
   shop (:mod:`example_project.demo.workload`), some failing validation, some
   refused, some starting sagas that compensate; a second run adds another
   workload next to the first;
4. runs the sagas and the projections to completion: in this process in the
   embedded mode, or by waiting for the Celery workers in the Celery mode
   (``ORCHESTRIX_EXAMPLE_CELERY=1``: start ``celery -A example_project
   worker -B`` first);
5. prints a summary: streams, events, snapshots, each projection's position
   and lag, sagas by status;
6. serves the admin at the printed URL with Django's development server
   (unless ``--no-serve``), and, in the embedded mode, keeps running the
   projections and sagas in this process meanwhile, so that commands sent
   to the API show up in the admin. Ctrl-C stops it.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.db.models import Max
from django.utils import timezone

from example_project.demo.models import DemoRun
from example_project.demo.report import summarise
from example_project.demo.workload import SIZES, Tally, Workload
from orchestrix.core.execution.saga import SagaStatus
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.projections import (
    CatchUpResult,
    EmbeddedRunner,
    catch_up,
    projection_status,
    projections,
)
from orchestrix_django.sagas import EmbeddedSagaRunner, resume_sagas, sagas
from orchestrix_django.settings import orchestrix_settings

__all__ = ["Command"]

#: Saga statuses that still have work to do.
UNFINISHED = [SagaStatus.PENDING.value, SagaStatus.IN_PROGRESS.value, SagaStatus.COMPENSATING.value]


class Command(BaseCommand):
    """``orchestrix_demo`` (see the module docs)."""

    help = (
        "Run the example project's demo: migrate, create the demo admin user, generate a "
        "workload (hundreds of commands, some invalid, some sagas compensating), run the "
        "sagas and projections, print a summary, then serve the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's options."""
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="Stop after the summary instead of serving the admin.",
        )
        parser.add_argument(
            "--addrport",
            default="127.0.0.1:8000",
            help="Where the development server listens (runserver's addrport; "
            "default 127.0.0.1:8000).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=2024,
            help="Seed of the workload's random choices: the same seed, the same workload "
            "(default 2024).",
        )
        parser.add_argument(
            "--size",
            choices=sorted(SIZES),
            default="medium",
            help="How much to generate: small (about 200 commands), medium (about 700, "
            "the default), large (about 3000).",
        )
        parser.add_argument(
            "--username",
            default="admin",
            help="The demo superuser's name (default: admin).",
        )
        parser.add_argument(
            "--password",
            help="The demo superuser's password when it is created (default: generated and "
            "printed). An existing user's password is never changed.",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=300.0,
            metavar="SECONDS",
            help="Celery mode: how long to wait for the workers to finish the sagas and "
            "projections (default 300).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Run the demo (see the module docs)."""
        self.verbosity = int(options["verbosity"])
        celery = orchestrix_settings.WAKE_UP == "celery"
        database = settings.DATABASES["default"]
        base_url = self._base_url(options["addrport"])  # a bad --addrport fails before any work
        mode = (
            "Celery mode (the workers run sagas and projections)"
            if celery
            else "embedded mode (sagas and projections run in this process)"
        )
        self._say(f"Orchestrix demo, {mode}")
        self._say(f"database: {database['ENGINE'].rsplit('.', 1)[-1]} {database['NAME']}")

        self._step("1/5 migrating the database")
        call_command("migrate", interactive=False, verbosity=max(self.verbosity - 1, 0))

        self._step("2/5 the demo admin user")
        password = self._admin_user(options["username"], options["password"])

        self._step("3/5 generating the workload")
        with self._quiet_saga_failures():
            run, tally = self._workload(options["seed"], options["size"], run_sagas=not celery)

            self._step("4/5 running sagas and projections")
            if celery:
                self._wait_for_workers(options["wait"])
            else:
                self._run_in_process()
        run.finished_at = timezone.now()
        run.save(update_fields=["finished_at"])

        self._step("5/5 summary")
        self._report_tally(tally)
        for line in summarise(base_url).lines:
            self._say(f"  {line}")
        credentials = (
            f"user {options['username']!r}, password {password!r}"
            if password
            else f"user {options['username']!r}, with the password it already had"
        )
        if options["no_serve"]:
            keep_up = "" if celery else " and python manage.py orchestrix_run beside it"
            self._say(
                f"\nDone. Serve the admin with: python manage.py runserver {options['addrport']}"
                f"{keep_up} (then {base_url}/admin/, {credentials})"
            )
            return
        self._serve(options["addrport"], base_url, credentials, celery)

    # -- output ---------------------------------------------------------------

    def _say(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)
            self.stdout.flush()

    def _step(self, title: str) -> None:
        self._say(self.style.MIGRATE_HEADING(f"\n{title}"))

    @contextmanager
    def _quiet_saga_failures(self) -> Iterator[None]:
        """Within the block, a failing saga step logs no warning (unless -v 2 or more).

        The workload makes sagas fail on purpose, dozens of times: the
        summary counts them, and the admin shows each one.
        """
        saga_logger = logging.getLogger("orchestrix.core.execution.saga")
        if self.verbosity >= 2:
            yield
            return
        self._say("  (the steps that fail on purpose are not logged; -v 2 logs them)")
        level = saga_logger.level
        saga_logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            saga_logger.setLevel(level)

    # -- 2: the admin user ------------------------------------------------------

    def _admin_user(self, username: str, password: str | None) -> str | None:
        """Create the superuser; returns the password when it was set now."""
        users = get_user_model()
        if users.objects.filter(username=username).exists():
            self._say(
                f"  the user {username!r} exists already: its password is left unchanged "
                f"(set a new one with: python manage.py changepassword {username})"
            )
            return None
        password = password or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        self._say(f"  created the superuser {username!r} with the password {password!r}")
        return password

    # -- 3: the workload ----------------------------------------------------------

    def _workload(self, seed: int, size: str, *, run_sagas: bool) -> tuple[DemoRun, Tally]:
        previous = DemoRun.objects.aggregate(last=Max("number"))["last"] or 0
        if previous:
            self._say(
                f"  the demo data of {previous} earlier run(s) is there already: "
                f"this run (number {previous + 1}) adds more beside it"
            )
        run = DemoRun.objects.create(number=previous + 1, seed=seed, size=size)
        started = time.monotonic()

        def progress(done: int, planned: int, tally: Tally) -> None:
            self._say(
                f"  {done:>5} / ~{planned} commands: {tally.accepted} accepted, "
                f"{tally.invalid} failed validation, {tally.refused} refused, "
                f"{tally.sagas_started} sagas started"
            )

        workload = Workload(
            number=run.number,
            seed=seed,
            size=SIZES[size],
            run_sagas=run_sagas,
            on_progress=progress,
        )
        self._say(
            f"  run {run.number}, size {size}, seed {seed}"
            + ("; each saga runs as soon as it is started" if run_sagas else "")
        )
        tally = workload.run()
        self._say(f"  generated in {time.monotonic() - started:.1f} s")
        for field in ("commands", "accepted", "invalid", "refused", "sagas_started"):
            setattr(run, field, getattr(tally, field))
        run.save()
        return run, tally

    def _report_tally(self, tally: Tally) -> None:
        self._say(
            f"  commands     {tally.commands:>6}  ({tally.accepted} accepted, {tally.invalid} "
            f"failed validation and stored nothing, {tally.refused} refused by the domain)"
        )
        if tally.invalid_by_type:
            shown = ", ".join(f"{n} {name}" for name, n in tally.invalid_by_type.most_common())
            self._say(f"               invalid: {shown}")
        for name, errors in tally.invalid_examples[:2]:
            self._say(f"               e.g. {name}: {errors}")

    # -- 4: sagas and projections -----------------------------------------------------

    def _run_in_process(self) -> None:
        """Finish any saga left unfinished, then catch every projection up."""
        leftover = resume_sagas(inline=True, limit=10_000)
        if leftover:
            self._say(f"  finished {len(leftover)} saga(s) left unfinished")
        self._say(f"  sagas: {self._saga_counts()}")
        for projection in projections().values():
            started = time.monotonic()

            def batch(result: CatchUpResult) -> None:
                if self.verbosity >= 2:
                    self._say(
                        f"    {result.projection_id}: {result.applied} applied, lag {result.lag}"
                    )

            result = catch_up(projection, on_batch=batch)
            state = "" if result.stopped is None else f", stopped: {result.stopped}"
            self._say(
                f"  {projection.projection_id:<20} applied {result.applied:>5} event(s) in "
                f"{time.monotonic() - started:.1f} s, position {result.position}, "
                f"lag {result.lag}{state}"
            )

    def _saga_counts(self) -> str:
        rows = SagaStateRecord.objects.filter(saga_type__in=list(sagas())).values_list(
            "status", flat=True
        )
        counts: dict[str, int] = {}
        for status in rows:
            counts[status] = counts.get(status, 0) + 1
        return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"

    def _wait_for_workers(self, timeout: float) -> None:
        """Celery mode: wait until the workers finished the sagas and caught the projections up."""
        self._say(
            "  the Celery workers run them: waiting (start one with "
            "'celery -A example_project worker -B -l info' if none runs)"
        )
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            unfinished = SagaStateRecord.objects.filter(
                saga_type__in=list(sagas()), status__in=UNFINISHED
            ).count()
            lags = {pid: projection_status(pid).lag for pid in projections()}
            behind = sum(lags.values())
            if not unfinished and not behind:
                self._say(f"  done: sagas {self._saga_counts()}; every projection caught up")
                return
            line = f"  {unfinished} saga(s) unfinished, projections {behind} event(s) behind"
            if line != last:
                self._say(line)
                last = line
            if time.monotonic() >= deadline:
                self.stderr.write(
                    f"  gave up waiting after {timeout:g} s: is a Celery worker running, with "
                    "the same ORCHESTRIX_EXAMPLE_* settings? The summary shows where things stand."
                )
                return
            time.sleep(1.0)

    # -- 6: serving -------------------------------------------------------------------

    @staticmethod
    def _base_url(addrport: str) -> str:
        host, _, port = addrport.rpartition(":")
        if not host:
            host = "127.0.0.1"
        if host in ("0.0.0.0", "::", "[::]"):
            host = "127.0.0.1"  # listening everywhere: this machine is one of them
        if not port.isdigit():
            raise CommandError(f"--addrport must be PORT or HOST:PORT, got {addrport!r}")
        return f"http://{host}:{port}"

    def _serve(self, addrport: str, base_url: str, credentials: str, celery: bool) -> None:
        """Serve the admin; in the embedded mode, run projections and sagas beside it."""

        self._say(self.style.SUCCESS(f"\nThe admin: {base_url}/admin/  ({credentials})"))
        self._say(f"The command API: {base_url}/api/banking/ and {base_url}/api/orders/")
        runner: EmbeddedRunner | None = None
        saga_runner: EmbeddedSagaRunner | None = None
        thread: threading.Thread | None = None
        if not celery:
            poll = float(orchestrix_settings.POLL_INTERVAL)
            runner = EmbeddedRunner(list(projections().values()), poll_interval=poll)
            thread = threading.Thread(
                target=_run_closing_connections, args=(runner,), name="orchestrix-projections"
            )
            thread.daemon = True
            thread.start()
            saga_runner = EmbeddedSagaRunner(poll_interval=poll).start()
            self._say(
                "Projections and sagas keep running in this process: commands sent to the "
                "API show up in the admin within a second. Ctrl-C stops everything."
            )
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            if runner is not None:
                runner.stop()
            if saga_runner is not None:
                saga_runner.stop(wait=10)
            if thread is not None:
                thread.join(10)


def _run_closing_connections(runner: EmbeddedRunner) -> None:
    """The projection runner's thread: run until stopped, then close its connections."""
    try:
        runner.run()
    finally:
        connections.close_all()
