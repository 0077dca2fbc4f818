"""``python manage.py orchestrix_rebuild <new> --replace <old>``: a rebuild without downtime.

The new version of a projection (a second ``DjangoProjection`` with its own
id and tables, listed in ``ORCHESTRIX["PROJECTIONS"]`` beside the old one) is
caught up while the old one keeps serving; once it is at the head of the
log, readers of the read model are switched to it in one transaction and the
old one is paused (see :func:`~orchestrix_django.projections.rebuild.rebuild`).
Read-side code asks :func:`~orchestrix_django.projections.rebuild.active_projection`
which version to read.

Interrupted (SIGINT/SIGTERM, ``--timeout``) or stopped at a failing event,
nothing is switched: the old version still serves, and running the command
again continues where it stopped.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrix_django.management.arguments import (
    add_batch_size,
    add_no_input,
    add_progress_every,
    non_negative_int,
    positive_float,
)
from orchestrix_django.management.console import (
    GracefulStop,
    Progress,
    confirm,
    count,
    find_projection,
    log_start,
    stopped_advice,
)
from orchestrix_django.projections.definition import batch_size_override
from orchestrix_django.projections.rebuild import (
    RebuildError,
    RebuildResult,
    check_rebuild,
    rebuild,
)
from orchestrix_django.projections.runner import StopReason
from orchestrix_django.projections.status import projection_status

__all__ = ["Command"]


class Command(BaseCommand):
    """``orchestrix_rebuild``: build a new projection version, then switch to it."""

    help = (
        "Zero-downtime rebuild: catch up NEW (a new version of a projection, with its own "
        "tables, listed in ORCHESTRIX['PROJECTIONS'] beside the live one) while the live "
        "projection given with --replace keeps serving; once NEW is at the head of the "
        "log, switch the readers (orchestrix_django.projections.active_projection) to it "
        "and pause the old one, in one transaction. Interrupted or failing, nothing is "
        "switched and running the command again continues where it stopped. Switch back "
        "by swapping the two ids."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        parser.add_argument(
            "projection_id",
            metavar="NEW",
            help="The id of the new projection version (in ORCHESTRIX['PROJECTIONS']).",
        )
        parser.add_argument(
            "--replace",
            required=True,
            metavar="OLD",
            help="The id of the live projection the new one replaces (the one serving "
            "the read model now).",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Clear NEW's read model and checkpoint first and build it from the start "
            "of the log (default: continue from NEW's checkpoint).",
        )
        add_no_input(parser, "before building and switching")
        add_batch_size(
            parser,
            "Events applied per transaction while building (default: the "
            "projection's batch_size, else ORCHESTRIX['PROJECTION_BATCH_SIZE']).",
        )
        parser.add_argument(
            "--max-lag",
            type=non_negative_int,
            default=0,
            metavar="N",
            help="Switch once NEW is at most N events behind the head of the log "
            "(default: 0, fully caught up).",
        )
        parser.add_argument(
            "--timeout",
            type=positive_float,
            metavar="SECONDS",
            help="Give up (without switching) after this many seconds; running the command "
            "again continues. Default: no limit.",
        )
        add_progress_every(parser, "batches")

    def handle(self, *args: Any, **options: Any) -> None:
        """Build NEW, then switch to it."""
        verbosity = int(options["verbosity"])
        new = find_projection(options["projection_id"])
        old = find_projection(options["replace"])
        try:
            name = check_rebuild(new, old)
        except RebuildError as error:
            raise CommandError(str(error)) from None
        status = projection_status(new.projection_id)
        origin = (
            "from the start of the log (--reset clears its read model first)"
            if options["reset"]
            else f"from its checkpoint (position {count(status.position)} of {count(status.head)})"
        )
        confirm(
            f"This builds projection {new.projection_id!r} {origin} while "
            f"{old.projection_id!r} keeps serving read model {name!r}; once it has caught up, "
            f"readers of {name!r} switch to {new.projection_id!r} and {old.projection_id!r} "
            "is paused.",
            interactive=options["interactive"],
        )
        stop = GracefulStop(self.stderr)
        start = log_start(0 if options["reset"] else status.position)
        progress = Progress(
            self.stdout, new.projection_id, start=start, every=options["progress_every"]
        )
        with stop.install(), batch_size_override(new, options["batch_size"]):
            try:
                outcome = rebuild(
                    new,
                    replace=old,
                    reset=options["reset"],
                    max_lag=options["max_lag"],
                    timeout=options["timeout"],
                    should_stop=stop,
                    on_batch=progress.update if verbosity >= 1 else None,
                )
            except RebuildError as error:
                progress.finish()
                raise CommandError(str(error)) from None
            progress.finish()
        self._outcome(outcome, progress, verbosity, old.projection_id, options)

    def _outcome(
        self,
        outcome: RebuildResult,
        progress: Progress,
        verbosity: int,
        old_id: str,
        options: dict[str, Any],
    ) -> None:
        new_id = outcome.projection_id
        built = progress.summary(outcome.applied)
        last = outcome.last
        switched = outcome.switched
        if switched is not None:
            if verbosity >= 1:
                self.stdout.write(
                    f"Built {new_id}: {built}.\n"
                    f"Switched read model {switched.name!r} from {old_id} to {new_id} at "
                    f"position {count(switched.position)} (head {count(switched.head)}); "
                    f"{old_id} is paused.\n"
                    f"Remove {old_id} from ORCHESTRIX['PROJECTIONS'] (and drop its tables) in "
                    f"a later deploy; to switch back: python manage.py orchestrix_rebuild "
                    f"{old_id} --replace {new_id}"
                )
            return
        where = f"at position {count(last.position)} of {count(last.head)}"
        if outcome.stopped is StopReason.TIMED_OUT:
            raise CommandError(
                f"not switched: {new_id} is {where} after {built}, and --timeout "
                f"{options['timeout']:g} s has passed. {old_id} still serves. Run the command "
                "again to continue (or allow more time with --timeout, or some lag with "
                "--max-lag)."
            )
        if outcome.stopped is StopReason.ASKED_TO_STOP:
            raise CommandError(
                f"interrupted: {new_id} is {where} after {built}; nothing was switched and "
                f"{old_id} still serves. Run the same command again to continue where it stopped."
            )
        advice = stopped_advice(find_projection(new_id), projection_status(new_id))
        raise CommandError(
            f"not switched: {new_id} stopped ({outcome.stopped}) {where} after {built}; "
            f"{old_id} still serves." + (f"\n{advice}" if advice else "")
        )
