"""The Django app configuration of Orchestrix."""

from __future__ import annotations

import importlib
from typing import Any

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class OrchestrixConfig(AppConfig):
    """Registers the system checks, imports the configured event modules,
    registers the configured modules with the message bus and puts the
    ``orchestrix`` logger's warnings on the console (unless ``LOGGING`` configures it)."""

    name = "orchestrix_django"
    label = "orchestrix_django"
    verbose_name = "Orchestrix"
    # Pinned, so a project's DEFAULT_AUTO_FIELD never makes new migrations for us.
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from orchestrix_django import checks  # noqa: F401 - registers the checks
        from orchestrix_django.observability.console import install_console_handler
        from orchestrix_django.settings import orchestrix_settings

        install_console_handler()
        post_migrate.connect(_ensure_append_lock_row, sender=self)
        _import_event_modules(orchestrix_settings)
        _wire_modules()
        _connect_wake_up()


def _import_event_modules(orchestrix_settings: Any) -> None:
    """Import ``EVENT_MODULES`` so that their event classes are registered."""
    # Errors here surface as system checks with the setting named: E004 for a
    # module that does not import, E006 for ORCHESTRIX or EVENT_MODULES of the
    # wrong kind. Raising here instead would end start-up with a traceback
    # (a string for EVENT_MODULES was imported character by character).
    try:
        modules = orchestrix_settings.user_settings.get("EVENT_MODULES", [])
    except ImproperlyConfigured:
        return
    if not isinstance(modules, list | tuple):
        return
    for module in modules:
        if not isinstance(module, str):
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            continue


def _wire_modules() -> None:
    """Connect the bus to ``events_committed`` and register ``MODULES`` with it.

    Safe to run again (``ready()`` runs twice in some test set-ups): a module
    already registered with the bus is not registered twice. Entries that
    can't be wired are skipped here and reported by the check E007.
    """
    from orchestrix_django.bus import connect_signals, wire_modules

    connect_signals()
    wire_modules()


def _connect_wake_up() -> None:
    """Connect the Celery wake-ups to ``events_committed`` (they act only when
    ``ORCHESTRIX["WAKE_UP"] == "celery"``; Celery is imported only then)."""
    from orchestrix_django.wakeup import connect_wake_up

    connect_wake_up()


def _ensure_append_lock_row(using: str = "default", **kwargs: Any) -> None:
    """Recreate the append lock row after ``migrate`` or ``flush`` (tests truncate it)."""
    from django.db import connections, router

    from orchestrix_django.models import AppendLock

    # post_migrate is sent after every migrate, also one that unapplied our
    # migrations (`migrate orchestrix_django zero`), migrated only another app
    # before ours, or ran on a database our tables are routed away from: only
    # touch the table where it exists.
    if not router.allow_migrate_model(using, AppendLock):
        return
    table = AppendLock._meta.db_table
    if table not in connections[using].introspection.table_names():
        return
    AppendLock.objects.using(using).get_or_create(id=1)
