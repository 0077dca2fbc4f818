"""Ordering threads on what can be observed, never on sleeps.

:func:`wait_until` polls a condition until a deadline, and fails saying what
did not happen. :class:`LockWaiter`, made in a thread that is about to wait
for a database lock, tells another thread when it does: on PostgreSQL its
backend's lock request appears in ``pg_locks`` with ``granted = false``; on
MySQL/MariaDB its InnoDB transaction is in ``LOCK WAIT``; on SQLite, which
shows no waiters, its write statement has started (SQLite's write lock then
keeps it from finishing until the holder commits).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, connections

__all__ = ["DEADLINE", "LockWaiter", "wait_until", "waiting_in", "watching_locks"]

#: Seconds an awaited state may take before the test fails.
DEADLINE = 30.0

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def wait_until(
    condition: Callable[[], bool], what: str, timeout: float = DEADLINE, every: float = 0.005
) -> None:
    """Return once ``condition()`` holds (asked every ``every`` seconds); fail with ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not observed within {timeout:g} s: {what}")
        time.sleep(every)


def waiting_in(
    thread: threading.Thread, function: Callable[..., Any], caller: Callable[..., Any]
) -> bool:
    """Whether ``thread`` is in a call of ``function`` made by ``caller`` (its stack shows it)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        back = frame.f_back
        called = back is not None and back.f_code is caller.__code__
        if called and frame.f_code is function.__code__:
            return True
        frame = back
    return False


class LockWaiter:
    """Made in the thread about to wait for a lock (database ``using``); see the module docs."""

    def __init__(self, using: str = "default") -> None:
        own = connections[using]
        own.ensure_connection()
        self.vendor = own.vendor
        self.backend: int | None = None
        self._wrote = threading.Event()
        self._raw: Any = None
        if self.vendor == "postgresql":
            with own.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.backend = int(cursor.fetchone()[0])
        elif self.vendor == "mysql":
            with own.cursor() as cursor:
                cursor.execute("SELECT CONNECTION_ID()")
                self.backend = int(cursor.fetchone()[0])
        else:
            self._raw = own.connection
            self._raw.set_trace_callback(self._traced)

    def _traced(self, statement: str) -> None:
        if statement.lstrip().upper().startswith(_WRITES):
            self._wrote.set()

    def is_waiting(self) -> bool:
        """Whether the thread waits for a lock now (asked on this thread's connection)."""
        if self.vendor == "postgresql":
            sql = "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)"
        elif self.vendor == "mysql":
            sql = (
                "SELECT COUNT(*) FROM information_schema.innodb_trx "
                "WHERE trx_mysql_thread_id = %s AND trx_state = 'LOCK WAIT'"
            )
        else:
            return self._wrote.is_set()
        with connection.cursor() as cursor:
            cursor.execute(sql, [self.backend])
            return bool(cursor.fetchone()[0])

    def wait(self, what: str, timeout: float = DEADLINE) -> None:
        """Return once the thread waits for its lock; fail after ``timeout`` seconds."""
        # InnoDB refreshes its information_schema tables only when they were
        # not read for 0.1 s: asked more often, they never change.
        every = 0.15 if self.vendor == "mysql" else 0.005
        wait_until(self.is_waiting, what, timeout, every)

    def close(self) -> None:
        """Stop watching (in the waiting thread, once its wait is over)."""
        if self._raw is not None:
            with contextlib.suppress(sqlite3.ProgrammingError):  # closed by the thread already
                self._raw.set_trace_callback(None)
            self._raw = None


def watching_locks(target: Callable[[], Any]) -> tuple[Callable[[], Any], Callable[[str], None]]:
    """``target`` made to watch its lock waits, and what returns once it waits for a lock.

    Run the first in the waiting thread; call the second, with what is
    awaited, in the thread that needs the other one waiting.
    """
    made: list[LockWaiter] = []
    ready = threading.Event()

    def watched() -> Any:
        waiter = LockWaiter()
        made.append(waiter)
        ready.set()
        try:
            return target()
        finally:
            waiter.close()

    def wait(what: str) -> None:
        if not ready.wait(DEADLINE):
            raise AssertionError(f"not observed within {DEADLINE:g} s: the thread started ({what})")
        made[0].wait(what)

    return watched, wait
