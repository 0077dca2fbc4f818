"""On PostgreSQL, the append as one function call: lock, version check, insert, stream row.

``DjangoEventStore.save`` calls ``orchestrix_append`` (see
``orchestrix_django.storage.postgresql``): one round trip instead of one per
statement, and PL/pgSQL keeps the statements' plans for the session, so a save
is not planned again each time. The function is VOLATILE: under READ COMMITTED
each of its statements takes a new snapshot, so the version read after the lock
sees everything the previous lock holder committed (one statement that waited
for the lock would not).
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

APPEND_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION orchestrix_append(
    p_lock_key bigint,
    p_stream_id varchar,
    p_expected bigint,
    p_aggregate_type varchar,
    p_recorded_at timestamptz,
    p_events jsonb
) RETURNS TABLE (current_version bigint, event_position bigint, event_version bigint)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_current bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock_key);
    SELECT COALESCE(MAX(e.version), 0) INTO v_current
    FROM orchestrix_event e
    WHERE e.stream_id = p_stream_id;
    IF p_expected IS NOT NULL AND p_expected <> v_current THEN
        RETURN QUERY SELECT v_current, NULL::bigint, NULL::bigint;
        RETURN;
    END IF;
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO orchestrix_event (
            stream_id, version, event_id, event_type, schema_version, data, metadata,
            "timestamp", correlation_id, causation_id, recorded_at
        )
        SELECT
            p_stream_id, v_current + item.n, item.row ->> 0, item.row ->> 1,
            (item.row ->> 2)::integer, item.row -> 3, item.row -> 4,
            (item.row ->> 5)::timestamptz, item.row ->> 6, item.row ->> 7, p_recorded_at
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS item(row, n)
        ORDER BY item.n
        RETURNING orchestrix_event.position, orchestrix_event.version
    ),
    stream AS (
        INSERT INTO orchestrix_stream AS s (
            stream_id, aggregate_type, version, first_position, last_position,
            created_at, updated_at
        )
        SELECT
            p_stream_id, p_aggregate_type, MAX(i.version), MIN(i.position), MAX(i.position),
            p_recorded_at, p_recorded_at
        FROM inserted i
        HAVING COUNT(*) > 0
        ON CONFLICT (stream_id) DO UPDATE SET
            version = EXCLUDED.version,
            last_position = EXCLUDED.last_position,
            updated_at = EXCLUDED.updated_at,
            aggregate_type = CASE
                WHEN EXCLUDED.aggregate_type = '' THEN s.aggregate_type
                ELSE EXCLUDED.aggregate_type
            END
    )
    SELECT v_current, i.position, i.version FROM inserted i ORDER BY i.position;
END;
$$;
"""

DROP_APPEND_FUNCTION_SQL = """
DROP FUNCTION IF EXISTS orchestrix_append(bigint, varchar, bigint, varchar, timestamptz, jsonb);
"""


def install_append_function(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_FUNCTION_SQL, params=None)


def remove_append_function(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_FUNCTION_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("orchestrix_django", "0003_active_projection")]

    operations = [migrations.RunPython(install_append_function, remove_append_function)]
