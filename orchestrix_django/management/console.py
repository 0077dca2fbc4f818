"""What the ``orchestrix_*`` commands share: stopping on signals, progress, advice.

* :class:`GracefulStop`: the first SIGINT/SIGTERM asks the command to stop
  after the batch in hand (each batch is one transaction, so it commits whole);
  a second one ends the process at once, and the database rolls the
  uncommitted batch back.
* :class:`Progress`: a progress line for long catch-ups (a redrawn bar on a
  terminal, a line every few batches otherwise) with position, percentage and
  events per second.
* :func:`find_projection`, :func:`confirm`, :func:`stopped_advice`: errors and
  questions that say what to do next.

The options the commands share are declared in
:mod:`orchestrix_django.management.arguments`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO

from django.core.management.base import CommandError, OutputWrapper
from django.db.models import Min, Q

from orchestrix_django.models import ActiveProjection, EventRecord
from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.projections.registry import get_projection, projections
from orchestrix_django.projections.runner import CatchUpResult
from orchestrix_django.projections.status import ProjectionStatus
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue

__all__ = [
    "GracefulStop",
    "Progress",
    "confirm",
    "count",
    "find_projection",
    "log_start",
    "shell_hint",
    "stopped_advice",
]

#: The signals that ask a command to stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Turns SIGINT/SIGTERM into a stop request, checked between batches.

    Call the object (it is a ``should_stop`` callable) to learn whether a
    stop was asked for. :meth:`install` installs the handlers for the
    duration of a ``with`` block, in the main thread only (a command run
    with ``call_command`` from another thread is stopped with :meth:`stop`).
    ``on_stop`` callables run when the stop is asked for (a runner waiting
    for events is woken with them).
    """

    def __init__(self, stderr: TextIO | OutputWrapper | None = None) -> None:
        self._stopped = threading.Event()
        self._stderr = stderr
        self.reason: str | None = None
        self.on_stop: list[Callable[[], None]] = []

    def __call__(self) -> bool:
        return self._stopped.is_set()

    def stop(self, reason: str = "asked to stop") -> None:
        """Ask for a stop (the batch in hand finishes first)."""
        if self.reason is None:
            self.reason = reason
        self._stopped.set()
        for callback in self.on_stop:
            callback()

    @contextmanager
    def install(self) -> Iterator[GracefulStop]:
        """Handle SIGINT and SIGTERM within the block (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
        for number in STOP_SIGNALS:
            signal.signal(number, self._handle)
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if self._stopped.is_set():
            # A second signal: the operator does not want to wait. Ending the
            # process drops its database connection, and with it the
            # uncommitted batch: committed batches and checkpoints stay.
            self._say(f"{name} again: stopping now; the batch in hand is rolled back.")
            os._exit(128 + number)
        self._say(
            f"{name} received: stopping after the batch in hand "
            f"(send {name} again to stop at once, rolling that batch back)."
        )
        self.stop(f"stopped by {name}")

    def _say(self, message: str) -> None:
        out = self._stderr if self._stderr is not None else sys.stderr
        out.write(message + "\n")
        out.flush()


class Progress:
    """A progress display for a catch-up: position/head, percentage, events per second.

    ``start`` is the position the catch-up started after (see :func:`log_start`):
    the percentage is that of the way from there to the head. On a terminal
    (``tty``) one line is redrawn with ``\\r`` (at most ten times a second);
    otherwise a line is written every ``every`` batches, so logs stay
    readable. :meth:`finish` ends the redrawn line.

    Other long jobs (verify, export, import) report through the same
    :class:`CatchUpResult` fields; ``unit`` and ``verb`` name what their
    "position" counts and what is done to the events (``"line"``, ``"imported"``).
    """

    def __init__(
        self,
        out: OutputWrapper,
        label: str,
        *,
        start: int = 0,
        tty: bool | None = None,
        every: int = 10,
        width: int = 30,
        unit: str = "position",
        verb: str = "applied",
    ) -> None:
        self.out = out
        self.label = label
        self.start = start
        self.unit = unit
        self.verb = verb
        self.tty = out.isatty() if tty is None else tty
        self.every = max(every, 1)
        self.width = width
        self.started = time.perf_counter()
        self._drawn = False
        self._last_draw = 0.0
        self._batches_since_line = 0

    def elapsed(self) -> float:
        """Seconds since the display was created."""
        return time.perf_counter() - self.started

    def rate(self, applied: int) -> float:
        """Events applied per second so far."""
        return applied / max(self.elapsed(), 1e-9)

    def summary(self, applied: int) -> str:
        """``4,500 event(s) in 1.4 s (3,120 events/s)``: what a finished job did."""
        seconds = self.elapsed()
        return (
            f"{count(applied)} event(s) in {seconds:.1f} s "
            f"({count(round(applied / max(seconds, 1e-9)))} events/s)"
        )

    def update(self, result: CatchUpResult) -> None:
        """Show the progress after a batch (the ``on_batch`` callback of ``catch_up``)."""
        if self.tty:
            now = time.perf_counter()
            if self._drawn and now - self._last_draw < 0.1 and result.position < result.head:
                return
            self._last_draw = now
            self.out.write("\r" + self.bar(result) + "\x1b[K", ending="")
            self.out.flush()
            self._drawn = True
            return
        self._batches_since_line += 1
        if self._batches_since_line >= self.every:
            self._batches_since_line = 0
            self.out.write(f"{self.label}: {self.describe(result)}")
            self.out.flush()

    def finish(self) -> None:
        """End the redrawn line (if one was drawn)."""
        if self._drawn:
            self.out.write("")
            self._drawn = False

    def bar(self, result: CatchUpResult) -> str:
        """``label [#####-----]  45%  4,500/10,000  3,120 events/s``."""
        fraction = self.fraction(result)
        filled = round(fraction * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        return (
            f"{self.label} [{bar}] {fraction:4.0%}  {count(result.position)}/"
            f"{count(result.head)}  {count(round(self.rate(result.applied)))} events/s"
        )

    def describe(self, result: CatchUpResult) -> str:
        """``position 4,500/10,000 (45%), 4,500 events applied, 3,120 events/s``."""
        return (
            f"{self.unit} {count(result.position)}/{count(result.head)} "
            f"({self.fraction(result):.0%}), {count(result.applied)} events {self.verb}, "
            f"{count(round(self.rate(result.applied)))} events/s"
        )

    def fraction(self, result: CatchUpResult) -> float:
        """How much of the way from ``start`` to the head is done (0.0 to 1.0)."""
        total = result.head - self.start
        if total <= 0:
            return 1.0
        return min(max((result.position - self.start) / total, 0.0), 1.0)


def log_start(after: int, using: str | None = None) -> int:
    """The position before the first stored event after ``after`` (the start of a catch-up).

    Positions need not start at 1 (nor be contiguous): a progress percentage
    counts from here, not from 0. ``using``: the database (default: ORCHESTRIX's).
    """
    using = using or str(orchestrix_settings.DATABASE)
    first = (
        EventRecord.objects.using(using)
        .filter(position__gt=after)
        .aggregate(first=Min("position"))["first"]
    )
    return after if first is None else int(first) - 1


def count(number: int) -> str:
    """``12,345``."""
    return f"{number:,}"


def find_projection(projection_id: str) -> DjangoProjection:
    """The configured projection ``projection_id``, or a CommandError listing the ids."""
    try:
        return get_projection(projection_id)
    except KeyError:
        known = ", ".join(sorted(projections()))
        if not known:
            raise CommandError(
                f"unknown projection {projection_id!r}: no projection is configured. "
                "List your DjangoProjection objects in ORCHESTRIX['PROJECTIONS'] (dotted paths)."
            ) from None
        raise CommandError(
            f"unknown projection {projection_id!r}. Configured projections: {known}. "
            "(New ones must be listed in ORCHESTRIX['PROJECTIONS'].)"
        ) from None


def confirm(question: str, *, interactive: bool) -> None:
    """Ask ``question``; anything but "yes" (or no terminal to ask on) cancels with CommandError."""
    if not interactive:
        return
    try:
        answer = input(f"{question}\nType 'yes' to continue, or 'no' to cancel: ")
    except EOFError:
        raise CommandError(
            "cancelled: no answer (standard input is closed). Nothing was changed; "
            "pass --no-input to run without asking."
        ) from None
    if answer.strip().lower() != "yes":
        raise CommandError("cancelled: nothing was changed.")


def shell_hint(function: str, *arguments: Any) -> str:
    """A ``python manage.py shell -c`` line calling a projection operation ``<function>``."""
    args = ", ".join(
        f"get_projection({a.projection_id!r})" if isinstance(a, DjangoProjection) else repr(a)
        for a in arguments
    )
    return (
        f'python manage.py shell -c "from orchestrix_django.projections import '
        f'get_projection, {function}; {function}({args})"'
    )


def _retired_from(projection_id: str) -> tuple[str, str] | None:
    """(read model, projection serving it) when a rebuild replaced ``projection_id``."""
    using = str(orchestrix_settings.DATABASE)
    switch = (
        ActiveProjection.objects.using(using)
        .filter(Q(replaced_projection_id=projection_id) | Q(name=projection_id))
        .exclude(projection_id=projection_id)
        .first()
    )
    return None if switch is None else (switch.name, switch.projection_id)


def stopped_advice(projection: DjangoProjection, status: ProjectionStatus) -> str | None:
    """What is wrong with ``projection`` and what to do about it, or None when it is fine.

    A projection stopped at a failing event, or one that passed over parked
    events, needs an operator; a paused one only a note (an operator paused
    it, or a rebuild retired it).
    """
    pid = projection.projection_id
    if status.healthy and not status.parked:
        if not status.paused:
            return None
        retired = _retired_from(pid)
        if retired is not None:
            name, serving = retired
            return (
                f"{pid} is retired: read model {name!r} is served by {serving!r} since a "
                f"rebuild. Remove {pid} from ORCHESTRIX['PROJECTIONS'] (and drop its tables) "
                "when you no longer want to switch back."
            )
        return f"{pid} is paused by an operator. Resume it with: {shell_hint('resume', projection)}"
    letters = DjangoDeadLetterQueue().list(source=projection.dead_letter_source, limit=3)
    lines: list[str] = []
    if status.paused:
        lines.append(f"{pid} is stopped at position {count(status.position)}: {status.last_error}")
    else:
        lines.append(
            f"{pid} is unhealthy: it passed over {status.parked} parked event(s) "
            f"(last error: {status.last_error})"
        )
    for letter in letters:
        where = f"{letter.stream_id} v{letter.version}" if letter.stream_id else "?"
        lines.append(
            f"  parked: {letter.message_type} {where} at position {letter.position} "
            f"(dead letter {letter.id}, {letter.attempts} attempt(s)): {letter.reason}"
        )
    if status.parked > len(letters):
        lines.append(f"  … and {status.parked - len(letters)} more")
    if letters:
        first = letters[0].id
        lines.append("  Fix the cause (the handler's code or data), then retry or skip its")
        lines.append("  parked event (skipping moves past it without applying it):")
        lines.append(f"    {shell_hint('retry_parked', projection, first)}")
        lines.append(f"    {shell_hint('skip_parked', projection, first)}")
    else:
        lines.append(
            "  No parked event is recorded. Fix the cause, then resume it: "
            f"{shell_hint('resume', projection)}"
        )
    return "\n".join(lines)
