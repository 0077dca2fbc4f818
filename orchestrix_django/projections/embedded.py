"""The embedded runner: keeps projections up to date in this process, without a broker.

Woken by commits in this process (the ``events_committed`` signal) or by the
poll interval; projections take turns of a few batches each. ``orchestrix_run``
is its command line (docs/django.md#projections).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.projections.runner import CatchUpResult, catch_up
from orchestrix_django.signals import events_committed
from orchestrix_django.storage.faults import drop_broken_connections

__all__ = ["MAX_BACKOFF", "EmbeddedRunner", "Turn"]

logger = logging.getLogger("orchestrix.runner")

#: The longest wait before a projection that raised is tried again, in seconds.
MAX_BACKOFF = 60.0


@dataclass(frozen=True)
class Turn:
    """One projection's turn in a pass: what its catch-up did, or the error it raised."""

    projection_id: str
    result: CatchUpResult | None
    error: BaseException | None
    seconds: float
    #: It read full batches until its turn ended: more events are waiting.
    more: bool = False


class EmbeddedRunner:
    """Keeps ``projections`` up to date in this process until :meth:`stop`.

    Each pass gives every projection a turn of at most ``batches_per_turn``
    batches. :meth:`run` loops: a pass, then (unless a projection has more
    waiting) a wait of ``poll_interval`` seconds that a commit in this
    process (the ``events_committed`` signal) or :meth:`stop` cuts short.
    :meth:`catch_up_all` runs passes until every projection is at the head.
    ``on_turn`` is called after every turn (the command prints from it).

    A database fault (a lost connection, a restart, a deadlock) is ridden
    out inside the projection's catch-up (see
    :mod:`orchestrix_django.storage.faults`) and reported in its turn's result. A
    projection that raises anything else (a reset hook is broken, …) is
    reported in its turn and tried again after a growing pause, while the
    others go on; a projection stopped at a failing event stays stopped
    (``catch_up`` reports it paused) until an operator retries or skips it.
    """

    def __init__(
        self,
        projections: Sequence[DjangoProjection],
        *,
        poll_interval: float,
        batches_per_turn: int = 10,
        on_turn: Callable[[Turn], None] | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        if batches_per_turn < 1:
            raise ValueError(f"batches_per_turn must be >= 1, got {batches_per_turn}")
        self.projections = list(projections)
        self.poll_interval = poll_interval
        self.batches_per_turn = batches_per_turn
        self.on_turn = on_turn
        #: Set by a commit in this process (or by stop()): the wait ends at once.
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._should_stop: Callable[[], bool] | None = None
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        #: Events applied per projection since the runner started.
        self.applied: dict[str, int] = {p.projection_id: 0 for p in self.projections}
        #: Passes completed, and waits a commit (or stop()) cut short.
        self.passes = 0
        self.wakeups = 0

    # -- stopping ---------------------------------------------------------------

    def stop(self) -> None:
        """Stop after the batch in hand (thread- and signal-safe)."""
        self._stop.set()
        self.wake.set()

    def should_stop(self) -> bool:
        """Whether :meth:`stop` was called (or the ``should_stop`` given to run() says so)."""
        if self._stop.is_set():
            return True
        return self._should_stop is not None and self._should_stop()

    # -- running ----------------------------------------------------------------

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Within the block, a commit of events in this process wakes the runner."""
        uid = f"orchestrix_run-{uuid.uuid4()}"

        def nudge(**kwargs: Any) -> None:
            self.wake.set()

        events_committed.connect(nudge, weak=False, dispatch_uid=uid)
        try:
            yield
        finally:
            events_committed.disconnect(dispatch_uid=uid)

    def run(self, should_stop: Callable[[], bool] | None = None) -> None:
        """Keep every projection up to date until :meth:`stop` (or ``should_stop()``)."""
        self._should_stop = should_stop
        with self.listening():
            while not self.should_stop():
                # Cleared before the pass: a commit during the pass wakes the next one.
                self.wake.clear()
                turns = self.run_pass()
                if self.should_stop():
                    break
                if any(turn.more for turn in turns):
                    continue
                if self.wake.wait(self.poll_interval):
                    self.wakeups += 1

    def catch_up_all(self, should_stop: Callable[[], bool] | None = None) -> dict[str, Turn]:
        """Run passes until every projection is at the head of the log (or stopped/failed).

        Returns each projection's last turn. A projection that raised is not
        tried again within the call.
        """
        self._should_stop = should_stop
        last: dict[str, Turn] = {}
        failed: set[str] = set()
        while not self.should_stop():
            turns = self.run_pass(skip=failed, backoff=False)
            for turn in turns:
                last[turn.projection_id] = turn
                if turn.error is not None:
                    failed.add(turn.projection_id)
            if not any(turn.more for turn in turns):
                break
        return last

    def run_pass(
        self, *, skip: set[str] | frozenset[str] = frozenset(), backoff: bool = True
    ) -> list[Turn]:
        """Give each projection one turn; returns the turns taken."""
        turns: list[Turn] = []
        for projection in self.projections:
            pid = projection.projection_id
            if self.should_stop():
                break
            if pid in skip or (backoff and time.monotonic() < self._retry_at.get(pid, 0.0)):
                continue
            turn = self._turn(projection)
            turns.append(turn)
            if self.on_turn is not None:
                self.on_turn(turn)
        self.passes += 1
        return turns

    def _turn(self, projection: DjangoProjection) -> Turn:
        pid = projection.projection_id
        started = time.perf_counter()
        try:
            result = catch_up(
                projection, max_batches=self.batches_per_turn, should_stop=self.should_stop
            )
        except Exception as error:
            # Whatever it is, it is this projection's: the others go on. The
            # batch in hand was rolled back with its transaction.
            failures = self._failures[pid] = self._failures.get(pid, 0) + 1
            delay = min(self.poll_interval * 2 ** (failures - 1), MAX_BACKOFF)
            self._retry_at[pid] = time.monotonic() + delay
            logger.debug("projection %s raised (failure %s)", pid, failures, exc_info=True)
            drop_broken_connections()
            return Turn(pid, None, error, time.perf_counter() - started)
        self._failures.pop(pid, None)
        self._retry_at.pop(pid, None)
        self.applied[pid] = self.applied.get(pid, 0) + result.applied
        more = result.stopped is None and result.batches >= self.batches_per_turn and result.lag > 0
        return Turn(pid, result, None, time.perf_counter() - started, more)

    def retry_delay(self, projection_id: str) -> float:
        """Seconds until a projection that raised is tried again (0 when it is not waiting)."""
        return max(self._retry_at.get(projection_id, 0.0) - time.monotonic(), 0.0)
