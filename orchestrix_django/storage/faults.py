"""Database faults: errors of the connection or the server, not of the code that met them.

:func:`fault_kind` tells such errors (a lost connection, a shutdown, a
deadlock, "database is locked") from the code's own, for PostgreSQL,
MariaDB/MySQL and SQLite; :class:`FaultRetry` is how every runner rides one
out, retrying the same work after a capped backoff (:data:`FAULT_BACKOFF`).
The errors counted, and what a fault does to projections and sagas, are in
``docs/operations.md`` ("Database outages and faults").
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import TypeVar

from django.db import Error, InterfaceError, connections

from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.common.retry import ExponentialBackoff

__all__ = [
    "FAULT_BACKOFF",
    "FaultComponent",
    "FaultKind",
    "FaultRetry",
    "drop_broken_connections",
    "fault_kind",
    "is_database_fault",
    "note_fault",
]

logger = logging.getLogger("orchestrix.faults")

_T = TypeVar("_T")

#: The waits between two tries of work that met a fault: 0.1 s, doubling, at
#: most 5 s (±25 % jitter), for as long as the database stays away.
FAULT_BACKOFF = ExponentialBackoff(max_retries=0, initial_delay=0.1, max_delay=5.0)

#: How many links of an error's ``__cause__`` chain are looked at.
_CHAIN_DEPTH = 8


class FaultKind(StrEnum):
    """What kind of fault an error is (the ``kind`` label of ``orchestrix.faults``)."""

    #: The connection is lost, refused, closed or killed, or the server is shutting down.
    CONNECTION = "connection"
    #: The server is short of a resource (connections, memory, disk) or failed at I/O.
    SERVER = "server"
    #: The transaction was chosen as a deadlock victim.
    DEADLOCK = "deadlock"
    #: A serializable transaction could not be serialized.
    SERIALIZATION = "serialization"
    #: A lock was not granted in time.
    LOCK_TIMEOUT = "lock_timeout"
    #: SQLite's database (or a table) is locked by another connection.
    LOCKED = "locked"


class FaultComponent(StrEnum):
    """The work that met a fault (the ``component`` label of ``orchestrix.faults``)."""

    PROJECTION = "projection"
    SAGA = "saga"
    SAGA_SWEEP = "saga_sweep"
    PERIODIC_CATCH_UP = "periodic_catch_up"


_PG_CODES: dict[str, FaultKind] = {
    "40001": FaultKind.SERIALIZATION,
    "40P01": FaultKind.DEADLOCK,
    "55P03": FaultKind.LOCK_TIMEOUT,
    "57P01": FaultKind.CONNECTION,
    "57P02": FaultKind.CONNECTION,
    "57P03": FaultKind.CONNECTION,
    "57P05": FaultKind.CONNECTION,
    "25P03": FaultKind.CONNECTION,
}
_PG_CLASSES: dict[str, FaultKind] = {
    "08": FaultKind.CONNECTION,
    "53": FaultKind.SERVER,
    "58": FaultKind.SERVER,
}
_MYSQL_CODES: dict[int, FaultKind] = {
    0: FaultKind.CONNECTION,  # mysqlclient's InterfaceError on a closed connection
    1040: FaultKind.SERVER,
    1053: FaultKind.CONNECTION,
    1152: FaultKind.CONNECTION,
    1158: FaultKind.CONNECTION,
    1159: FaultKind.CONNECTION,
    1160: FaultKind.CONNECTION,
    1161: FaultKind.CONNECTION,
    1203: FaultKind.SERVER,
    1205: FaultKind.LOCK_TIMEOUT,
    1213: FaultKind.DEADLOCK,
    1927: FaultKind.CONNECTION,
    2002: FaultKind.CONNECTION,
    2003: FaultKind.CONNECTION,
    2006: FaultKind.CONNECTION,
    2013: FaultKind.CONNECTION,
    2055: FaultKind.CONNECTION,
    4031: FaultKind.CONNECTION,
}
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and its causes, nearest first.

    The cause of ``raise ... from`` (Django's wrappers name the driver's error
    so), and the ``original_error`` of a bus's ``HandlerError`` (a command
    handler a process manager dispatched in the runner's transaction).
    """
    link: BaseException | None = error
    for _ in range(_CHAIN_DEPTH):
        if link is None:
            return
        yield link
        link = link.original_error if isinstance(link, HandlerError) else link.__cause__


def _driver(error: BaseException) -> str:
    return type(error).__module__.split(".", 1)[0]


def _is_operational(error: BaseException) -> bool:
    names = ("OperationalError", "InterfaceError")
    return any(cls.__name__ in names for cls in type(error).__mro__)


def _driver_kind(error: BaseException) -> FaultKind | None:
    """The kind of a database driver's error, None when it is not a fault (or not a driver's)."""
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return FaultKind.LOCKED
        return None
    driver = _driver(error)
    if driver in ("psycopg", "psycopg2"):
        sqlstate = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if not sqlstate:
            # No answer from the server: libpq lost it, or never reached it.
            return FaultKind.CONNECTION if _is_operational(error) else None
        return _PG_CODES.get(sqlstate) or _PG_CLASSES.get(sqlstate[:2])
    if driver in ("MySQLdb", "pymysql"):
        code = error.args[0] if error.args else None
        return _MYSQL_CODES.get(code) if isinstance(code, int) else None
    return None


def fault_kind(error: BaseException) -> FaultKind | None:
    """The :class:`FaultKind` of ``error``, or None when it is not a database fault.

    ``error`` or any error in its ``__cause__`` chain counts: Django's
    wrappers carry the driver's error as their cause.
    """
    for link in _causes(error):
        if isinstance(link, InterfaceError):
            return FaultKind.CONNECTION
        kind = _driver_kind(link)
        if kind is not None:
            return kind
    return None


def is_database_fault(error: BaseException) -> bool:
    """Whether ``error`` means "the connection or the server", not "the code" (see the module)."""
    return fault_kind(error) is not None


def drop_broken_connections() -> None:
    """Close this thread's connections that are unusable, outside transactions.

    After an error of unknown nature: a connection that still works is kept.
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            with contextlib.suppress(Error):  # closing a dead connection may complain
                connection.close_if_unusable_or_obsolete()


def note_fault(
    error: BaseException,
    component: FaultComponent,
    name: str,
    *,
    using: str,
    observability: ObservabilityHooks,
    detail: str | None = None,
    retry: str = "at the next run",
) -> bool:
    """If ``error`` is a fault outside a transaction: log it, count it, drop the connection.

    Returns whether it was (the caller then leaves the work to its next run,
    which ``retry`` says in the log); False for any other error, which the
    caller raises. ``name`` is the metric's ``name`` label (a projection id,
    a saga type); ``detail`` (a saga id, say) is only logged. A fault inside
    a transaction the caller does not own is not noted: only the owner of the
    transaction can retry it.
    """
    kind = fault_kind(error)
    connection = connections[using]
    if kind is None or connection.in_atomic_block:
        return False
    logger.warning(
        "%s %s: database fault (%s: %s: %s); rolled back, reconnecting %s",
        component.value.replace("_", " "),
        name if detail is None else f"{name} {detail}",
        kind.value,
        type(error).__name__,
        str(error).strip() or "no message",
        retry,
    )
    observability.record_fault(component.value, name, kind.value)
    with contextlib.suppress(Error):  # closing a dead connection may complain
        connection.close()
    # A handler's own connections to other databases may be the broken ones.
    drop_broken_connections()
    return True


class FaultRetry:
    """Rides out database faults for one piece of work (a catch-up, a saga run, a sweep).

    The caller runs its work in a loop and hands every error to
    :meth:`absorb`: for a fault it logs, counts, drops the connection of
    ``using``, waits the next backoff delay (cut short when ``should_stop()``
    says so) and returns True, and the caller tries the same work again;
    for any other error it returns False and the caller raises it. A fault
    met inside a transaction the caller does not own (the connection is
    still in an atomic block) is not absorbed either: that transaction is
    lost, and only its owner can retry it. :meth:`succeeded` restarts the
    backoff.

    ``name`` and ``detail`` are those of :func:`note_fault` (the work may set
    ``name`` once it knows it).
    """

    def __init__(
        self,
        component: FaultComponent,
        name: str,
        *,
        detail: str | None = None,
        using: str,
        observability: ObservabilityHooks,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.component = component
        self.name = name
        self.detail = detail
        self.using = using
        self.observability = observability
        self.should_stop = should_stop
        #: Faults met in a row (since the start or the last success).
        self.in_a_row = 0
        #: Faults met in all.
        self.total = 0

    def absorb(self, error: BaseException) -> bool:
        """After ``error``: True when it was a fault, ridden out (try again); False to raise it."""
        delay = FAULT_BACKOFF.get_delay(min(self.in_a_row + 1, 64))
        if not note_fault(
            error,
            self.component,
            self.name,
            using=self.using,
            observability=self.observability,
            detail=self.detail,
            retry=f"in {delay:.1f} s",
        ):
            return False
        self.in_a_row += 1
        self.total += 1
        self._wait(delay)
        return True

    def call(self, work: Callable[[], _T]) -> _T:
        """``work()``, tried again after each fault until it goes through.

        Raises what is not a fault, and the fault itself once ``should_stop()``
        says so.
        """
        while True:
            try:
                result = work()
            except Exception as error:
                if not self.absorb(error) or (self.should_stop is not None and self.should_stop()):
                    raise
                continue
            self.succeeded()
            return result

    def succeeded(self) -> None:
        """The work went through: the next fault waits the shortest delay again."""
        self.in_a_row = 0

    def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self.should_stop is not None and self.should_stop():
                return
            time.sleep(min(remaining, 0.1))
