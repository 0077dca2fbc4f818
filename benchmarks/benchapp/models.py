"""The benchmark app's tables.

* :class:`Balance`, the read model the upsert projection handler writes.
* :class:`RawEvent`, a copy of ``orchestrix_event`` (same columns, constraints
  and indexes) that the raw-SQL baselines insert into: "the database's
  limit" for the same rows, without the store's code in between.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

__all__ = ["Balance", "RawEvent"]


class Balance(models.Model):
    """One account's balance, kept by the ``bench-upsert`` projection."""

    account_id = models.CharField(max_length=255, primary_key=True)
    balance = models.BigIntegerField(default=0)
    events = models.BigIntegerField(default=0)

    class Meta:
        db_table = "bench_balance"

    def __str__(self) -> str:
        return f"{self.account_id}: {self.balance}"


class RawEvent(models.Model):
    """The raw baselines' event table: ``orchestrix_event``'s twin."""

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

    class Meta:
        db_table = "bench_raw_event"
        constraints = [
            models.UniqueConstraint(
                fields=["stream_id", "version"], name="bench_raw_event_stream_version"
            ),
            models.UniqueConstraint(fields=["event_id"], name="bench_raw_event_id"),
        ]
        indexes = [
            models.Index(fields=["event_type"], name="bench_raw_event_type"),
            models.Index(fields=["timestamp"], name="bench_raw_event_timestamp"),
            models.Index(fields=["correlation_id"], name="bench_raw_event_correlation"),
            models.Index(fields=["causation_id"], name="bench_raw_event_causation"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}@{self.version}"
