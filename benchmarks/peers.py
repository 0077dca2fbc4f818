"""The peers: the ``eventsourcing`` package on PostgreSQL/SQLite, and ``eventsourcing-django``.

Both are driven at the layer that matches ``DjangoEventStore.save``: the
application's mapper encodes domain events (made beforehand, as the store's
events are) and its recorder inserts them in one transaction. Reads go
through the application's repository (aggregates) and the recorder's
``select_notifications`` plus the mapper (the log).

``eventsourcing`` uses its own tables (``esbench_events``…) in the same
benchmark database (on SQLite: in a file of its own next to the benchmark's,
as its table names are ``eventsourcing-django``'s), ``eventsourcing-django``
its Django models (``stored_events``) through the same Django connection as
Orchestrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.db import DbConfig, peer_available

__all__ = [
    "ES",
    "ES_DJANGO",
    "EsPeer",
    "available_peers",
    "make_peer",
]

#: The peers' names as they appear in the reports.
ES = "eventsourcing"
ES_DJANGO = "eventsourcing-django"


def available_peers(config: DbConfig) -> dict[str, str | None]:
    """Each peer's name → None when it can run here, else why not."""
    peers: dict[str, str | None] = {}
    peers[ES] = None if peer_available("eventsourcing") else "eventsourcing is not installed"
    if peers[ES] is None and config.is_postgresql and not peer_available("psycopg_pool"):
        peers[ES] = "psycopg_pool (eventsourcing[postgres]) is not installed"
    peers[ES_DJANGO] = (
        None if peer_available("eventsourcing_django") else "eventsourcing-django is not installed"
    )
    return peers


class EsPeer:
    """One ``eventsourcing`` application (PostgreSQL/SQLite recorder, or the Django one)."""

    def __init__(self, config: DbConfig, kind: str) -> None:
        from benchmarks.es_domain import EsAccount, EsBench

        self.kind = kind
        env: dict[str, str] = {"IS_SNAPSHOTTING_ENABLED": "y", "CREATE_TABLE": "y"}
        if kind == ES_DJANGO:
            env.update({"PERSISTENCE_MODULE": "eventsourcing_django", "DJANGO_DB_ALIAS": "default"})
        elif config.is_postgresql:
            env.update(
                {
                    "PERSISTENCE_MODULE": "eventsourcing.postgres",
                    "POSTGRES_DBNAME": config.name,
                    "POSTGRES_HOST": config.host,
                    "POSTGRES_PORT": config.port,
                    "POSTGRES_USER": config.user,
                    "POSTGRES_PASSWORD": config.password,
                    "POSTGRES_POOL_SIZE": "1",
                }
            )
        else:
            env.update(
                {
                    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                    "SQLITE_DBNAME": config.peer_sqlite_path,
                }
            )
        self.app: Any = EsBench(env=env)
        self.account = EsAccount

    def new_account(self) -> Any:
        """A new aggregate (its creation event pending)."""
        return self.account()

    def pending(self, account: Any, count: int, *, with_creation: bool) -> list[Any]:
        """``count`` pending events of ``account``: its creation event, then deposits."""
        for _ in range(count - (1 if with_creation else 0)):
            account.deposit(1, account.version + 1)
        return list(account.collect_events())

    def insert(self, events: Sequence[Any]) -> None:
        """Encode and insert ``events`` in one transaction (the recorder's own locking)."""
        mapper = self.app.mapper
        self.app.recorder.insert_events([mapper.to_stored_event(e) for e in events])

    def save(self, account: Any) -> None:
        """``Application.save``: the aggregate's pending events, optimistic by constraint."""
        self.app.save(account)

    def get(self, aggregate_id: Any) -> Any:
        """``repository.get``: latest snapshot, then the later events."""
        return self.app.repository.get(aggregate_id)

    def take_snapshot(self, aggregate_id: Any, version: int) -> None:
        """Store a snapshot at ``version``."""
        self.app.take_snapshot(aggregate_id, version=version)

    def read_notifications(self, after: int, limit: int) -> list[Any]:
        """One page of the log after ``after``, decoded to domain events."""
        mapper = self.app.mapper
        notifications = self.app.recorder.select_notifications(
            after, limit, inclusive_of_start=False
        )
        return [(n.id, mapper.to_domain_event(n)) for n in notifications]

    def is_integrity_error(self, error: BaseException) -> bool:
        """Whether ``error`` is the peer's lost race on a stream."""
        from eventsourcing.persistence import IntegrityError

        return isinstance(error, IntegrityError)

    def close(self) -> None:
        """Close the application's connections."""
        self.app.close()


def make_peer(config: DbConfig, kind: str) -> EsPeer:
    """The peer ``kind`` (:data:`ES` or :data:`ES_DJANGO`)."""
    return EsPeer(config, kind)
