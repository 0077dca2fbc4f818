"""The append lock row, and on PostgreSQL a trigger that keeps events append-only.

The trigger refuses UPDATE and DELETE of stored events. An operator who must
change history (erasing personal data, say) can allow it for one transaction
with ``SET LOCAL orchestrix.allow_event_mutation = 'on'``.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

APPEND_ONLY_SQL = """
CREATE OR REPLACE FUNCTION orchestrix_refuse_event_mutation() RETURNS trigger AS $$
BEGIN
    IF current_setting('orchestrix.allow_event_mutation', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'orchestrix_event is append-only: % of stored events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Events are history. To change it anyway, run SET LOCAL '
                     'orchestrix.allow_event_mutation = ''on'' in the same transaction.';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER orchestrix_event_append_only
    BEFORE UPDATE OR DELETE ON orchestrix_event
    FOR EACH ROW EXECUTE FUNCTION orchestrix_refuse_event_mutation();
"""

DROP_APPEND_ONLY_SQL = """
DROP TRIGGER IF EXISTS orchestrix_event_append_only ON orchestrix_event;
DROP FUNCTION IF EXISTS orchestrix_refuse_event_mutation();
"""


def create_lock_row(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    AppendLock = apps.get_model("orchestrix_django", "AppendLock")
    AppendLock.objects.using(schema_editor.connection.alias).get_or_create(id=1)


def install_append_only_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY_SQL, params=None)


def remove_append_only_trigger(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_ONLY_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("orchestrix_django", "0001_initial")]

    operations = [
        migrations.RunPython(create_lock_row, migrations.RunPython.noop),
        migrations.RunPython(install_append_only_trigger, remove_append_only_trigger),
    ]
