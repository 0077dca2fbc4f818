"""``python manage.py orchestrix_snapshot --aggregate bank.models.Account``: take snapshots.

Loads every aggregate of a type through
:class:`~orchestrix.core.eventsourcing.aggregate.AggregateRepository` (from
its latest snapshot, when it has a usable one) and stores a snapshot at its
current version. The streams of a type are those the repository labelled
with the class name when it saved them (``--aggregate-type`` when they carry
another label). ``--min-events N`` snapshots only the aggregates with at
least N events since their latest usable snapshot (all their events when
they have none): by default every aggregate whose snapshot is not current.
A snapshot of another ``snapshot_version`` of the class is not usable, so
raising ``snapshot_version`` and running this command renews them all.

Streams are read in keyset pages (memory stays bounded); each snapshot is
stored on its own, so an interrupted run keeps the snapshots it took. An
aggregate that does not load is reported and skipped; the command then
exits 1 after the others.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from orchestrix.core.eventsourcing.aggregate import (
    SNAPSHOT_VERSION_KEY,
    AggregateRepository,
    AggregateRoot,
)
from orchestrix_django.management.arguments import (
    add_database,
    add_progress_every,
    chosen_database,
    positive_int,
)
from orchestrix_django.management.console import GracefulStop, Progress, count
from orchestrix_django.models import SnapshotRecord, StreamRecord
from orchestrix_django.projections.runner import CatchUpResult
from orchestrix_django.storage.events import DjangoEventStore

__all__ = ["Command"]

#: Streams read (and snapshots looked up) per query.
PAGE = 500

#: Failed aggregates named in the final message.
FAILURES_SHOWN = 5


class Command(BaseCommand):
    """``orchestrix_snapshot``: snapshot the aggregates of a type (see the module docs)."""

    help = (
        "Take a snapshot of every aggregate of a type (the streams labelled with its class "
        "name), or only of those with at least --min-events events since their latest usable "
        "snapshot. Each aggregate is loaded through AggregateRepository (from its snapshot "
        "when usable) and its snapshot stored at its current version. An aggregate that does "
        "not load is reported and skipped, and the command exits 1 after the others."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        parser.add_argument(
            "--aggregate",
            required=True,
            metavar="DOTTED.PATH",
            help="The AggregateRoot subclass, e.g. bank.models.Account.",
        )
        parser.add_argument(
            "--aggregate-type",
            metavar="LABEL",
            help="The label of its streams, if not the class name (the admin's stream list "
            "shows the labels).",
        )
        parser.add_argument(
            "--min-events",
            type=positive_int,
            default=1,
            metavar="N",
            help="Only aggregates with at least N events since their latest usable snapshot "
            "(default: 1, every aggregate whose snapshot is not current).",
        )
        add_database(parser)
        add_progress_every(parser, f"pages of {PAGE} streams")

    def handle(self, *args: Any, **options: Any) -> None:
        """Snapshot the aggregates that need it, page by page."""
        verbosity = int(options["verbosity"])
        aggregate_class = _aggregate_class(options["aggregate"])
        label = options["aggregate_type"] or aggregate_class.__name__
        using = chosen_database(options)
        minimum: int = options["min_events"]
        store = DjangoEventStore(using)
        repository: AggregateRepository[AggregateRoot] = AggregateRepository(store)
        streams = StreamRecord.objects.using(using).filter(aggregate_type=label)
        total = streams.count()
        if total == 0:
            raise CommandError(
                f"no stream is labelled {label!r}: nothing to snapshot. AggregateRepository "
                "labels streams with the aggregate's class name when it saves them; pass "
                "--aggregate-type if yours carry another label (the admin's stream list "
                "shows them)."
            )
        progress = Progress(
            self.stdout,
            label,
            unit="stream",
            verb="snapshotted",
            every=options["progress_every"],
        )
        taken = current = seen = pages = 0
        failures: list[str] = []
        after = ""
        interrupted = False
        stop = GracefulStop(self.stderr)
        with stop.install():
            while True:
                if stop():
                    interrupted = True
                    break
                page = list(
                    streams.filter(stream_id__gt=after)
                    .order_by("stream_id")
                    .values_list("stream_id", "version")[:PAGE]
                )
                if not page:
                    break
                covered = _covered_versions(using, aggregate_class, [sid for sid, _ in page])
                for stream_id, version in page:
                    if version - covered.get(stream_id, 0) < minimum:
                        current += 1
                        continue
                    try:
                        aggregate = repository.load(aggregate_class, stream_id)
                        store.save_snapshot(aggregate.to_snapshot())
                    except Exception as error:  # one broken aggregate must not stop the rest
                        failures.append(f"{stream_id}: {type(error).__name__}: {error}")
                        continue
                    taken += 1
                seen += len(page)
                pages += 1
                after = page[-1][0]
                if verbosity >= 1:
                    progress.update(CatchUpResult(label, taken, pages, seen, total))
        progress.finish()
        done = (
            f"{count(taken)} snapshot(s) of {label} taken, {count(current)} aggregate(s) "
            f"skipped (fewer than {minimum} event(s) since their snapshot)"
        )
        if interrupted:
            raise CommandError(
                f"interrupted after {count(seen)} of {count(total)} stream(s): {done}. Run it "
                "again to go on (aggregates with a current snapshot are skipped)."
            )
        if failures:
            shown = "\n".join(f"  {failure}" for failure in failures[:FAILURES_SHOWN])
            more = (
                f"\n  … and {len(failures) - FAILURES_SHOWN} more"
                if len(failures) > FAILURES_SHOWN
                else ""
            )
            raise CommandError(
                f"{count(len(failures))} aggregate(s) could not be loaded:\n{shown}{more}\n"
                f"{done}. Fix the aggregate class (a missing _when_ method?) or the events "
                "(orchestrix_verify finds undecodable ones), then run the command again."
            )
        if verbosity >= 1:
            self.stdout.write(f"{done[0].upper()}{done[1:]}.")


def _aggregate_class(path: str) -> type[AggregateRoot]:
    try:
        found = import_string(path)
    except ImportError as error:
        raise CommandError(
            f"cannot import {path!r} ({error}): give the dotted path of an AggregateRoot "
            "subclass, e.g. bank.models.Account."
        ) from None
    if not isinstance(found, type) or not issubclass(found, AggregateRoot):
        raise CommandError(
            f"{path!r} is {found!r}, not an AggregateRoot subclass: give the dotted path of "
            "the aggregate class."
        )
    return found


def _covered_versions(
    using: str, aggregate_class: type[AggregateRoot], stream_ids: list[str]
) -> dict[str, int]:
    """The version of each stream's latest snapshot that this class can use."""
    rows = (
        SnapshotRecord.objects.using(using)
        .filter(aggregate_id__in=stream_ids, aggregate_type=aggregate_class.snapshot_type())
        .values_list("aggregate_id", "version", "state")
    )
    return {
        aggregate_id: int(version)
        for aggregate_id, version, state in rows
        if isinstance(state, dict)
        and state.get(SNAPSHOT_VERSION_KEY) == aggregate_class.snapshot_version
    }
