"""Bulk seeding: a million events in seconds, written by the database itself.

The rows are what ``DjangoEventStore.save`` would have stored for
:class:`~benchmarks.benchapp.events.Deposited` events (same columns, JSON
shapes and event type), generated server-side (``generate_series`` on
PostgreSQL, a recursive CTE on SQLite), so that the catch-up and memory
workloads start from a large log without spending minutes appending it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
import zlib
from typing import Any

from benchmarks.db import DbConfig
from benchmarks.raw import RawDb

__all__ = ["clear_log", "peer_seed_id", "seed_log", "seed_peer_log"]

#: Rows per INSERT … SELECT statement (one transaction each).
_CHUNK = 200_000


def clear_log(config: DbConfig) -> None:
    """Empty Orchestrix's tables and the read model (positions restart at 1).

    Stored events are append-only: the database's triggers let them go only
    inside ``allow_event_mutation``, on Django's connection to this database.
    """
    from django.db import connection

    from orchestrix_django.storage.append_only import allow_event_mutation

    tables = [
        "orchestrix_event",
        "orchestrix_stream",
        "orchestrix_snapshot",
        "orchestrix_projection_state",
        "orchestrix_dead_letter",
        "bench_balance",
    ]
    with allow_event_mutation(), connection.cursor() as cursor:
        if config.is_postgresql:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        else:
            for table in tables:
                cursor.execute(f"DELETE FROM {table}")
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = 'orchestrix_event'")


def seed_log(config: DbConfig, count: int, stream_length: int, prefix: str = "seed") -> float:
    """Append ``count`` events, ``stream_length`` per stream, in bulk; the seconds it took.

    Stream ``{prefix}-{k}`` gets versions 1..stream_length; event ids are
    ``{prefix}-{n}``. ``stream_length >= count`` makes one stream.
    """
    started = time.perf_counter()
    raw = RawDb(config)
    try:
        for first in range(0, count, _CHUNK):
            last = min(first + _CHUNK, count) - 1
            if config.is_postgresql:
                raw.conn.execute(
                    _PG_SEED,
                    {"first": first, "last": last, "length": stream_length, "prefix": prefix},
                )
            else:
                raw.conn.execute("BEGIN")
                raw.conn.execute(
                    _SQLITE_SEED,
                    {"first": first, "last": last, "length": stream_length, "prefix": prefix},
                )
                raw.conn.execute("COMMIT")
        if config.is_postgresql:
            raw.execute("ANALYZE orchestrix_event")
        else:
            raw.execute("ANALYZE orchestrix_event")
    finally:
        raw.close()
    return time.perf_counter() - started


_PG_SEED = """
INSERT INTO orchestrix_event
    (stream_id, version, event_id, event_type, schema_version, data, metadata,
     timestamp, recorded_at)
SELECT %(prefix)s || '-' || (i / %(length)s), (i %% %(length)s) + 1,
       %(prefix)s || '-' || i, 'Deposited', 1,
       jsonb_build_object('account_id', %(prefix)s || '-' || (i / %(length)s),
                          'amount', 1, 'seq', (i %% %(length)s) + 1),
       '{}'::jsonb, now(), now()
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

_SQLITE_SEED = """
WITH RECURSIVE s(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM s WHERE i < :last)
INSERT INTO orchestrix_event
    (stream_id, version, event_id, event_type, schema_version, data, metadata,
     timestamp, recorded_at)
SELECT :prefix || '-' || (i / :length), (i % :length) + 1, :prefix || '-' || i, 'Deposited', 1,
       json_object('account_id', :prefix || '-' || (i / :length), 'amount', 1,
                   'seq', (i % :length) + 1),
       '{}', strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now')
FROM s
"""


def peer_seed_id(config: DbConfig, prefix: str, k: int) -> str:
    """The id :func:`seed_peer_log` gives the ``k``-th aggregate it seeds with ``prefix``."""
    if config.is_postgresql:
        return str(uuid.UUID(hashlib.md5(f"{prefix}-{k}".encode()).hexdigest()))
    # The SQLite recorder stores UUIDs as 32 hex digits (see _SQLITE_PEER_SEED).
    return str(uuid.UUID(f"{zlib.crc32(prefix.encode()):08x}0000400080{k:014x}"))


def seed_peer_log(
    config: DbConfig, peer: Any, count: int, stream_length: int, prefix: str = "peer-seed"
) -> float:
    """The same log for the ``eventsourcing`` peer (its table, its encoding); seconds taken.

    The stored state of a real creation and deposit event is repeated with
    generated aggregate ids (see :func:`peer_seed_id`) and versions.
    """
    started = time.perf_counter()
    account = peer.new_account()
    created, deposited = (
        peer.app.mapper.to_stored_event(e) for e in peer.pending(account, 2, with_creation=True)
    )
    params: dict[str, Any] = {
        "prefix": prefix,
        "tag": zlib.crc32(prefix.encode()),
        "length": stream_length,
        "ctopic": created.topic,
        "cstate": created.state,
        "dtopic": deposited.topic,
        "dstate": deposited.state,
    }
    if config.is_postgresql:
        raw = RawDb(config)
        try:
            table = peer.app.recorder.events_table_name
            for first in range(0, count, _CHUNK):
                last = min(first + _CHUNK, count) - 1
                raw.conn.execute(
                    _PG_PEER_SEED.format(table=table), {**params, "first": first, "last": last}
                )
            raw.execute(f"ANALYZE {table}")
        finally:
            raw.close()
    else:
        import sqlite3

        conn = sqlite3.connect(config.peer_sqlite_path, timeout=60, isolation_level=None)
        try:
            table = peer.app.recorder.events_table_name
            for first in range(0, count, _CHUNK):
                last = min(first + _CHUNK, count) - 1
                conn.execute("BEGIN")
                conn.execute(
                    _SQLITE_PEER_SEED.format(table=table), {**params, "first": first, "last": last}
                )
                conn.execute("COMMIT")
        finally:
            conn.close()
    return time.perf_counter() - started


_PG_PEER_SEED = """
INSERT INTO {table} (originator_id, originator_version, topic, state)
SELECT md5(%(prefix)s || '-' || (i / %(length)s))::uuid, (i %% %(length)s) + 1,
       CASE WHEN i %% %(length)s = 0 THEN %(ctopic)s ELSE %(dtopic)s END,
       CASE WHEN i %% %(length)s = 0 THEN %(cstate)s::bytea ELSE %(dstate)s::bytea END
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

_SQLITE_PEER_SEED = """
WITH RECURSIVE s(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM s WHERE i < :last)
INSERT INTO {table} (originator_id, originator_version, topic, state)
SELECT printf('%08x0000400080%014x', :tag, i / :length), (i % :length) + 1,
       CASE WHEN i % :length = 0 THEN :ctopic ELSE :dtopic END,
       CASE WHEN i % :length = 0 THEN :cstate ELSE :dstate END
FROM s
"""
