"""``python manage.py orchestrix_export``: the event log as CloudEvents JSON lines.

One event per line, in the order of the global log, each as stored: its id,
type, time, schema version, data and metadata untouched (neither decoded nor
upcast), and its place in the extension attributes ``streamid``,
``streamversion``, ``position`` and ``aggregatetype`` (see
:mod:`orchestrix_django.storage.cloudevents`). ``orchestrix_import`` reads it back
into another database, keeping ids, versions, order and metadata.

The export reads keyset pages of ``READ_CHUNK_SIZE`` rows up to the head of
the log as it was when the export started: events committed meanwhile are
left for the next export (``--after-position``). Appends commit in position
order (see :mod:`orchestrix_django.storage.events`), so no event below the head is
missed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from orchestrix_django.management.arguments import (
    add_database,
    add_progress_every,
    add_streams,
    chosen_database,
    non_negative_int,
)
from orchestrix_django.management.console import GracefulStop, Progress, count, log_start
from orchestrix_django.management.event_rows import rows_by_position
from orchestrix_django.projections.runner import CatchUpResult
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.cloudevents import row_cloudevent
from orchestrix_django.storage.events import DjangoEventStore

__all__ = ["Command"]


class Command(BaseCommand):
    """``orchestrix_export``: write events as CloudEvents JSON lines (see the module docs)."""

    help = (
        "Write the event log as CloudEvents JSON lines (one event per line, in log order), "
        "each event as stored: id, type, time, schema version, data and metadata, with its "
        "stream, version and position as extension attributes. orchestrix_import reads the "
        "file back into another database. Exports up to the head of the log at the start, "
        "with progress on stderr when writing to stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        parser.add_argument(
            "--output",
            "-o",
            default="-",
            metavar="FILE",
            help="The file to write (created or replaced); '-', the default, is stdout.",
        )
        add_streams(parser, "Export")
        parser.add_argument(
            "--after-position",
            type=non_negative_int,
            default=0,
            metavar="N",
            help="Export only events after position N (the last position of an earlier "
            "export: its last line's 'position').",
        )
        add_database(parser, "The database to export from")
        add_progress_every(parser, "chunks of READ_CHUNK_SIZE events")

    def handle(self, *args: Any, **options: Any) -> None:
        """Write the lines, then say what was written (on stderr when writing to stdout)."""
        output: str = options["output"]
        to_stdout = output == "-"
        # Stdout carries the events then: everything else goes to stderr.
        report = self.stderr if to_stdout else self.stdout
        if to_stdout:
            self._export(self.stdout, report, options)
            return
        path = Path(output)
        try:
            file = path.open("w", encoding="utf-8", newline="\n")
        except OSError as error:
            raise CommandError(f"cannot write {output}: {error.strerror or error}.") from None
        with file:
            self._export(file, report, options, path=path)

    def _export(
        self,
        out: TextIO | OutputWrapper,
        report: OutputWrapper,
        options: dict[str, Any],
        path: Path | None = None,
    ) -> None:
        verbosity = int(options["verbosity"])
        using = chosen_database(options)
        after: int = options["after_position"]
        streams: list[str] | None = options["streams"]
        head = DjangoEventStore(using).head_position()
        start = log_start(after, using)
        progress = Progress(
            report,
            "export",
            start=start,
            verb="exported",
            every=options["progress_every"],
        )
        exported = chunks = 0
        first: int | None = None
        last = after
        where = str(path) if path is not None else "stdout"
        stop = GracefulStop(self.stderr)
        with stop.install():
            for rows in rows_by_position(
                using,
                after=after,
                until=head,
                streams=streams,
                chunk=int(orchestrix_settings.READ_CHUNK_SIZE),
                labelled=True,
            ):
                lines: list[str] = []
                for row in rows:
                    # A JSON column holding something else than an object (a row
                    # written around the store) would not import: stop here.
                    data: object = row.encoded.data
                    metadata: object = row.encoded.metadata
                    if not isinstance(data, dict) or not isinstance(metadata, dict):
                        _write(out, "".join(lines))
                        progress.finish()
                        raise CommandError(
                            f"the event at position {row.position} (stream {row.stream_id!r}, "
                            f"version {row.version}) has stored data that is not a JSON object; "
                            f"{where} holds the events before it. Run orchestrix_verify to see "
                            "what is wrong, and repair or remove the row first."
                        )
                    lines.append(json.dumps(row_cloudevent(row), ensure_ascii=False) + "\n")
                _write(out, "".join(lines))
                exported += len(rows)
                chunks += 1
                last = int(rows[-1].position or 0)
                first = rows[0].position if first is None else first
                if verbosity >= 1:
                    progress.update(CatchUpResult("export", exported, chunks, last, head))
                if stop():
                    progress.finish()
                    raise CommandError(
                        f"export interrupted after {count(exported)} event(s): {where} holds "
                        f"the events up to position {last} (whole lines). Export the rest "
                        f"into another file with --after-position {last}, and import both "
                        "files in that order."
                    )
        progress.finish()
        if verbosity >= 1:
            span = f" (positions {first} to {last})" if first is not None else ""
            report.write(f"Exported {count(exported)} event(s){span} to {where}.")


def _write(out: TextIO | OutputWrapper, text: str) -> None:
    if isinstance(out, OutputWrapper):
        out.write(text, ending="")
    else:
        out.write(text)
