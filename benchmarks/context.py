"""What every workload gets: the database, the size, the peers, the writer pool."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from typing import Any

from benchmarks.config import Size
from benchmarks.db import DbConfig
from benchmarks.workers import JobResult, init_worker, worker_pid

__all__ = ["Context", "TimedRun"]


@dataclass(frozen=True)
class TimedRun:
    """What the jobs of one timed run committed, and how long it took."""

    results: list[JobResult]

    @property
    def seconds(self) -> float:
        """From the first job's start to the last job's end."""
        return max(r.finished for r in self.results) - min(r.began for r in self.results)

    @property
    def events(self) -> int:
        """Events committed by all jobs."""
        return sum(r.events for r in self.results)

    @property
    def conflicts(self) -> int:
        """Lost races, all jobs together."""
        return sum(r.conflicts for r in self.results)


@dataclass
class Context:
    """A run's shared state; :meth:`close` ends the pool's processes."""

    config: DbConfig
    size: Size
    out: Path
    peers: dict[str, str | None]
    log: Callable[[str], None] = print
    _pool: Pool | None = field(default=None, repr=False)

    def peer_ok(self, name: str) -> bool:
        """Whether peer ``name`` runs in this run."""
        return self.peers.get(name, "unknown peer") is None

    @property
    def pool_size(self) -> int:
        """Processes in the writer pool: the largest number any workload asks for."""
        size = self.size
        return max((*size.writer_counts, *size.contention_writers, size.catchup_live_writers, 1))

    def pool(self) -> Pool:
        """The writer pool (``spawn``ed once, each process with Django set up)."""
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            pool = ctx.Pool(self.pool_size, initializer=init_worker, initargs=(self.config,))
            # Wait until every process has run its initializer (and so a call).
            ready: set[int] = set()
            deadline = time.monotonic() + 120
            while len(ready) < self.pool_size and time.monotonic() < deadline:
                ready |= set(pool.map(worker_pid, range(self.pool_size), chunksize=1))
            self._pool = pool
        return self._pool

    def timed(
        self, job: Callable[..., JobResult], arguments: Sequence[tuple[Any, ...]], seconds: float
    ) -> TimedRun:
        """Run ``job(*args, start, end)`` for each ``args`` at once, for ``seconds``.

        Every job blocks until the common end, so each lands on its own pool
        process (the pool has at least as many processes as jobs).
        """
        if len(arguments) > self.pool_size:
            raise ValueError(f"{len(arguments)} jobs for a pool of {self.pool_size}")
        pool = self.pool()  # first: starting it takes longer than the start margin
        start = time.monotonic() + self.size.start_margin
        end = start + seconds
        calls = [(*args, start, end) for args in arguments]
        results = pool.starmap(job, calls, chunksize=1)
        return TimedRun(list(results))

    def start_async(
        self, job: Callable[..., JobResult], arguments: Sequence[tuple[Any, ...]], seconds: float
    ) -> tuple[Any, float]:
        """Like :meth:`timed`, without waiting: returns the async result and the start time."""
        pool = self.pool()
        start = time.monotonic() + self.size.start_margin
        end = start + seconds
        calls = [(*args, start, end) for args in arguments]
        return pool.starmap_async(job, calls, chunksize=1), start

    def close(self) -> None:
        """Stop the pool's processes."""
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
