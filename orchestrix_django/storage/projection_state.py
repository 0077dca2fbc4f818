"""Projection checkpoints on Django models: the core ``ProjectionStateStore`` protocols.

:class:`DjangoProjectionStateStore` keeps one
:class:`~orchestrix_django.models.ProjectionStateRecord` row per projection.
Besides the protocol (``load_state``, ``save_state``, ``delete_state``) it
offers what a runner and the admin need:

* :meth:`~DjangoProjectionStateStore.lock` row-locks a projection's state for
  the rest of the surrounding transaction, so that however many workers run,
  only one advances a projection at a time;
* :meth:`~DjangoProjectionStateStore.set_paused` /
  :meth:`~DjangoProjectionStateStore.is_paused`: the operator's pause flag,
  a column the core's :class:`ProjectionState` does not have (``save_state``
  never touches it);
* :meth:`~DjangoProjectionStateStore.list_states`: every projection with its flag.

:class:`DjangoAsyncProjectionStateStore` is the async twin (the ORM runs in
Django's thread for sync code via ``sync_to_async``).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.models import QuerySet
from django.db.transaction import TransactionManagementError

from orchestrix.core.eventsourcing.projection import ProjectionState
from orchestrix_django.models import ProjectionStateRecord
from orchestrix_django.storage.configured import DatabaseBound

__all__ = [
    "DjangoAsyncProjectionStateStore",
    "DjangoProjectionStateStore",
    "StoredProjectionState",
]

#: The columns ``save_state`` writes: everything but the key and ``paused``.
_STATE_COLUMNS = [
    "last_processed_event_id",
    "last_processed_position",
    "events_processed",
    "error_count",
    "is_healthy",
    "last_error",
    "updated_at",
]


@dataclass(frozen=True)
class StoredProjectionState:
    """A projection's saved state together with its operator pause flag."""

    state: ProjectionState
    paused: bool = False

    @property
    def projection_id(self) -> str:
        """The id of the projection."""
        return self.state.projection_id


class DjangoProjectionStateStore(DatabaseBound):
    """A synchronous :class:`~orchestrix.core.eventsourcing.projection.ProjectionStateStore`
    on the Django ORM (see the module docs).

    ``using`` is the database alias; by default ``ORCHESTRIX["DATABASE"]``,
    read when the store is first used.
    """

    def _records(self) -> QuerySet[ProjectionStateRecord]:
        return ProjectionStateRecord.objects.using(self.using)

    # -- the protocol -------------------------------------------------------------

    def load_state(self, projection_id: str) -> ProjectionState | None:
        """The saved state of ``projection_id``, or None."""
        if "\x00" in projection_id:  # never stored, and PostgreSQL raises on it
            return None
        record = self._records().filter(pk=projection_id).first()
        return None if record is None else _to_state(record)

    def save_state(self, state: ProjectionState) -> None:
        """Store ``state``, replacing the saved state of its projection.

        One upsert statement, so two first saves never collide; the ``paused``
        flag of an existing row is left as it is.
        """
        if not isinstance(state, ProjectionState):
            raise TypeError(f"expected a ProjectionState, got {type(state).__name__}")
        record = ProjectionStateRecord(
            projection_id=state.projection_id,
            last_processed_event_id=state.last_processed_event_id,
            last_processed_position=state.last_processed_position,
            events_processed=state.events_processed,
            error_count=state.error_count,
            is_healthy=state.is_healthy,
            last_error=state.last_error,
            updated_at=state.updated_at,
        )
        self._upsert(record, _STATE_COLUMNS)

    def delete_state(self, projection_id: str) -> None:
        """Forget ``projection_id``'s state and pause flag (a no-op when there is none)."""
        self._records().filter(pk=projection_id).delete()

    # -- for runners and operators ----------------------------------------------

    @contextmanager
    def lock(self, projection_id: str) -> Iterator[StoredProjectionState]:
        """Row-lock ``projection_id``'s state until the surrounding transaction ends.

        Use it inside ``transaction.atomic(using=store.using)``; it yields the
        locked state (a fresh default state when the projection had none: the
        row is created first). A second locker waits until the first one's
        transaction commits or rolls back, then sees what it committed.
        Leaving the ``with`` block does not release the lock: a row lock
        lives as long as its transaction.

        The row is locked with ``SELECT … FOR UPDATE`` on PostgreSQL and
        MySQL/MariaDB. SQLite has no row locks: the lock is SQLite's database
        write lock, taken by a write at once (call ``lock`` before other
        queries of the transaction, or a concurrent writer may make SQLite
        refuse the upgrade from reader to writer).
        """
        using = self.using
        connection = connections[using]
        if not connection.in_atomic_block:
            raise TransactionManagementError(
                f"lock({projection_id!r}) must run inside transaction.atomic(using={using!r}): "
                "the lock is held until that transaction ends"
            )
        # Raw SQL: a runner locks once per batch, and the ORM's query building
        # and model instances cost more than the statement itself.
        sql = _sql(connection, _LOCK_QUERY)
        if connection.vendor == "sqlite":
            sql = sql.replace(" FOR UPDATE", "")
        row = None
        with connection.cursor() as cursor:
            if connection.vendor != "sqlite":
                cursor.execute(sql, [projection_id])
                row = cursor.fetchone()
            if row is None:
                # On SQLite this write is what takes the database write lock.
                self._insert_if_missing(projection_id)
                cursor.execute(sql, [projection_id])
                row = cursor.fetchone()
        assert row is not None, f"the state row of {projection_id!r} vanished under its lock"
        yield _locked_state(row)

    def update_locked(self, state: ProjectionState) -> None:
        """Save ``state`` of a projection whose row the caller holds with :meth:`lock`.

        One plain UPDATE (the row exists: :meth:`lock` made it), for the runner's
        once-per-batch save; ``paused`` is left as it is.
        """
        connection = connections[self.using]
        moment = connection.ops.adapt_datetimefield_value(state.updated_at)
        with connection.cursor() as cursor:
            cursor.execute(
                _sql(connection, _UPDATE_QUERY),
                [
                    state.last_processed_event_id,
                    state.last_processed_position,
                    state.events_processed,
                    state.error_count,
                    state.is_healthy,
                    state.last_error,
                    moment,
                    state.projection_id,
                ],
            )
            if cursor.rowcount != 1:
                raise TransactionManagementError(
                    f"update_locked({state.projection_id!r}): no such row; lock it first"
                )

    def _insert_if_missing(self, projection_id: str) -> None:
        """Create ``projection_id``'s row unless it exists, without failing on a race."""
        using = self.using
        connection = connections[using]
        if connection.vendor == "mysql":
            # INSERT IGNORE of a duplicate takes a *shared* lock on the row;
            # several lockers upgrading theirs to exclusive would deadlock.
            # ON DUPLICATE KEY UPDATE takes the exclusive lock at once.
            table = connection.ops.quote_name(ProjectionStateRecord._meta.db_table)
            column = connection.ops.quote_name("projection_id")
            with connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} ({column}, last_processed_position, "
                    "events_processed, error_count, is_healthy, paused, updated_at) "
                    "VALUES (%s, 0, 0, 0, TRUE, FALSE, %s) "
                    f"ON DUPLICATE KEY UPDATE {column} = {column}",
                    [
                        projection_id,
                        connection.ops.adapt_datetimefield_value(datetime.now(UTC)),
                    ],
                )
            return
        # PostgreSQL: ON CONFLICT DO NOTHING waits for a concurrent inserter
        # to finish, then does nothing; SQLite: INSERT OR IGNORE.
        self._records().bulk_create(
            [ProjectionStateRecord(projection_id=projection_id, updated_at=datetime.now(UTC))],
            ignore_conflicts=True,
        )

    def set_paused(self, projection_id: str, paused: bool) -> None:
        """Pause or resume ``projection_id`` (creating its row when it has none).

        The checkpoint and health are left as they are. Runners check the flag
        with :meth:`lock` or :meth:`is_paused`.
        """
        self._upsert(
            ProjectionStateRecord(
                projection_id=projection_id, paused=bool(paused), updated_at=datetime.now(UTC)
            ),
            ["paused"],
        )

    def is_paused(self, projection_id: str) -> bool:
        """Whether an operator paused ``projection_id`` (False when it has no row)."""
        return self._records().filter(pk=projection_id, paused=True).exists()

    def list_states(self) -> builtins.list[StoredProjectionState]:
        """Every stored projection with its pause flag, by projection id."""
        return [
            StoredProjectionState(_to_state(record), bool(record.paused))
            for record in self._records().order_by("projection_id")
        ]

    def _upsert(self, record: ProjectionStateRecord, columns: builtins.list[str]) -> None:
        """Insert ``record``, or update ``columns`` of the existing row, in one statement."""
        features = connections[self.using].features
        # MySQL's ON DUPLICATE KEY UPDATE takes no conflict target.
        target = ["projection_id"] if features.supports_update_conflicts_with_target else None
        self._records().bulk_create(
            [record], update_conflicts=True, unique_fields=target, update_fields=columns
        )


_STATE_FIELDS = [
    "projection_id",
    *_STATE_COLUMNS[:-1],
    "updated_at",
    "paused",
]
_LOCK_QUERY = "SELECT {columns} FROM {table} WHERE {key} = %s FOR UPDATE"
_UPDATE_QUERY = "UPDATE {table} SET {assignments} WHERE {key} = %s"
_SQL_CACHE: dict[tuple[str, str], str] = {}


def _sql(connection: Any, query: str) -> str:
    """``query`` with this backend's quoted table and column names (built once)."""
    key = (connection.vendor, query)
    sql = _SQL_CACHE.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sql = _SQL_CACHE[key] = query.format(
            table=quote(ProjectionStateRecord._meta.db_table),
            columns=", ".join(quote(name) for name in _STATE_FIELDS),
            assignments=", ".join(f"{quote(name)} = %s" for name in _STATE_COLUMNS),
            key=quote("projection_id"),
        )
    return sql


def _locked_state(row: tuple[Any, ...]) -> StoredProjectionState:
    """A row of :data:`_LOCK_QUERY` as the state and the pause flag."""
    (
        projection_id,
        last_event_id,
        position,
        processed,
        errors,
        healthy,
        last_error,
        updated_at,
        paused,
    ) = row
    if isinstance(updated_at, str):  # SQLite
        updated_at = datetime.fromisoformat(updated_at)
    if updated_at.tzinfo is None:  # SQLite and MySQL store UTC without a zone
        updated_at = updated_at.replace(tzinfo=UTC)
    state = ProjectionState(
        projection_id=projection_id,
        last_processed_event_id=last_event_id,
        last_processed_position=int(position),
        updated_at=updated_at.astimezone(UTC),
        error_count=int(errors),
        is_healthy=bool(healthy),
        last_error=last_error,
        events_processed=int(processed),
    )
    return StoredProjectionState(state, bool(paused))


def _to_state(record: ProjectionStateRecord) -> ProjectionState:
    return ProjectionState(
        projection_id=record.projection_id,
        last_processed_event_id=record.last_processed_event_id,
        last_processed_position=int(record.last_processed_position),
        updated_at=_aware_utc(record.updated_at),
        error_count=int(record.error_count),
        is_healthy=bool(record.is_healthy),
        last_error=record.last_error,
        events_processed=int(record.events_processed),
    )


def _aware_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("Orchestrix needs USE_TZ = True (stored timestamps are naive)")
    return moment.astimezone(UTC)


class DjangoAsyncProjectionStateStore:
    """The async twin of :class:`DjangoProjectionStateStore`
    (:class:`~orchestrix.core.eventsourcing.projection.AsyncProjectionStateStore`).

    Each call runs the synchronous store with ``sync_to_async``. :meth:`lock`
    has no async twin: a row lock belongs to a transaction, and a transaction
    to one thread; take it in the synchronous code that runs the batch.
    """

    def __init__(self, using: str | None = None) -> None:
        self.sync_store = DjangoProjectionStateStore(using)

    @property
    def using(self) -> str:
        """The database alias."""
        return self.sync_store.using

    async def load_state(self, projection_id: str) -> ProjectionState | None:
        """The saved state of ``projection_id``, or None."""
        return await sync_to_async(self.sync_store.load_state)(projection_id)

    async def save_state(self, state: ProjectionState) -> None:
        """Store ``state``, replacing the saved state of its projection."""
        await sync_to_async(self.sync_store.save_state)(state)

    async def delete_state(self, projection_id: str) -> None:
        """Forget ``projection_id``'s state (a no-op when there is none)."""
        await sync_to_async(self.sync_store.delete_state)(projection_id)

    async def set_paused(self, projection_id: str, paused: bool) -> None:
        """Pause or resume ``projection_id``."""
        await sync_to_async(self.sync_store.set_paused)(projection_id, paused)

    async def is_paused(self, projection_id: str) -> bool:
        """Whether an operator paused ``projection_id``."""
        return await sync_to_async(self.sync_store.is_paused)(projection_id)

    async def list_states(self) -> builtins.list[StoredProjectionState]:
        """Every stored projection with its pause flag, by projection id."""
        return await sync_to_async(self.sync_store.list_states)()
