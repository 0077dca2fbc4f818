"""The Django app configuration of Orchestrix."""

from __future__ import annotations

import importlib
from typing import Any

from django.apps import AppConfig


class OrchestrixConfig(AppConfig):
    """Registers the system checks and imports the configured event modules."""

    name = "orchestrix_django"
    label = "orchestrix_django"
    verbose_name = "Orchestrix"
    # Pinned, so a project's DEFAULT_AUTO_FIELD never makes new migrations for us.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from orchestrix_django import checks  # noqa: F401 - registers the checks
        from orchestrix_django.conf import orchestrix_settings

        post_migrate.connect(_ensure_append_lock_row, sender=self)

        # Errors here surface as system check orchestrix.E004, with the setting named.
        for module in orchestrix_settings.user_settings.get("EVENT_MODULES", []):
            try:
                importlib.import_module(module)
            except ImportError:
                continue


def _ensure_append_lock_row(using: str = "default", **kwargs: Any) -> None:
    """Recreate the append lock row after ``migrate`` or ``flush`` (tests truncate it)."""
    from orchestrix_django.models import AppendLock

    AppendLock.objects.using(using).get_or_create(id=1)
