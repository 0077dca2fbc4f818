"""Helpers the workloads share: timing loops and the implementations' names."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from benchmarks.workers import ES, ES_DJANGO, ORCHESTRIX, RAW, RAW_LOCKED

__all__ = [
    "ES",
    "ES_DJANGO",
    "ORCHESTRIX",
    "RAW",
    "RAW_LOCKED",
    "median",
    "time_calls",
    "time_interleaved",
    "timed_loop",
]

_T = TypeVar("_T")


def timed_loop(items: Sequence[_T], work: Callable[[_T], int], seconds: float) -> tuple[int, float]:
    """Call ``work(item)`` for each item until done or ``seconds`` passed.

    Returns the sum of what ``work`` returned (events) and the elapsed seconds.
    """
    done = 0
    started = time.perf_counter()
    for item in items:
        done += work(item)
        if time.perf_counter() - started >= seconds:
            break
    return done, time.perf_counter() - started


def time_calls(call: Callable[[], object], min_repeats: int, seconds: float) -> list[float]:
    """Durations (ms) of ``call()``: at least ``min_repeats`` calls, and ``seconds`` long."""
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_repeats or time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        call()
        samples.append((time.perf_counter() - t0) * 1000)
        if len(samples) >= 10_000:
            break
    return samples


def median(values: Sequence[float]) -> float:
    """The median (0 for no values)."""
    return statistics.median(values) if values else 0.0


def time_interleaved(
    calls: dict[str, Callable[[], object]], min_repeats: int, seconds: float
) -> dict[str, list[float]]:
    """Durations (ms) of each call, taken in rounds of one call each.

    Interleaving spreads a slow moment of a shared machine over every
    contender instead of landing it on whichever was being timed then.
    At least ``min_repeats`` rounds, and ``seconds`` long overall.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    started = time.perf_counter()
    rounds = 0
    while rounds < min_repeats or time.perf_counter() - started < seconds:
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - t0) * 1000)
        rounds += 1
        if rounds >= 10_000:
            break
    return samples
