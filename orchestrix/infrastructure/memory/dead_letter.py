"""The in-memory dead-letter queue: the reference implementation of the protocol."""

from __future__ import annotations

import builtins
import copy
import dataclasses
import threading
from collections.abc import Callable

from orchestrix.core.messaging.dead_letter import (
    DeadLetter,
    DeadLetterNotFoundError,
    DeadLetterStatus,
)
from orchestrix.core.messaging.message import Message

__all__ = ["InMemoryDeadLetterQueue"]


class InMemoryDeadLetterQueue:
    """Keeps dead letters in a dict, in parking order. Thread-safe.

    Letters are immutable, but their ``payload`` dict is not: callers get a
    copy of it, so editing a returned letter's payload never changes the
    stored one (as with a database-backed queue).
    """

    def __init__(self) -> None:
        # dicts keep insertion order, which is parking order: list() is oldest
        # first without sorting, even when two letters share a created_at.
        self._letters: dict[str, DeadLetter] = {}
        self._lock = threading.Lock()

    def park(
        self,
        message: Message | None,
        error: BaseException,
        *,
        source: str,
        attempts: int = 1,
        position: int | None = None,
        stream_id: str | None = None,
        version: int | None = None,
        handler: str | None = None,
        message_type: str | None = None,
    ) -> DeadLetter:
        """Record ``message`` as failed with ``error``; return the new ``PARKED`` letter."""
        letter = DeadLetter.from_failure(
            message,
            error,
            source=source,
            attempts=attempts,
            position=position,
            stream_id=stream_id,
            version=version,
            handler=handler,
            message_type=message_type,
        )
        with self._lock:
            self._letters[letter.id] = _detached(letter)
        return letter

    def get(self, dead_letter_id: str) -> DeadLetter | None:
        """The letter with this id, or None."""
        with self._lock:
            letter = self._letters.get(dead_letter_id)
        return None if letter is None else _detached(letter)

    def list(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
        limit: int | None = None,
    ) -> builtins.list[DeadLetter]:
        """Letters oldest first, filtered by ``source`` and ``status`` (None: any)."""
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0 or None, got {limit}")
        wanted = None if status is None else DeadLetterStatus(status)
        found: builtins.list[DeadLetter] = []
        with self._lock:
            for letter in self._letters.values():
                if limit is not None and len(found) >= limit:
                    break
                if _matches(letter, source, wanted):
                    found.append(letter)
        return [_detached(letter) for letter in found]

    def count(
        self,
        source: str | None = None,
        status: DeadLetterStatus | None = DeadLetterStatus.PARKED,
    ) -> int:
        """How many letters match the filters of :meth:`list`."""
        wanted = None if status is None else DeadLetterStatus(status)
        with self._lock:
            return sum(1 for letter in self._letters.values() if _matches(letter, source, wanted))

    def mark_retried(self, dead_letter_id: str) -> DeadLetter:
        """The message was handled after all: the letter becomes ``RETRIED``."""
        return self._update(dead_letter_id, lambda letter: letter.resolve(DeadLetterStatus.RETRIED))

    def discard(self, dead_letter_id: str) -> DeadLetter:
        """An operator dropped the message: the letter becomes ``DISCARDED``."""
        return self._update(
            dead_letter_id, lambda letter: letter.resolve(DeadLetterStatus.DISCARDED)
        )

    def record_failure(self, dead_letter_id: str, error: BaseException) -> DeadLetter:
        """A retry failed: ``attempts + 1`` and ``error`` recorded, the letter stays ``PARKED``."""
        return self._update(dead_letter_id, lambda letter: letter.with_failed_attempt(error))

    def clear(self) -> None:
        """Forget every letter (for tests)."""
        with self._lock:
            self._letters.clear()

    def _update(
        self, dead_letter_id: str, change: Callable[[DeadLetter], DeadLetter]
    ) -> DeadLetter:
        # The read-check-write runs under the lock so that two threads resolving
        # one letter see each other's result (and the rules of resolve() hold).
        with self._lock:
            letter = self._letters.get(dead_letter_id)
            if letter is None:
                raise DeadLetterNotFoundError(dead_letter_id)
            changed = change(letter)
            self._letters[dead_letter_id] = changed
        return _detached(changed)


def _matches(letter: DeadLetter, source: str | None, status: DeadLetterStatus | None) -> bool:
    return (source is None or letter.source == source) and (
        status is None or letter.status is status
    )


def _detached(letter: DeadLetter) -> DeadLetter:
    """A copy whose payload shares nothing with ``letter``'s."""
    return dataclasses.replace(letter, payload=copy.deepcopy(letter.payload))
