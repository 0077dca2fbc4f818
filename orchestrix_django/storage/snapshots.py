"""Snapshots of aggregates, one row per aggregate: the newest one is kept."""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, transaction

from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.eventsourcing.snapshot import Snapshot
from orchestrix_django.models import SnapshotRecord
from orchestrix_django.storage.limits import never_stored
from orchestrix_django.storage.rows import stream_version

__all__ = ["read_snapshot", "store_snapshot"]


def store_snapshot(using: str, snapshot: Snapshot, hooks: ObservabilityHooks) -> None:
    """Keep ``snapshot`` unless a newer one is stored; refuse one ahead of its stream."""
    with transaction.atomic(using=using):
        current = stream_version(using, snapshot.aggregate_id)
        if snapshot.version > current:
            raise ValueError(
                f"snapshot of {snapshot.aggregate_id!r} at version {snapshot.version} is "
                f"ahead of its stream (version {current})"
            )
        manager = SnapshotRecord.objects.using(using)
        stored = manager.select_for_update().filter(pk=snapshot.aggregate_id).first()
        if stored is not None and stored.version > snapshot.version:
            return
        values = {
            "aggregate_type": snapshot.aggregate_type,
            "version": snapshot.version,
            "state": snapshot.state,
            "timestamp": snapshot.timestamp,
        }
        if stored is None:
            try:
                with transaction.atomic(using=using):
                    manager.create(aggregate_id=snapshot.aggregate_id, **values)
            except IntegrityError:
                # A concurrent first snapshot: keep the newer of the two.
                manager.filter(pk=snapshot.aggregate_id, version__lte=snapshot.version).update(
                    **values
                )
        else:
            manager.filter(pk=snapshot.aggregate_id).update(**values)
    hooks.record_snapshot_saved(snapshot.aggregate_id, snapshot.version)


def read_snapshot(using: str, aggregate_id: str, hooks: ObservabilityHooks) -> Snapshot | None:
    """The newest snapshot of ``aggregate_id``, or None."""
    if never_stored(aggregate_id):
        return None
    record = SnapshotRecord.objects.using(using).filter(pk=aggregate_id).first()
    if record is None:
        return None
    hooks.record_snapshot_loaded(aggregate_id, record.version)
    return Snapshot(
        aggregate_id=record.aggregate_id,
        aggregate_type=record.aggregate_type,
        version=record.version,
        state=record.state,
        timestamp=_aware(record.timestamp),
    )


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("Orchestrix needs USE_TZ = True (stored timestamps are naive)")
    return moment
