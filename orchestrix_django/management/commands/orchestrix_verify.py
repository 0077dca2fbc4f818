"""``python manage.py orchestrix_verify``: check that every stored stream can be read back.

Reads the event table stream by stream, each in version order, in keyset
pages of ``READ_CHUNK_SIZE`` rows (memory stays bounded whatever the size of
the log), and checks for each event that

* its version is the next one of its stream: a stream's versions are 1, 2,
  3, … with no gap (``design.md`` §2: a stream with N events has version N);
* it decodes: its type is registered and its stored data fits its class;
* it upcasts to the latest schema version of its type;

and that the database's triggers keep the events append-only
(:func:`~orchestrix_django.storage.append_only.guard_problems`).

It lists every bad event (its stream, version, type and position, and the
reason) and exits 1, saying what to do about each kind of problem; 0 when
every event is fine. The final message lists the first :data:`LISTED` bad
events; any more are written to stderr as they are found, so memory stays
bounded however many there are. Nothing is written to the database.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrix.core.common.exceptions import (
    EventDecodeError,
    UnknownEventTypeError,
    UpcastError,
)
from orchestrix.core.serialization.event_codec import EventCodec
from orchestrix_django.management.arguments import (
    add_database,
    add_progress_every,
    add_streams,
    chosen_database,
)
from orchestrix_django.management.console import GracefulStop, Progress, count
from orchestrix_django.management.event_rows import rows_by_stream
from orchestrix_django.models import EventRecord
from orchestrix_django.projections.runner import CatchUpResult
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.append_only import guard_problems
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.rows import EventRow

__all__ = ["LISTED", "Command"]

#: How many bad events the final error message lists (the others go to stderr).
LISTED = 50

_GAP_ADVICE = (
    "Events are missing from the stream (deleted, or written around the event store). "
    "Restore them from a backup or an export (orchestrix_import adds the missing events "
    "and refuses to overwrite others); until then the aggregate does not load as it was."
)
_UNKNOWN_ADVICE = (
    "Register the event class: list the module that defines it in "
    "ORCHESTRIX['EVENT_MODULES'], or bring back the class that was renamed or removed "
    "(keep its `type`)."
)
_DECODE_ADVICE = (
    "The stored data does not fit the event class any more: give new fields defaults, or "
    "keep the old shape as an older schema_version of the class with an upcaster to the new one."
)
_UPCAST_ADVICE = (
    "Fix the upcaster chain of this event type (`python manage.py check` reports missing "
    "links); every read path upcasts, so this event cannot be read until it does."
)


class Command(BaseCommand):
    """``orchestrix_verify``: check versions, decoding and upcasting of every event."""

    help = (
        "Check every stored stream: versions contiguous from 1, every event decodes "
        "(its type is registered and its data fits its class) and upcasts to the latest "
        "schema version. Reads the log in chunks (bounded memory) with progress; writes "
        "nothing. Lists every bad event (its stream, version, type, position and what is "
        "wrong) and what to do, and exits 1; exits 0 when every event is fine."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        add_streams(parser, "Verify")
        add_database(parser, "The database to verify")
        add_progress_every(parser, "chunks of READ_CHUNK_SIZE events")

    def handle(self, *args: Any, **options: Any) -> None:
        """Read every event once, listing the bad ones."""
        verbosity = int(options["verbosity"])
        using = chosen_database(options)
        streams: list[str] | None = options["streams"]
        store = DjangoEventStore(using)
        events = EventRecord.objects.using(using)
        if streams:
            missing = sorted(
                set(streams)
                - set(
                    events.filter(stream_id__in=streams)
                    .values_list("stream_id", flat=True)
                    .distinct()
                )
            )
            if missing:
                raise CommandError(
                    f"no stored stream {', '.join(repr(s) for s in missing)}: check the ids "
                    "(the admin's stream list, or the API's /streams/, shows them)."
                )
            events = events.filter(stream_id__in=streams)
        total = events.count()
        progress = Progress(
            self.stdout, "verify", unit="event", verb="checked", every=options["progress_every"]
        )
        checked = chunks = stream_count = bad = 0
        listed: list[str] = []
        advice: dict[str, None] = {}  # what to do, once per kind of problem, in order
        previous: tuple[str, int] | None = None
        stop = GracefulStop(self.stderr)
        with stop.install():
            for rows in rows_by_stream(
                using, streams=streams, chunk=int(orchestrix_settings.READ_CHUNK_SIZE)
            ):
                for row in rows:
                    stream_id, version = row.stream_id, row.version
                    if previous is None or previous[0] != stream_id:
                        stream_count += 1
                        previous = (stream_id, 0)
                    problems = [
                        problem
                        for problem in (_gap(previous[1], version), _unreadable(store, row))
                        if problem is not None
                    ]
                    if problems:
                        line = (
                            f"bad event in stream {stream_id!r} at version {version} "
                            f"(type {row.encoded.event_type}, position {row.position}): "
                            + "; ".join(reason for reason, _ in problems)
                            + "."
                        )
                        bad += 1
                        if len(listed) < LISTED:
                            listed.append(line)  # in the final message
                        else:
                            self.stderr.write(line)  # the rest, as found: the list stays bounded
                        advice.update(dict.fromkeys(what_to_do for _, what_to_do in problems))
                    previous = (stream_id, version)
                    checked += 1
                chunks += 1
                if verbosity >= 1:
                    progress.update(CatchUpResult("verify", checked, chunks, checked, total))
                if stop():
                    progress.finish()
                    raise CommandError(
                        f"verification interrupted after {count(checked)} of {count(total)} "
                        f"event(s) ({count(stream_count)} stream(s)): "
                        + (_listing(bad, listed, advice) + "\n" if bad else "all fine so far. ")
                        + "Run it again to check everything, or pick streams with --stream."
                    )
        progress.finish()
        if bad:
            raise CommandError(
                f"{count(bad)} bad event(s) among the {count(checked)} checked "
                f"({count(stream_count)} stream(s)):\n" + _listing(bad, listed, advice)
            )
        if verbosity >= 1:
            self.stdout.write(
                f"Verified {count(checked)} event(s) in {count(stream_count)} stream(s) in "
                f"{progress.elapsed():.1f} s: versions contiguous, every event decodes and "
                "upcasts."
            )
        guard = guard_problems(using)
        if guard:
            raise CommandError(
                f"the events are fine, but the database does not keep them append-only: "
                f"{'; '.join(guard)}. Raw SQL could change history. Install the guard with: "
                "python manage.py orchestrix_append_only --install (or --sql for a DBA)."
            )


def _listing(bad: int, listed: list[str], advice: dict[str, None]) -> str:
    """The bad events found (the first ones; stderr has the rest) and what to do."""
    more = f"\n… and {count(bad - len(listed))} more, listed above." if bad > len(listed) else ""
    return "\n".join(listed) + more + "\nWhat to do:\n" + "\n".join(f"- {text}" for text in advice)


def _gap(previous: int, version: int) -> tuple[str, str] | None:
    """Why ``version`` cannot follow ``previous`` in its stream (0: the stream's first event)."""
    expected = previous + 1
    if version == expected:
        return None
    if version < expected:  # the unique (stream, version) constraint makes this impossible
        return f"version {version} comes again after version {previous}", _GAP_ADVICE
    missing = (
        f"version {expected} is missing"
        if version == expected + 1
        else f"versions {expected} to {version - 1} are missing"
    )
    if previous == 0:
        return f"the stream starts at version {version}, not 1: {missing}", _GAP_ADVICE
    return f"version {version} follows version {previous}: {missing}", _GAP_ADVICE


def _unreadable(store: DjangoEventStore, record: EventRow) -> tuple[str, str] | None:
    """Why the event of ``record`` cannot be read back as its current class, or None."""
    codec: EventCodec = store.codec
    try:
        event = codec.decode(
            record.encoded,
            stream_id=record.stream_id,
            version=record.version,
            position=record.position,
        )
    except UnknownEventTypeError:
        encoded = record.encoded
        return (
            f"no event class is registered for type {encoded.event_type!r} at schema "
            f"version {encoded.schema_version}",
            _UNKNOWN_ADVICE,
        )
    except EventDecodeError as error:
        return f"it does not decode: {error.detail}", _DECODE_ADVICE
    except Exception as error:  # any failure to decode is what this command reports
        return f"it does not decode: {type(error).__name__}: {error}", _DECODE_ADVICE
    upcasters = store.upcasters
    if upcasters is None:
        return None
    try:
        upcasters.upcast_to_latest(event, codec.registry)
    except UpcastError as error:
        return f"it does not upcast: {error}", _UPCAST_ADVICE
    except Exception as error:  # a broken upcaster raises anything
        return f"it does not upcast: {type(error).__name__}: {error}", _UPCAST_ADVICE
    return None
