"""Read models of the test app, kept by its projections."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

from orchestrix_django.models import EventRecord


class AccountBalance(models.Model):
    """One row per bank account: the balance and how many events made it."""

    account_id = models.CharField(max_length=255, primary_key=True)
    owner = models.CharField(max_length=255)
    balance = models.DecimalField(max_digits=20, decimal_places=2, default=Decimal("0"))
    events = models.PositiveIntegerField(default=0)


class AppliedEvent(models.Model):
    """Every event a projection applied, to count double applications."""

    projection = models.CharField(max_length=64)
    event_id = models.CharField(max_length=64)
    position = models.BigIntegerField()


class SagaStepCall(models.Model):
    """The calls of one saga step (or compensation) of the test app, keyed by idempotency key.

    ``key`` is ``"<idempotency key>:<action|compensation|timeout>"``: the row is
    the step's effect, applied once whatever the number of calls; ``calls``
    counts the calls (a step interrupted by a crash is called again).
    """

    key = models.CharField(max_length=255, primary_key=True)
    saga_id = models.CharField(max_length=255)
    step = models.CharField(max_length=255)
    kind = models.CharField(max_length=16)
    calls = models.PositiveIntegerField(default=0)


class ArchivedEvent(EventRecord):
    """A model inheriting from ``EventRecord`` (multi-table): deleting one deletes its
    stored event too, through Django's collector (tests/django/test_append_only.py)."""

    archived_by = models.CharField(max_length=64, default="")


class EventRecordProxy(EventRecord):
    """A proxy of ``EventRecord``: its managers and deletions must refuse as the model's do."""

    class Meta:
        proxy = True
