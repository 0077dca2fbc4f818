"""``python manage.py orchestrix_import FILE [FILE ...]``: append exported events to this database.

Reads the CloudEvents JSON lines ``orchestrix_export`` writes and appends
each stream's events with their original ids, versions, data and metadata,
in the order of the input (so the global log keeps the exported order),
through the event store's append path: its lock (no reader of the log skips
an imported event), optimistic locking (each append expects the stream at
the version before it) and the ``events_committed`` signal (projections and
subscribers see imported events like any others).

The input is read twice:

1. **The check** writes nothing. Every line must parse and decode in this
   project, each stream's versions must go on from what the database holds
   (or from the lines before), and no event may overwrite a different one.
   Any problem refuses the whole import: nothing is written, and the message
   lists the problems (the first 20) and what to do.
2. **The import**, in transactions of ``--batch-size`` events. Events already
   stored with the same id at the same stream and version are skipped, so the
   same import run again changes nothing, and an interrupted one is finished
   by running it again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Max

from orchestrix.core.common.exceptions import OrchestrixError
from orchestrix_django.management.arguments import (
    add_batch_size,
    add_database,
    add_progress_every,
    chosen_database,
)
from orchestrix_django.management.console import GracefulStop, Progress, count
from orchestrix_django.models import EventRecord
from orchestrix_django.projections.runner import CatchUpResult
from orchestrix_django.storage.cloudevents import parse_row
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.rows import EventRow

__all__ = ["Command"]

#: The check stops after this many problems (they are all listed).
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class _Line:
    """One event of the input and where it is (``file:line``)."""

    where: str
    record: EventRow


@dataclass
class _Stream:
    """What the check knows of one stream: the next version of the input and of the database."""

    next_new: int
    next_in_input: int | None = None


@dataclass
class _Check:
    """The first pass: what the import would do, and why it must not (``problems``)."""

    store: DjangoEventStore
    streams: dict[str, _Stream] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    last_position: int = 0
    new: int = 0
    present: int = 0

    def chunk(self, lines: list[_Line]) -> None:
        """Check a chunk of lines (two queries, whatever its size)."""
        using = self.store.using
        ids = [line.record.encoded.event_id for line in lines]
        stored = {
            event_id: (stream_id, version)
            for event_id, stream_id, version in EventRecord.objects.using(using)
            .filter(event_id__in=ids)
            .values_list("event_id", "stream_id", "version")
        }
        unseen = sorted({line.record.stream_id for line in lines} - self.streams.keys())
        if unseen:
            versions = dict(
                EventRecord.objects.using(using)
                .filter(stream_id__in=unseen)
                .values("stream_id")
                .annotate(version=Max("version"))
                .values_list("stream_id", "version")
            )
            for stream_id in unseen:
                self.streams[stream_id] = _Stream(next_new=int(versions.get(stream_id) or 0) + 1)
        for line in lines:
            self._line(line, stored)
            if len(self.problems) >= MAX_PROBLEMS:
                return

    def _line(self, line: _Line, stored: dict[str, tuple[str, int]]) -> None:
        record, where = line.record, line.where
        encoded, stream_id, version = record.encoded, record.stream_id, record.version
        state = self.streams[stream_id]
        what = f"{where}: {encoded.event_type} {encoded.event_id} (stream {stream_id!r} v{version})"
        if record.position is not None:
            if record.position <= self.last_position:
                self.problems.append(
                    f"{what} has position {record.position}, after position "
                    f"{self.last_position}: the lines are not in the order of the log (import "
                    "the files in the order they were exported)"
                )
            self.last_position = max(self.last_position, record.position)
        if state.next_in_input is not None and version != state.next_in_input:
            self.problems.append(
                f"{what} follows version {state.next_in_input - 1} of its stream in the "
                "input: versions are missing or repeated there"
            )
        state.next_in_input = version + 1
        try:
            self.store.codec.decode(encoded, stream_id=stream_id, version=version)
        except Exception as error:  # whatever stops it decoding here stops the import
            self.problems.append(
                f"{what} does not decode in this project ({error}); register its class "
                "(ORCHESTRIX['EVENT_MODULES']) and upcasters before importing"
            )
        found = stored.get(encoded.event_id)
        if found is not None:
            if found != (stream_id, version):
                self.problems.append(
                    f"{what}: an event with this id is stored already, as version {found[1]} "
                    f"of stream {found[0]!r}"
                )
            self.present += 1
            return
        if version < state.next_new:
            self.problems.append(
                f"{what}: the stream already has a different event at version {version} "
                f"(it holds {state.next_new - 1} here); the import never overwrites events"
            )
        elif version > state.next_new:
            self.problems.append(
                f"{what}: the stream holds {state.next_new - 1} event(s) here, so version "
                f"{version} cannot follow; import its earlier events first"
            )
        # Go on as if it were imported, so one problem is reported once, not per later line.
        state.next_new = version + 1
        self.new += 1


class Command(BaseCommand):
    """``orchestrix_import``: append exported events, refusing conflicts (see the module docs)."""

    help = (
        "Append the events of CloudEvents JSON lines written by orchestrix_export, with their "
        "ids, versions, data and metadata, in the order of the input, through the event "
        "store's append path. A first pass checks everything and writes nothing: an event "
        "that does not decode, a gap, or a stream that holds different events at those "
        "versions refuses the whole import. Events already stored (same id, stream and "
        "version) are skipped, so running an import again is harmless."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        parser.add_argument(
            "files",
            nargs="+",
            metavar="FILE",
            help="Files written by orchestrix_export, imported in the order given ('-': stdin).",
        )
        add_database(parser, "The database to import into")
        add_batch_size(
            parser,
            "Lines per transaction (default: 1000). The append lock is held for each "
            "transaction, so other writers wait for at most one batch.",
            default=1000,
        )
        add_progress_every(parser, "batches")

    def handle(self, *args: Any, **options: Any) -> None:
        """Check, then import."""
        files: list[str] = options["files"]
        spooled: str | None = None
        if "-" in files:
            if files.count("-") > 1:
                raise CommandError("'-' (stdin) can be given only once.")
            spooled = _spool_stdin()
        try:
            sources = [(name, Path(spooled if name == "-" and spooled else name)) for name in files]
            for name, path in sources:
                if not path.is_file():
                    raise CommandError(f"no file {name}: give the files orchestrix_export wrote.")
            self._import(sources, options)
        finally:
            if spooled is not None:
                os.unlink(spooled)

    def _import(self, sources: list[tuple[str, Path]], options: dict[str, Any]) -> None:
        verbosity = int(options["verbosity"])
        using = chosen_database(options)
        batch: int = options["batch_size"]
        store = DjangoEventStore(using)
        stop = GracefulStop(self.stderr)
        with stop.install():
            check = _Check(store)
            lines = 0
            for chunk in _chunks(sources, batch):
                check.chunk(chunk)
                lines += len(chunk)
                if len(check.problems) >= MAX_PROBLEMS:
                    break
                if stop():
                    raise CommandError("import interrupted during its check: nothing was written.")
            if check.problems:
                listed = "\n".join(f"  {problem}" for problem in check.problems)
                more = " (the first ones)" if len(check.problems) >= MAX_PROBLEMS else ""
                raise CommandError(
                    f"import refused, nothing was written: {len(check.problems)} problem(s) "
                    f"found{more}:\n{listed}\nAn export imports into a database that does not "
                    "hold other events in its streams (a new one, or one it was imported into "
                    "before). Fix the input or the database and run the import again."
                )
            if verbosity >= 1:
                self.stdout.write(
                    f"Checked {count(lines)} line(s): {count(check.new)} event(s) to import, "
                    f"{count(check.present)} stored already."
                )
            imported = self._append(store, sources, batch, lines, stop, verbosity, options)
        if verbosity >= 1:
            self.stdout.write(
                f"Imported {count(imported)} event(s) into database {using!r}; "
                f"{count(lines - imported)} were stored already (skipped)."
            )

    def _append(
        self,
        store: DjangoEventStore,
        sources: list[tuple[str, Path]],
        batch: int,
        total: int,
        stop: GracefulStop,
        verbosity: int,
        options: dict[str, Any],
    ) -> int:
        using = store.using
        progress = Progress(
            self.stdout, "import", unit="line", verb="imported", every=options["progress_every"]
        )
        imported = done = 0
        for batches, chunk in enumerate(_chunks(sources, batch), start=1):
            ids = [line.record.encoded.event_id for line in chunk]
            stored = set(
                EventRecord.objects.using(using)
                .filter(event_id__in=ids)
                .values_list("event_id", flat=True)
            )
            new = [line for line in chunk if line.record.encoded.event_id not in stored]
            # Consecutive lines of one stream are one append; the order of the
            # input is kept across streams, and so is the order of the log.
            with transaction.atomic(using=using):
                for stream_id, run in groupby(new, key=lambda line: line.record.stream_id):
                    self._append_run(store, stream_id, list(run), imported)
            imported += len(new)
            done += len(chunk)
            if verbosity >= 1:
                progress.update(CatchUpResult("import", imported, batches, done, total))
            if stop() and done < total:
                progress.finish()
                raise CommandError(
                    f"import interrupted after {count(done)} of {count(total)} line(s) "
                    f"({count(imported)} event(s) imported, each batch whole). Run the same "
                    "import again to finish: it skips the events stored already."
                )
        progress.finish()
        return imported

    @staticmethod
    def _append_run(store: DjangoEventStore, stream_id: str, run: list[_Line], before: int) -> None:
        first = run[0].record
        try:
            store.save_encoded(
                stream_id,
                [line.record.encoded for line in run],
                expected_version=first.version - 1,
                aggregate_type=first.aggregate_type or None,
            )
        except (OrchestrixError, ValueError) as error:
            raise CommandError(
                f"{run[0].where}: appending to stream {stream_id!r} failed: {error}. Another "
                f"writer changed the stream since the check? The {count(before)} event(s) of "
                "the batches before are imported, this batch is not: run the import again "
                "(it skips what is stored already)."
            ) from error


def _chunks(sources: list[tuple[str, Path]], size: int) -> Iterator[list[_Line]]:
    """The input's events in lists of ``size``; a line that does not parse ends the command."""
    chunk: list[_Line] = []
    for name, path in sources:
        with path.open(encoding="utf-8") as file:
            for number, text in enumerate(file, start=1):
                if not text.strip():
                    continue
                where = f"{name}:{number}"
                try:
                    record = parse_row(json.loads(text))
                except ValueError as error:
                    raise CommandError(
                        f"{where}: not an exported event ({error}). Import the files "
                        "orchestrix_export wrote, unchanged; nothing was written."
                        if not isinstance(error, json.JSONDecodeError)
                        else f"{where}: not a JSON line ({error}); nothing was written. Is the "
                        "file complete (an interrupted export ends with a whole line)?"
                    ) from None
                chunk.append(_Line(where, record))
                if len(chunk) >= size:
                    yield chunk
                    chunk = []
    if chunk:
        yield chunk


def _spool_stdin() -> str:
    """Copy stdin to a temporary file: the import reads its input twice."""
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", suffix=".jsonl", delete=False
    ) as spooled:
        shutil.copyfileobj(sys.stdin, spooled)
    return spooled.name
