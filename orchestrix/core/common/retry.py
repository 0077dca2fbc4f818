"""Retry policies and the helpers that apply them.

Attempts are numbered from 1, the first *retry* (the call before it is not an
attempt of the policy): ``should_retry(n)`` holds while ``n <= max_retries``
and ``get_delay(1)`` is the initial delay.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "ExponentialBackoff",
    "FixedDelay",
    "LinearBackoff",
    "NoRetry",
    "RetryPolicy",
    "retry_async",
    "retry_sync",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: How far jitter may move a delay, either way (a fraction of the delay).
JITTER_FRACTION = 0.25


class RetryPolicy(ABC):
    """Decides whether a failed operation is tried again, and after how long."""

    max_retries: int = 0

    @abstractmethod
    def should_retry(self, attempt: int) -> bool:
        """Whether retry number ``attempt`` (1 for the first retry) may run."""

    @abstractmethod
    def get_delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt``."""

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is worth retrying at all (every ``Exception`` by default).

        Override to give up at once on errors that no retry can fix.
        """
        return isinstance(error, Exception)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted(vars(self).items()))))


def _check_common(max_retries: int, **delays: float) -> None:
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
    for name, value in delays.items():
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _check_attempt(attempt: int) -> None:
    if attempt < 1:
        raise ValueError(f"attempts are numbered from 1 (the first retry), got {attempt}")


class ExponentialBackoff(RetryPolicy):
    """Delays of ``initial_delay * multiplier ** (attempt - 1)``, capped at ``max_delay``.

    With ``jitter`` each delay is moved randomly by up to ±25 % (and still
    capped), so that many clients failing together do not retry together.
    """

    def __init__(
        self,
        max_retries: int = 3,
        initial_delay: float = 1.0,
        max_delay: float = 60.0,
        multiplier: float = 2.0,
        jitter: bool = True,
    ) -> None:
        _check_common(max_retries, initial_delay=initial_delay, max_delay=max_delay)
        if multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {multiplier}")
        self.max_retries = max_retries
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.multiplier = multiplier
        self.jitter = jitter

    def should_retry(self, attempt: int) -> bool:
        """True while ``attempt <= max_retries``."""
        return 1 <= attempt <= self.max_retries

    def get_delay(self, attempt: int) -> float:
        """The capped exponential delay, with jitter when enabled."""
        _check_attempt(attempt)
        try:
            delay = self.initial_delay * self.multiplier ** (attempt - 1)
        except OverflowError:
            delay = self.max_delay
        delay = min(delay, self.max_delay)
        if self.jitter:
            delay *= random.uniform(1 - JITTER_FRACTION, 1 + JITTER_FRACTION)
            delay = min(delay, self.max_delay)
        return delay


class LinearBackoff(RetryPolicy):
    """Delays of ``initial_delay + increment * (attempt - 1)``, capped at ``max_delay``."""

    def __init__(
        self,
        max_retries: int = 3,
        initial_delay: float = 1.0,
        increment: float = 1.0,
        max_delay: float = 60.0,
    ) -> None:
        _check_common(
            max_retries, initial_delay=initial_delay, increment=increment, max_delay=max_delay
        )
        self.max_retries = max_retries
        self.initial_delay = initial_delay
        self.increment = increment
        self.max_delay = max_delay

    def should_retry(self, attempt: int) -> bool:
        """True while ``attempt <= max_retries``."""
        return 1 <= attempt <= self.max_retries

    def get_delay(self, attempt: int) -> float:
        """The capped linear delay."""
        _check_attempt(attempt)
        return min(self.initial_delay + self.increment * (attempt - 1), self.max_delay)


class FixedDelay(RetryPolicy):
    """The same ``delay`` before every retry."""

    def __init__(self, max_retries: int = 3, delay: float = 1.0) -> None:
        _check_common(max_retries, delay=delay)
        self.max_retries = max_retries
        self.delay = delay

    def should_retry(self, attempt: int) -> bool:
        """True while ``attempt <= max_retries``."""
        return 1 <= attempt <= self.max_retries

    def get_delay(self, attempt: int) -> float:
        """Always ``delay``."""
        _check_attempt(attempt)
        return self.delay


class NoRetry(RetryPolicy):
    """Never retry: the first failure is final."""

    def should_retry(self, attempt: int) -> bool:
        """Always False."""
        return False

    def get_delay(self, attempt: int) -> float:
        """Always 0."""
        return 0.0


def retry_sync(
    func: Callable[..., _R],
    *args: Any,
    policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> _R:
    """Call ``func(*args, **kwargs)``, retrying failures as ``policy`` allows.

    Returns the first successful result; when the policy gives up (or the
    error is not retryable) the last error is raised unchanged. The default
    policy is ``ExponentialBackoff()``.
    """
    policy = ExponentialBackoff() if policy is None else policy
    attempt = 0
    while True:
        try:
            return func(*args, **kwargs)
        except Exception as error:
            attempt += 1
            if not (policy.is_retryable(error) and policy.should_retry(attempt)):
                raise
            _sleep(policy.get_delay(attempt))


async def retry_async(
    func: Callable[..., Awaitable[_R]],
    *args: Any,
    policy: RetryPolicy | None = None,
    **kwargs: Any,
) -> _R:
    """The async twin of :func:`retry_sync`: awaits ``func`` and sleeps with asyncio."""
    policy = ExponentialBackoff() if policy is None else policy
    attempt = 0
    while True:
        try:
            return await func(*args, **kwargs)
        except Exception as error:
            attempt += 1
            if not (policy.is_retryable(error) and policy.should_retry(attempt)):
                raise
            await asyncio.sleep(policy.get_delay(attempt))


def _sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)
