"""App config of the benchmark app."""

from __future__ import annotations

from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    """The benchmark suite's models (read model, raw baseline table)."""

    name = "benchmarks.benchapp"
    label = "benchapp"
    default_auto_field = "django.db.models.BigAutoField"
