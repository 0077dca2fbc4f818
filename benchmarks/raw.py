"""The raw-SQL baselines: the database driver alone, no ORM, no store.

:class:`RawDb` talks to the benchmark database through psycopg (PostgreSQL)
or the ``sqlite3`` module, with the same rows the store writes: inserts into
``bench_raw_event`` (``orchestrix_event``'s twin), reads of a stream, a keyset
scan of the log, each with the JSON encoding or decoding of the payload.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from benchmarks.db import DbConfig

__all__ = ["RawDb", "RawRow", "raw_rows"]

#: One event as the raw baselines insert it:
#: (stream_id, version, event_id, event_type, data, timestamp).
RawRow = tuple[str, int, str, str, dict[str, Any], datetime]

_COLUMNS = (
    "stream_id, version, event_id, event_type, schema_version, data, metadata, "
    "timestamp, correlation_id, causation_id, recorded_at"
)
_SCAN_COLUMNS = (
    "position, stream_id, version, event_id, event_type, schema_version, timestamp, data, metadata"
)


def raw_rows(stream_id: str, first_version: int, count: int) -> list[RawRow]:
    """``count`` rows for ``stream_id`` from ``first_version`` on, like the store's."""
    now = datetime.now(UTC)
    return [
        (
            stream_id,
            version,
            str(uuid.uuid4()),
            "Deposited",
            {"account_id": stream_id, "amount": 1, "seq": version},
            now,
        )
        for version in range(first_version, first_version + count)
    ]


class RawDb:
    """A raw driver connection to the benchmark database (autocommit, explicit transactions)."""

    def __init__(self, config: DbConfig) -> None:
        self.config = config
        self.postgresql = config.is_postgresql
        if self.postgresql:
            import psycopg

            self.conn: Any = psycopg.connect(**config.psycopg_kwargs(), autocommit=True)
        else:
            self.conn = sqlite3.connect(config.name, timeout=60, isolation_level=None)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    # -- writing ----------------------------------------------------------------

    def insert(self, rows: Sequence[RawRow], *, table: str = "bench_raw_event", lock: bool) -> None:
        """Insert ``rows`` in one transaction with one ``executemany``.

        ``lock``: PostgreSQL takes ``LOCK TABLE … IN EXCLUSIVE MODE`` first
        (how ``eventsourcing`` serialises writers); SQLite begins with
        ``BEGIN IMMEDIATE`` (the write lock at once) instead of a deferred
        ``BEGIN``.
        """
        recorded = datetime.now(UTC)
        if self.postgresql:
            from psycopg.types.json import Jsonb

            params = [
                (s, v, e, t, 1, Jsonb(d), Jsonb({}), ts, None, None, recorded)
                for s, v, e, t, d, ts in rows
            ]
            with self.conn.transaction(), self.conn.cursor() as cursor:
                if lock:
                    cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
                cursor.executemany(
                    f"INSERT INTO {table} ({_COLUMNS}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    params,
                )
            return
        stamp = _sqlite_datetime(recorded)
        params_lite = [
            (s, v, e, t, 1, json.dumps(d), "{}", _sqlite_datetime(ts), None, None, stamp)
            for s, v, e, t, d, ts in rows
        ]
        cursor = self.conn.cursor()
        cursor.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
        try:
            cursor.executemany(
                f"INSERT INTO {table} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params_lite,
            )
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    def is_unique_violation(self, error: BaseException) -> bool:
        """Whether ``error`` is a unique-constraint violation (a lost race)."""
        if self.postgresql:
            import psycopg

            return isinstance(error, psycopg.errors.UniqueViolation)
        return isinstance(error, sqlite3.IntegrityError)

    # -- reading -------------------------------------------------------------

    def stream(self, stream_id: str, *, table: str = "orchestrix_event") -> list[dict[str, Any]]:
        """The payloads of a stream in version order, JSON decoded."""
        if self.postgresql:
            with self.conn.cursor() as cursor:
                cursor.execute(
                    f"SELECT version, event_type, data, metadata, timestamp FROM {table} "
                    "WHERE stream_id = %s ORDER BY version",
                    (stream_id,),
                )
                return [row[2] for row in cursor.fetchall()]
        cursor = self.conn.execute(
            f"SELECT version, event_type, data, metadata, timestamp FROM {table} "
            "WHERE stream_id = ? ORDER BY version",
            (stream_id,),
        )
        out = []
        for row in cursor.fetchall():
            json.loads(row[3])
            out.append(json.loads(row[2]))
        return out

    def scan(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        """One keyset page of the global log after ``after``, payloads JSON decoded."""
        if self.postgresql:
            with self.conn.cursor() as cursor:
                cursor.execute(
                    f"SELECT {_SCAN_COLUMNS} FROM orchestrix_event WHERE position > %s "
                    "ORDER BY position LIMIT %s",
                    (after, limit),
                )
                rows: list[tuple[Any, ...]] = cursor.fetchall()
                return rows
        rows = self.conn.execute(
            f"SELECT {_SCAN_COLUMNS} FROM orchestrix_event WHERE position > ? "
            "ORDER BY position LIMIT ?",
            (after, limit),
        ).fetchall()
        return [(*row[:7], json.loads(row[7]), json.loads(row[8])) for row in rows]

    def scalar(self, sql: str) -> Any:
        """The first column of the first row of ``sql`` (no parameters)."""
        row = self.conn.execute(sql).fetchone()
        return row[0] if row else None

    def execute(self, sql: str) -> None:
        """Run one statement in its own transaction."""
        self.conn.execute(sql)


def _sqlite_datetime(moment: datetime) -> str:
    """A UTC datetime as Django's SQLite backend stores it."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ")
