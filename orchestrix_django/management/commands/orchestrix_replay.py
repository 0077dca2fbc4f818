"""``python manage.py orchestrix_replay <projection>``: rebuild a read model in place.

Clears the projection's read model (its ``on_reset`` hooks) and checkpoint in
one transaction (:func:`~orchestrix_django.projections.control.reset_projection`),
then catches up from the start of the log with a progress display. Readers
see an incomplete read model until it has caught up; ``orchestrix_rebuild``
builds a new version beside the live one instead, with no downtime.

SIGINT/SIGTERM stops the replay after the batch in hand: the read model is
consistent with the checkpoint, and ``orchestrix_run`` (or a Celery worker)
finishes the catch-up later without starting over.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrix_django.management.arguments import add_batch_size, add_no_input, add_progress_every
from orchestrix_django.management.console import (
    GracefulStop,
    Progress,
    confirm,
    count,
    find_projection,
    log_start,
    stopped_advice,
)
from orchestrix_django.projections.control import reset_projection
from orchestrix_django.projections.definition import DjangoProjection, batch_size_override
from orchestrix_django.projections.runner import CatchUpResult, StopReason, catch_up
from orchestrix_django.projections.status import projection_status
from orchestrix_django.storage.events import DjangoEventStore

__all__ = ["Command"]


class Command(BaseCommand):
    """``orchestrix_replay``: reset a projection and catch it up (see the module docs)."""

    help = (
        "Rebuild a projection's read model from the whole event log: clear it (the "
        "projection's on_reset hooks) and its checkpoint, then catch up from the first "
        "event, showing progress and events/s. Readers see an incomplete read model until "
        "it has caught up; for a rebuild without downtime, declare a new version of the "
        "projection and use orchestrix_rebuild. Ctrl-C/SIGTERM stops after the batch in "
        "hand (orchestrix_run finishes the catch-up later)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        parser.add_argument(
            "projection_id",
            metavar="PROJECTION",
            help="The id of a projection of ORCHESTRIX['PROJECTIONS'].",
        )
        add_no_input(parser, "(the read model is cleared without asking)")
        add_batch_size(
            parser,
            "Events applied per transaction during the replay (default: the "
            "projection's batch_size, else ORCHESTRIX['PROJECTION_BATCH_SIZE']).",
        )
        add_progress_every(parser, "batches")

    def handle(self, *args: Any, **options: Any) -> None:
        """Reset, then catch up with progress."""
        verbosity = int(options["verbosity"])
        projection = find_projection(options["projection_id"])
        pid = projection.projection_id
        status = projection_status(pid)
        confirm(
            f"This clears the read model of projection {pid!r} (its reset hooks) and its "
            f"checkpoint (position {count(status.position)}), then rebuilds it from the "
            f"{count(status.head)} position(s) of the event log. Until it has caught up, "
            "readers see an incomplete read model.",
            interactive=options["interactive"],
        )
        stop = GracefulStop(self.stderr)
        with stop.install(), batch_size_override(projection, options["batch_size"]):
            try:
                reset_projection(projection)
            except Exception as error:
                raise CommandError(
                    f"the reset of {pid} failed: {type(error).__name__}: {error}. The read "
                    "model may be half cleared: fix the reset hook (or the database) and run "
                    "the replay again."
                ) from error
            start = log_start(0)
            head = DjangoEventStore().head_position()
            progress = Progress(self.stdout, pid, start=start, every=options["progress_every"])
            if verbosity >= 1:
                self.stdout.write(
                    f"Reset {pid}; replaying positions {count(start + 1)} to {count(head)} "
                    f"in batches of {projection.batch_size}."
                )
            result = catch_up(
                projection,
                should_stop=stop,
                on_batch=progress.update if verbosity >= 1 else None,
            )
            progress.finish()
        self._outcome(projection, result, progress, verbosity)

    def _outcome(
        self,
        projection: DjangoProjection,
        result: CatchUpResult,
        progress: Progress,
        verbosity: int,
    ) -> None:
        pid = projection.projection_id
        done = progress.summary(result.applied)
        if result.stopped is StopReason.ASKED_TO_STOP:
            raise CommandError(
                f"replay of {pid} interrupted at position {count(result.position)} of "
                f"{count(result.head)} after {done}. The read model is consistent up to that "
                "position; finish without starting over: "
                f"python manage.py orchestrix_run --once --projection {pid}"
            )
        if result.stopped is not None:
            advice = stopped_advice(projection, projection_status(pid))
            raise CommandError(
                f"replay of {pid} stopped ({result.stopped}) at position "
                f"{count(result.position)} of {count(result.head)} after {done}."
                + (f"\n{advice}" if advice else "")
            )
        if verbosity >= 1:
            self.stdout.write(
                f"Replayed {pid}: {done}; position {count(result.position)}, "
                f"lag {count(result.lag)}."
            )
