"""Stored events stay append-only on every database, lifted only by a per-transaction permit.

Triggers refuse UPDATE and DELETE of events on SQLite, MariaDB/MySQL and
PostgreSQL (and TRUNCATE on PostgreSQL, where they also fire in replica mode
and, when the migrating user is a superuser, an event trigger refuses DDL that
disables or replaces them), unless the transaction holds a permit row of
``orchestrix_event_permit`` (``allow_event_mutation``). They replace the
trigger of migration 0002, which a session-level setting could lift.

On MariaDB/MySQL a user that may not create triggers (binary logging on
without SUPER, as on most managed servers) still migrates: the ORM guard
holds, and the system check ``orchestrix.W022`` says how to install the
triggers (``python manage.py orchestrix_append_only --install`` as a user who
may, or its ``--sql`` for a DBA).
"""

import importlib
import logging

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from orchestrix_django.storage.append_only import GuardInstall, install_guard, remove_guard

logger = logging.getLogger("orchestrix")


def install(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    using = schema_editor.connection.alias
    if install_guard(using) is GuardInstall.REFUSED:
        logger.warning(
            "the database user may not create triggers on %r: stored events are kept "
            "append-only by the ORM only (see the system check orchestrix.W022)",
            using,
        )


def remove(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    remove_guard(schema_editor.connection.alias)
    # Back to migration 0002's trigger, on PostgreSQL.
    importlib.import_module(
        "orchestrix_django.migrations.0002_append_lock_and_append_only_events"
    ).install_append_only_trigger(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("orchestrix_django", "0005_subject_keys")]

    operations = [
        migrations.CreateModel(
            name="EventMutationPermit",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("holder", models.CharField(max_length=64)),
            ],
            options={
                "db_table": "orchestrix_event_permit",
                "indexes": [models.Index(fields=["holder"], name="orchestrix_event_permit_holder")],
            },
        ),
        migrations.AlterModelOptions(
            name="eventrecord",
            options={
                "base_manager_name": "objects",
                "ordering": ["position"],
                "verbose_name": "event",
            },
        ),
        migrations.RunPython(install, remove),
    ]
