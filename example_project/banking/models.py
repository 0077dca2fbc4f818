"""The banking read models: tables the projections keep up to date from the events.

They are views of the event log, never written by anything else: a replay
(``manage.py orchestrix_replay banking-accounts``) empties and rebuilds them.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

__all__ = ["AccountSummary", "LedgerEntry", "TransferSummary"]


class AccountSummary(models.Model):
    """One row per account: owner, balance and status, as of the last event applied."""

    account_id = models.CharField(max_length=64, primary_key=True)
    owner = models.CharField(max_length=100)
    currency = models.CharField(max_length=3)
    balance = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    status = models.CharField(max_length=16, default="open")
    deposits = models.PositiveIntegerField(default=0)
    withdrawals = models.PositiveIntegerField(default=0)
    #: Events of the account's stream applied so far (its version).
    version = models.PositiveIntegerField(default=0)
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["account_id"]
        verbose_name = "account"

    def __str__(self) -> str:
        return f"{self.account_id} ({self.owner})"


class LedgerEntry(models.Model):
    """Every movement of money, with the balance after it."""

    event_id = models.CharField(max_length=255, unique=True)
    account = models.ForeignKey(
        AccountSummary, on_delete=models.CASCADE, related_name="entries", db_constraint=False
    )
    kind = models.CharField(max_length=16)  # "deposit" or "withdrawal"
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    balance_after = models.DecimalField(max_digits=14, decimal_places=2)
    reference = models.CharField(max_length=200, blank=True)
    timestamp = models.DateTimeField()

    class Meta:
        ordering = ["account", "id"]
        verbose_name_plural = "ledger entries"

    def __str__(self) -> str:
        return f"{self.account_id} {self.kind} {self.amount}"


class TransferSummary(models.Model):
    """One row per transfer: requested, then completed or failed (with the reason)."""

    transfer_id = models.CharField(max_length=64, primary_key=True)
    source_id = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, default="requested")
    reason = models.TextField(blank=True)
    requested_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "transfer"

    def __str__(self) -> str:
        return f"{self.transfer_id} {self.source_id} -> {self.target_id} ({self.status})"
