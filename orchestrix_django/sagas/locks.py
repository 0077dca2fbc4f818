"""Run locks: at most one runner executes a saga at a time, and a dead runner's lock dies with it.

A lock belongs to the runner's database session (or process), never to a
timer: a PostgreSQL session-level advisory lock (two keys: an Orchestrix
namespace and a hash of the saga id), MySQL/MariaDB ``GET_LOCK``, and on
SQLite a POSIX record lock on one byte of ``<database>.saga-locks`` plus an
in-process registry. Locks are tried, never waited for. See docs/django.md,
"How a saga runs".
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from types import TracebackType
from typing import Any

from django.db import DatabaseError, connections

from orchestrix_django.settings import orchestrix_settings

__all__ = ["SagaRunLock", "saga_is_running"]

logger = logging.getLogger("orchestrix.sagas")

#: The first key of the PostgreSQL advisory locks of sagas ("OS", Orchestrix sagas).
PG_NAMESPACE = 0x4F53

_local_lock = threading.Lock()
#: (database alias, saga id) of the locks this process holds.
_held: set[tuple[str, str]] = set()
#: Lock files opened by this process, by path: kept open for the process's life,
#: because closing any descriptor of a file drops every POSIX lock the process has on it.
_lock_files: dict[str, int] = {}


def _digest(saga_id: str) -> bytes:
    return hashlib.blake2b(saga_id.encode(), digest_size=8).digest()


def _pg_key(saga_id: str) -> int:
    return int.from_bytes(_digest(saga_id)[:4], "big", signed=True)


def _mysql_name(saga_id: str) -> str:
    # GET_LOCK names are at most 64 characters.
    return f"orchestrix-saga:{_digest(saga_id).hex()}"


def _file_offset(saga_id: str) -> int:
    return int.from_bytes(_digest(saga_id), "big") >> 2  # below 2**62: any off_t takes it


class SagaRunLock:
    """The exclusive right to execute saga ``saga_id`` (see the module docs).

    :meth:`acquire` tries once and says whether it got the lock;
    :meth:`release` gives it back. As a context manager it yields whether it
    was acquired::

        with SagaRunLock(saga_id) as mine:
            if mine:
                ...

    Acquire and release in the same thread (the lock is held by that
    thread's database connection).
    """

    def __init__(self, saga_id: str, using: str | None = None) -> None:
        self.saga_id = saga_id
        self._using = using
        self.held = False
        self._file: tuple[int, int] | None = None

    @property
    def using(self) -> str:
        """The database alias whose connection holds the lock."""
        return self._using or str(orchestrix_settings.DATABASE)

    def acquire(self) -> bool:
        """Take the lock if nobody holds it; True when this object now holds it."""
        if self.held:
            return True
        key = (self.using, self.saga_id)
        with _local_lock:
            if key in _held:
                return False
            _held.add(key)
        try:
            acquired = self._acquire_shared()
        except BaseException:
            with _local_lock:
                _held.discard(key)
            raise
        if not acquired:
            with _local_lock:
                _held.discard(key)
            return False
        self.held = True
        return True

    def release(self) -> None:
        """Give the lock back (a no-op when it is not held)."""
        if not self.held:
            return
        self.held = False
        try:
            self._release_shared()
        except DatabaseError as error:
            # The connection is gone, and the lock with it.
            logger.warning("releasing the run lock of saga %s failed: %s", self.saga_id, error)
        finally:
            with _local_lock:
                _held.discard((self.using, self.saga_id))

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    # -- per database ---------------------------------------------------------

    def _acquire_shared(self) -> bool:
        connection = connections[self.using]
        vendor = connection.vendor
        if vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_try_advisory_lock(%s, %s)", [PG_NAMESPACE, _pg_key(self.saga_id)]
                )
                return bool(cursor.fetchone()[0])
        if vendor == "mysql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT GET_LOCK(%s, 0)", [_mysql_name(self.saga_id)])
                return bool(cursor.fetchone()[0])
        if vendor == "sqlite":
            return self._acquire_file(connection.settings_dict)
        return True  # another backend: the in-process registry only

    def _release_shared(self) -> None:
        connection = connections[self.using]
        vendor = connection.vendor
        if vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_unlock(%s, %s)", [PG_NAMESPACE, _pg_key(self.saga_id)]
                )
        elif vendor == "mysql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT RELEASE_LOCK(%s)", [_mysql_name(self.saga_id)])
        elif self._file is not None:
            import fcntl

            descriptor, offset = self._file
            self._file = None
            fcntl.lockf(descriptor, fcntl.LOCK_UN, 1, offset)

    def _acquire_file(self, settings_dict: dict[str, Any]) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        name = str(settings_dict.get("NAME") or "")
        if not name or name == ":memory:" or name.startswith("file:") or "mode=memory" in name:
            return True  # a database of this process only
        descriptor = _lock_file(f"{name}.saga-locks")
        offset = _file_offset(self.saga_id)
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except OSError:
            return False
        self._file = (descriptor, offset)
        return True


def _lock_file(path: str) -> int:
    with _local_lock:
        descriptor = _lock_files.get(path)
        if descriptor is None:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            _lock_files[path] = descriptor
        return descriptor


def saga_is_running(saga_id: str, using: str | None = None) -> bool:
    """Whether a runner (in any process) holds the run lock of ``saga_id`` right now."""
    lock = SagaRunLock(saga_id, using)
    if lock.acquire():
        lock.release()
        return False
    return True
