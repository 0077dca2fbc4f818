"""Django models behind the event store, snapshots, projections, sagas and dead letters.

The event table is the source of truth and is append-only (the ORM refuses
to change or delete its rows, and so do the database's triggers: see
:mod:`orchestrix_django.storage.append_only`); everything else can be rebuilt from it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from django.db import models
from django.db.models.signals import class_prepared, pre_delete
from django.utils import timezone

from orchestrix_django.storage.append_only import EVENT_TABLE, PERMIT_TABLE, check_event_mutation

__all__ = [
    "ActiveProjection",
    "AppendLock",
    "DeadLetterRecord",
    "EventMutationPermit",
    "EventRecord",
    "ProjectionStateRecord",
    "SagaStateRecord",
    "SnapshotRecord",
    "StreamRecord",
    "SubjectKey",
]


class EventQuerySet(models.QuerySet["EventRecord"]):
    """Queries of stored events: reads and inserts, no changes.

    ``update()`` (and so ``bulk_update()``), ``delete()``, ``_raw_delete()``
    and upserts (``bulk_create(update_conflicts=True)``) raise
    :class:`~orchestrix_django.storage.append_only.EventMutationError` outside
    :func:`~orchestrix_django.storage.append_only.allow_event_mutation`, before any
    row is read. ``bulk_create(ignore_conflicts=True)`` changes no stored row
    and is allowed.
    """

    def update(self, **kwargs: Any) -> int:
        """Refused: stored events are history (see the class)."""
        check_event_mutation("UPDATE", self.db)
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        """Refused: stored events are history (see the class)."""
        check_event_mutation("DELETE", self.db)
        return super().delete()

    def _raw_delete(self, using: str | None) -> int:
        check_event_mutation("DELETE", using or self.db)
        return super()._raw_delete(using)

    def bulk_create(
        self,
        objs: Iterable[EventRecord],
        batch_size: int | None = None,
        ignore_conflicts: bool = False,
        update_conflicts: bool = False,
        update_fields: Collection[str] | None = None,
        unique_fields: Collection[str] | None = None,
    ) -> list[EventRecord]:
        """Insert events; an upsert (``update_conflicts=True``) is refused (see the class)."""
        if update_conflicts:
            check_event_mutation("UPDATE", self.db)
        return super().bulk_create(
            objs,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            update_conflicts=update_conflicts,
            update_fields=update_fields,
            unique_fields=unique_fields,
        )


class EventRecord(models.Model):
    """One stored event: a row of the global log and of its stream.

    ``position`` orders the whole log (commit-safe: see the store), ``version``
    orders the stream (1, 2, 3, …); ``data`` holds the event's own fields and
    ``metadata`` its other CloudEvents attributes.
    """

    position = models.BigAutoField(primary_key=True)
    stream_id = models.CharField(max_length=255)
    version = models.PositiveBigIntegerField()
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=255)
    schema_version = models.PositiveIntegerField(default=1)
    data = models.JSONField()
    metadata = models.JSONField(default=dict)
    timestamp = models.DateTimeField()
    correlation_id = models.CharField(max_length=255, null=True, blank=True)
    causation_id = models.CharField(max_length=255, null=True, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    objects = EventQuerySet.as_manager()

    class Meta:
        db_table = EVENT_TABLE
        # Django's own machinery (saving, related lookups) and `_base_manager`
        # use this manager too, so they get the refusals of EventQuerySet.
        base_manager_name = "objects"
        ordering = ["position"]
        verbose_name = "event"
        constraints = [
            # Optimistic locking, enforced by the database: two writers cannot
            # both append version N of one stream.
            models.UniqueConstraint(
                fields=["stream_id", "version"], name="orchestrix_event_stream_version"
            ),
            # Makes a retried save detectable, and events findable by id.
            models.UniqueConstraint(fields=["event_id"], name="orchestrix_event_id"),
        ]
        # Declared here, not with db_index=True: on PostgreSQL that would add a
        # second "_like" index per text column, updated on every append for
        # prefix searches nothing makes.
        indexes = [
            models.Index(fields=["event_type"], name="orchestrix_event_type"),
            models.Index(fields=["timestamp"], name="orchestrix_event_timestamp"),
            models.Index(fields=["correlation_id"], name="orchestrix_event_correlation"),
            models.Index(fields=["causation_id"], name="orchestrix_event_causation"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}@{self.version} {self.event_type}"

    def _do_update(
        self,
        base_qs: models.QuerySet[EventRecord],
        using: Any,
        pk_val: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Every ``save()`` over a stored row is refused (see ``storage.append_only``).

        Django calls this whenever the instance has a primary key (``save()``,
        ``update_or_create``, ``loaddata``): a row that is not stored yet is
        inserted, one that is raises ``EventMutationError``.
        """
        if base_qs.filter(pk=pk_val).exists():
            check_event_mutation("UPDATE", base_qs.db)
            return super()._do_update(base_qs, using, pk_val, *args, **kwargs)
        return False


def _refuse_collected_delete(sender: type[models.Model], instance: Any, **kwargs: Any) -> None:
    """Refuse deleting events through Django's collector (see ``_guard_deletes``)."""
    check_event_mutation("DELETE", kwargs.get("using") or instance._state.db or "default")


def _guard_deletes(sender: type[models.Model], **kwargs: Any) -> None:
    """Connect the refusal to ``pre_delete`` of EventRecord and of its proxies and children.

    Every deletion through the collector sends ``pre_delete`` for each row:
    ``instance.delete()``, the ``delete()`` of any queryset (one built as
    ``QuerySet(EventRecord)`` too) and cascades. A receiver also turns off the
    collector's fast path, which would delete without reading the rows.
    """
    if issubclass(sender, EventRecord):
        pre_delete.connect(_refuse_collected_delete, sender=sender, weak=False)


class EventMutationPermit(models.Model):
    """A permit to change stored events, valid only in the transaction that holds it.

    Written and deleted only by :func:`~orchestrix_django.storage.append_only.allow_event_mutation`;
    the database's triggers refuse to change events unless the current
    transaction holds one (``holder``: see :mod:`orchestrix_django.storage.append_only`).
    """

    id = models.BigAutoField(primary_key=True)
    holder = models.CharField(max_length=64)

    class Meta:
        db_table = PERMIT_TABLE
        indexes = [models.Index(fields=["holder"], name="orchestrix_event_permit_holder")]

    def __str__(self) -> str:
        return self.holder


_guard_deletes(EventRecord)
class_prepared.connect(_guard_deletes, weak=False)


class StreamRecord(models.Model):
    """A summary row per stream, kept up to date on append (cheap stream lists)."""

    stream_id = models.CharField(max_length=255, primary_key=True)
    aggregate_type = models.CharField(max_length=255, blank=True, default="")
    version = models.PositiveBigIntegerField(default=0)
    first_position = models.BigIntegerField(default=0)
    last_position = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "orchestrix_stream"
        ordering = ["-updated_at"]
        verbose_name = "stream"
        indexes = [
            models.Index(fields=["aggregate_type"], name="orchestrix_stream_type"),
            models.Index(fields=["last_position"], name="orchestrix_stream_last_pos"),
            models.Index(fields=["updated_at"], name="orchestrix_stream_updated"),
        ]

    def __str__(self) -> str:
        return self.stream_id


class SnapshotRecord(models.Model):
    """The latest snapshot of an aggregate (a cache: safe to delete)."""

    aggregate_id = models.CharField(max_length=255, primary_key=True)
    aggregate_type = models.CharField(max_length=255)
    version = models.PositiveBigIntegerField()
    state = models.JSONField()
    timestamp = models.DateTimeField()

    class Meta:
        db_table = "orchestrix_snapshot"
        verbose_name = "snapshot"

    def __str__(self) -> str:
        return f"{self.aggregate_type} {self.aggregate_id}@{self.version}"


class AppendLock(models.Model):
    """A single row that appends lock on databases without advisory locks.

    Holding its row lock from the insert to the commit makes commits happen
    in position order, so readers of the global log never skip an event.
    """

    id = models.PositiveSmallIntegerField(primary_key=True)
    appends = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "orchestrix_append_lock"


class ProjectionStateRecord(models.Model):
    """The checkpoint and health of one projection."""

    projection_id = models.CharField(max_length=255, primary_key=True)
    last_processed_event_id = models.CharField(max_length=255, null=True, blank=True)
    last_processed_position = models.BigIntegerField(default=0)
    events_processed = models.BigIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    is_healthy = models.BooleanField(default=True)
    last_error = models.TextField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "orchestrix_projection_state"
        verbose_name = "projection"

    def __str__(self) -> str:
        return self.projection_id


class SagaStateRecord(models.Model):
    """The persisted state of one saga, with its step history."""

    saga_id = models.CharField(max_length=255, primary_key=True)
    saga_type = models.CharField(max_length=255)
    status = models.CharField(max_length=32)
    current_step = models.CharField(max_length=255, null=True, blank=True)
    steps = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    error = models.TextField(null=True, blank=True)
    correlation_id = models.CharField(max_length=255, null=True, blank=True)
    causation_id = models.CharField(max_length=255, null=True, blank=True)
    trace_id = models.CharField(max_length=255, null=True, blank=True)
    deadline = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    version = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "orchestrix_saga_state"
        verbose_name = "saga"
        indexes = [
            models.Index(fields=["saga_type", "status"], name="orchestrix_saga_type_status"),
            models.Index(fields=["status", "created_at"], name="orchestrix_saga_status"),
            models.Index(fields=["correlation_id"], name="orchestrix_saga_correlation"),
            models.Index(fields=["deadline"], name="orchestrix_saga_deadline"),
            models.Index(fields=["created_at"], name="orchestrix_saga_created"),
        ]

    def __str__(self) -> str:
        return f"{self.saga_type} {self.saga_id}"


class DeadLetterRecord(models.Model):
    """A message that could not be handled, parked for an operator."""

    id = models.CharField(max_length=64, primary_key=True)
    source = models.CharField(max_length=255)
    status = models.CharField(max_length=16)
    message_type = models.CharField(max_length=255)
    message_id = models.CharField(max_length=255, null=True, blank=True)
    payload = models.JSONField(default=dict)
    reason = models.TextField()
    error_type = models.CharField(max_length=255)
    traceback = models.TextField(blank=True, default="")
    handler = models.CharField(max_length=255, null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    position = models.BigIntegerField(null=True, blank=True)
    stream_id = models.CharField(max_length=255, null=True, blank=True)
    version = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "orchestrix_dead_letter"
        verbose_name = "dead letter"
        indexes = [
            models.Index(fields=["source", "status", "created_at"], name="orchestrix_dl_source"),
            models.Index(fields=["status", "created_at"], name="orchestrix_dl_status"),
            models.Index(fields=["message_id"], name="orchestrix_dl_message"),
        ]

    def __str__(self) -> str:
        return f"{self.source}: {self.message_type} ({self.status})"


class ActiveProjection(models.Model):
    """Which projection serves the reads of a read model, after a zero-downtime rebuild.

    ``name`` is the read model's name (the id of its first projection); without
    a row, that projection serves. ``orchestrix_rebuild`` writes the row when a
    new version has caught up (see :func:`orchestrix_django.projections.rebuild.switch_projection`).
    """

    name = models.CharField(max_length=255, primary_key=True)
    projection_id = models.CharField(max_length=255)
    replaced_projection_id = models.CharField(max_length=255, null=True, blank=True)
    switched_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "orchestrix_active_projection"
        verbose_name = "active projection"
        constraints = [
            # One projection serves one read model. (A constraint, not
            # unique=True: no PostgreSQL "_like" index twin.)
            models.UniqueConstraint(
                fields=["projection_id"], name="orchestrix_active_projection_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} -> {self.projection_id}"


class SubjectKey(models.Model):
    """The data key of one data subject (see :mod:`orchestrix_django.storage.personal_data`).

    The personal fields of that subject's events are encrypted with ``key``
    (32 random bytes; wrapped by ``ENCRYPTION_MASTER_KEY`` when ``wrapped``).
    Forgetting the subject sets ``key`` to NULL and ``deleted_at``: the row
    stays as a tombstone, so that new personal data is never stored for an
    erased subject under a fresh key.
    """

    subject_id = models.CharField(max_length=255, primary_key=True)
    key = models.BinaryField(null=True)
    wrapped = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "orchestrix_subject_key"
        verbose_name = "subject key"
