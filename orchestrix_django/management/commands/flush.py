"""``python manage.py flush``: Django's flush, which never erases stored events without a word.

Stored events are append-only: the database's triggers refuse to delete (and,
on PostgreSQL, to truncate) them, so Django's own ``flush`` would fail on a
database with the event table. This command, which replaces Django's in every
project that installs ``orchestrix_django``, runs it inside
:func:`~orchestrix_django.storage.append_only.allow_event_mutation` when

* the database is a test database set up by Django's test runner or
  pytest-django: ``TransactionTestCase``, ``LiveServerTestCase`` and
  ``transactional_db`` tests flush every table between tests, as they always
  did;
* or the event log is empty;
* or ``--erase-events`` is given: the operator said so.

Otherwise it refuses, saying how many events the database holds.
"""

from __future__ import annotations

import os
from contextlib import suppress
from importlib import import_module
from typing import Any

from django.apps import apps
from django.core import mail
from django.core.management.base import CommandError, CommandParser
from django.core.management.color import no_style
from django.core.management.commands import flush
from django.core.management.sql import emit_post_migrate_signal
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.creation import TEST_DATABASE_PREFIX

from orchestrix_django.management.console import confirm, count
from orchestrix_django.models import EventRecord
from orchestrix_django.storage.append_only import EVENT_TABLE, PERMIT_TABLE, allow_event_mutation

__all__ = ["Command"]


class Command(flush.Command):
    """Django's ``flush``, erasing stored events only where that is meant (see the module)."""

    help = (
        f"{flush.Command.help} Stored events (orchestrix_event) are erased only on a test "
        "database set up by Django's test runner or pytest-django, when there are none, or "
        "with --erase-events; otherwise the command refuses and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """Django's arguments and ``--erase-events``."""
        super().add_arguments(parser)
        parser.add_argument(
            "--erase-events",
            action="store_true",
            help="Erase the stored events too (history: projections, audits and aggregates "
            "all come from them). Without it, flush refuses on a database holding events, "
            "unless it is a test database.",
        )

    def handle(self, **options: Any) -> None:
        """Flush, inside ``allow_event_mutation`` where events may be erased."""
        using = options["database"]
        connection = connections[using]
        if EVENT_TABLE not in connection.introspection.table_names():
            super().handle(**options)
            return
        if not options["erase_events"] and not is_test_database(connection):
            stored = EventRecord.objects.using(using).count()
            if stored:
                raise CommandError(
                    f"the database {using!r} holds {count(stored)} stored event(s), the "
                    "system's history, and flush would erase them. Nothing was changed. To "
                    "erase them anyway, run flush --erase-events."
                )
        if options["interactive"]:
            confirm(
                "You have requested a flush of the database. This will IRREVERSIBLY DESTROY "
                f"all data currently in the {connection.settings_dict['NAME']!r} database, "
                "stored events included, and return each table to an empty state. Are you "
                "sure you want to do this?",
                interactive=True,
            )
        # Django's flush, but for the permit table: its only row is the one of the
        # block below, which must last until the events are gone (flush deletes
        # table by table on SQLite and MariaDB).
        for app_config in apps.get_app_configs():  # their post_migrate receivers
            with suppress(ImportError):
                import_module(".management", app_config.name)
        tables = connection.introspection.django_table_names(
            only_existing=True, include_views=False
        )
        sql_list = connection.ops.sql_flush(
            no_style(),
            [table for table in tables if table != PERMIT_TABLE],
            reset_sequences=options.get("reset_sequences", True),
            allow_cascade=options.get("allow_cascade", False),
        )
        try:
            with allow_event_mutation(using):
                connection.ops.execute_sql_flush(sql_list)
        except DatabaseError as error:
            raise CommandError(f"the database {using!r} could not be flushed: {error}") from error
        if sql_list and not options.get("inhibit_post_migrate", False):
            emit_post_migrate_signal(options["verbosity"], options["interactive"], using)


def is_test_database(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``connection`` is a test database that Django's test runner set up.

    The test environment must be set up (``setup_test_environment``, which
    Django's runner and pytest-django call, creates ``mail.outbox``) and the
    database's name must be one the runner gives: its ``TEST["NAME"]``, the
    ``test_`` prefix, an in-memory SQLite database, or a clone of one of those
    for a parallel worker (suffix ``_1``, ``_2``, ...).
    """
    if not hasattr(mail, "outbox"):
        return False
    if connection.vendor == "sqlite" and connection.is_in_memory_db():  # type: ignore[attr-defined]
        return True
    name = str(connection.settings_dict["NAME"])
    test_name = connection.settings_dict.get("TEST", {}).get("NAME")
    if not test_name:
        return os.path.basename(name).startswith(TEST_DATABASE_PREFIX)
    root, extension = os.path.splitext(str(test_name))
    clone = name.removeprefix(root + "_").removesuffix(extension)
    return name == test_name or (name != clone and clone.isdigit())
