"""A record of each ``orchestrix_demo`` run: what it generated, so a second run adds more."""

from __future__ import annotations

from django.db import models

__all__ = ["DemoRun"]


class DemoRun(models.Model):
    """One run of the demo's workload (its number makes the ids of the run unique)."""

    number = models.PositiveIntegerField(unique=True)
    seed = models.BigIntegerField()
    size = models.CharField(max_length=16)
    commands = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    invalid = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    sagas_started = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"demo run {self.number} ({self.size}, seed {self.seed})"
