"""The demo's runs in the admin (read-only)."""

from __future__ import annotations

from django.contrib import admin

from example_project.common.admin import ReadModelAdmin
from example_project.demo.models import DemoRun


@admin.register(DemoRun)
class DemoRunAdmin(ReadModelAdmin):
    """What each run of ``orchestrix_demo`` generated."""

    list_display = [
        "number",
        "size",
        "seed",
        "commands",
        "accepted",
        "invalid",
        "refused",
        "sagas_started",
        "started_at",
        "finished_at",
    ]
