"""Retry policies that retry only what a retry can fix.

Orchestrix's policies retry every exception unless ``is_retryable`` says
otherwise. A refused command (insufficient funds) fails the same way every
time, so retrying it only delays the answer: these policies retry
optimistic-locking conflicts (another writer saved the aggregate first) and
transient failures of outside systems.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.common.retry import ExponentialBackoff, FixedDelay, retry_sync

__all__ = ["CONFLICTS", "OnConflict", "TransientError", "TransientOnly", "retry_on_conflict"]

R = TypeVar("R")


class TransientError(Exception):
    """A failure that may go away by itself (a partner's API timed out, …)."""


class OnConflict(ExponentialBackoff):
    """Retries a load-change-save that lost the race for its aggregate: it loads again."""

    def is_retryable(self, error: BaseException) -> bool:
        """Only optimistic-locking conflicts."""
        return isinstance(error, ConcurrencyError)


class TransientOnly(FixedDelay):
    """Retries :class:`TransientError` only; every other failure is final at once."""

    def is_retryable(self, error: BaseException) -> bool:
        """Only transient failures."""
        return isinstance(error, TransientError)


#: Five quick tries: two web requests racing on one account rarely collide twice.
CONFLICTS = OnConflict(max_retries=5, initial_delay=0.01, max_delay=0.2)


def retry_on_conflict(operation: Callable[[], R]) -> R:
    """Run ``operation`` (a load-change-save), again when another writer saved first."""
    return retry_sync(operation, policy=CONFLICTS)
