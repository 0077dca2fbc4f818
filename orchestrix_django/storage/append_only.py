"""Stored events are history: the ORM and the database refuse to change them.

Two guards keep ``orchestrix_event`` append-only: ``EventRecord``'s managers
refuse updates and deletes (:class:`EventMutationError`), and database
triggers refuse ``UPDATE`` and ``DELETE`` whatever the client.
:func:`allow_event_mutation` is the one way to lift both, for the transaction
it opens; :func:`guard_problems` says what is missing of the database guard.
See ``docs/operations.md`` ("Changing history").
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from enum import Enum

from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from orchestrix.core.common.exceptions import OrchestrixError

__all__ = [
    "EVENT_TABLE",
    "PERMIT_TABLE",
    "EventMutationError",
    "GuardInstall",
    "allow_event_mutation",
    "check_event_mutation",
    "guard_problems",
    "guard_script",
    "guard_sql",
    "install_guard",
    "remove_guard",
]

#: The table of stored events (``EventRecord``).
EVENT_TABLE = "orchestrix_event"
#: The table of permits (``EventMutationPermit``): a row lifts the triggers for its holder.
PERMIT_TABLE = "orchestrix_event_permit"

#: The triggers refusing UPDATE and DELETE (every database) and TRUNCATE (PostgreSQL).
UPDATE_TRIGGER = "orchestrix_event_no_update"
DELETE_TRIGGER = "orchestrix_event_no_delete"
TRUNCATE_TRIGGER = "orchestrix_event_no_truncate"
#: On PostgreSQL: the function the three triggers run, and the event trigger guarding them.
PG_TRIGGER_FUNCTION = "orchestrix_refuse_event_mutation"
PG_EVENT_TRIGGER = "orchestrix_event_guard"
PG_EVENT_TRIGGER_FUNCTION = "orchestrix_guard_event_triggers"
#: On MariaDB/MySQL: the name of the session variable holding the current permit's value.
MYSQL_PERMIT_VARIABLE = "orchestrix_event_permit"
#: On PostgreSQL: SQL naming the current transaction, the holder of its permits.
PG_HOLDER = "pg_current_xact_id()::text"
#: On SQLite: the holder of every permit (one writer at a time, and another
#: connection never sees an uncommitted permit).
SQLITE_HOLDER = "''"

#: MariaDB/MySQL errors meaning "this user may not create triggers": 1419, binary
#: logging is on and the user lacks SUPER (log_bin_trust_function_creators is off);
#: 1142, no TRIGGER privilege; 1227, a missing privilege such as SUPER.
MYSQL_TRIGGER_REFUSALS = frozenset({1419, 1142, 1227})

_REFUSAL = (
    "orchestrix_event is append-only: {action} of stored events is refused. Correct history "
    "by appending events; to change stored rows anyway use "
    "orchestrix_django.storage.append_only.allow_event_mutation()"
)

#: Database aliases whose events the current context may change.
_allowed: ContextVar[frozenset[str]] = ContextVar(
    "orchestrix_event_mutation_allowed", default=frozenset()
)


class EventMutationError(OrchestrixError):
    """An attempt to change or delete stored events outside :func:`allow_event_mutation`."""

    def __init__(self, action: str, using: str) -> None:
        self.action = action
        self.using = using
        super().__init__(
            f"{action} of stored events is refused: the event log is append-only. "
            "Correct history by appending events (or upcast old ones when reading). "
            "An operator who must change stored rows anyway does it inside "
            f"orchestrix_django.storage.append_only.allow_event_mutation(using={using!r})."
        )


def check_event_mutation(action: str, using: str) -> None:
    """Raise :class:`EventMutationError` unless events on ``using`` may be changed here."""
    if using not in _allowed.get():
        raise EventMutationError(action, using)


@contextmanager
def allow_event_mutation(using: str = "default") -> Iterator[None]:
    """Allow updating and deleting stored events on ``using``, for this block only.

    The block runs in a transaction (a savepoint if one is open already), so
    the change is all or nothing. It lifts the ORM guard in this context and
    holds a permit that lifts the database's triggers for this transaction
    only; the permit is deleted when the block ends, and a block that raises
    rolls it back. Projections that read the changed events do not notice by
    themselves: rebuild them (``orchestrix_rebuild``) afterwards.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    mysql = connection.vendor == "mysql"
    variable = f"@{quote(MYSQL_PERMIT_VARIABLE)}"
    if connection.vendor == "postgresql":
        holder = PG_HOLDER
    elif mysql:
        holder = variable
    else:
        holder = SQLITE_HOLDER
    outer_value = None
    try:
        with transaction.atomic(using=using):
            with connection.cursor() as cursor:
                if mysql:
                    # A block inside another keeps the outer block's value.
                    cursor.execute(f"SELECT {variable}")
                    (outer_value,) = cursor.fetchone()
                    value = outer_value or secrets.token_hex(16)
                    cursor.execute(f"SET {variable} = %s", [value])
                insert = f"INSERT INTO {quote(PERMIT_TABLE)} (holder) VALUES ({holder})"
                if connection.features.can_return_columns_from_insert:
                    cursor.execute(f"{insert} RETURNING id")
                    (permit,) = cursor.fetchone()
                else:  # MySQL
                    cursor.execute(insert)
                    permit = cursor.lastrowid
            token = _allowed.set(_allowed.get() | {using})
            try:
                yield
            finally:
                _allowed.reset(token)
            with connection.cursor() as cursor:
                cursor.execute(f"DELETE FROM {quote(PERMIT_TABLE)} WHERE id = %s", [permit])
    finally:
        if mysql and connection.connection is not None:
            # A session variable is not transactional: put back whatever happened,
            # with the driver's own cursor (Django refuses queries in a transaction
            # marked for rollback). A permit committed by an implicit commit (DDL
            # in the block) names this block's value and so lifts nothing after it.
            with connection.connection.cursor() as raw:
                raw.execute(f"SET {variable} = %s", [outer_value])


# -- the database guard ---------------------------------------------------------------


class GuardInstall(Enum):
    """What :func:`install_guard` achieved."""

    INSTALLED = "installed"
    #: MariaDB/MySQL refused CREATE TRIGGER to this user (see MYSQL_TRIGGER_REFUSALS).
    REFUSED = "refused"


def guard_sql(connection: BaseDatabaseWrapper) -> list[str]:
    """The statements that install the database guard of ``connection``'s event table.

    Idempotent: each statement replaces what it creates. On PostgreSQL the
    event trigger is included only when the current user is a superuser (only
    superusers may create one).
    """
    if connection.vendor == "postgresql":
        return _pg_guard_sql(connection)
    quote = connection.ops.quote_name
    events = quote(EVENT_TABLE)
    permits = quote(PERMIT_TABLE)
    if connection.vendor == "mysql":
        variable = f"@{quote(MYSQL_PERMIT_VARIABLE)}"
        return [
            statement
            for action, trigger in (("UPDATE", UPDATE_TRIGGER), ("DELETE", DELETE_TRIGGER))
            for statement in (
                f"DROP TRIGGER IF EXISTS {quote(trigger)}",
                f"CREATE TRIGGER {quote(trigger)} BEFORE {action} ON {events} FOR EACH ROW "
                f"BEGIN IF NOT EXISTS (SELECT 1 FROM {permits} WHERE holder = {variable}) THEN "
                # 4025 (a failed constraint): Django raises IntegrityError, as on
                # the other databases.
                f"SIGNAL SQLSTATE '23000' SET MESSAGE_TEXT = '{_REFUSAL.format(action=action)}', "
                "MYSQL_ERRNO = 4025; END IF; END",
            )
        ]
    return [
        statement
        for action, trigger in (("UPDATE", UPDATE_TRIGGER), ("DELETE", DELETE_TRIGGER))
        for statement in (
            f"DROP TRIGGER IF EXISTS {quote(trigger)}",
            f"CREATE TRIGGER {quote(trigger)} BEFORE {action} ON {events} "
            f"WHEN NOT EXISTS (SELECT 1 FROM {permits}) "
            f"BEGIN SELECT RAISE(ABORT, '{_REFUSAL.format(action=action)}'); END",
        )
    ]


def guard_script(connection: BaseDatabaseWrapper) -> list[str]:
    """:func:`guard_sql` as a DBA runs it by hand (``orchestrix_append_only --sql``).

    On PostgreSQL the statements run in one transaction holding a permit, as
    :func:`install_guard` does: the event trigger refuses DDL on the triggers
    otherwise.
    """
    statements = guard_sql(connection)
    if connection.vendor != "postgresql":
        return statements
    permits = connection.ops.quote_name(PERMIT_TABLE)
    return [
        "BEGIN",
        f"INSERT INTO {permits} (holder) VALUES ({PG_HOLDER})",
        *statements,
        f"DELETE FROM {permits} WHERE holder = {PG_HOLDER}",
        "COMMIT",
    ]


def _pg_guard_sql(connection: BaseDatabaseWrapper) -> list[str]:
    schema, superuser = _pg_schema_and_superuser(connection)
    quote = connection.ops.quote_name
    # Schema-qualified names: an unqualified one would find a temporary table of
    # the same name first (pg_temp comes first in every search_path).
    events = f"{quote(schema)}.{quote(EVENT_TABLE)}"
    permits = f"{quote(schema)}.{quote(PERMIT_TABLE)}"
    function = f"{quote(schema)}.{quote(PG_TRIGGER_FUNCTION)}"
    event_function = f"{quote(schema)}.{quote(PG_EVENT_TRIGGER_FUNCTION)}"
    event_trigger = quote(PG_EVENT_TRIGGER)
    permitted = f"EXISTS (SELECT 1 FROM {permits} WHERE holder = {PG_HOLDER})"
    refusal = _REFUSAL.format(action="%").replace("'", "''")
    body = f"""
BEGIN
    IF {permitted} THEN
        IF TG_LEVEL = 'STATEMENT' THEN RETURN NULL; END IF;
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '{refusal}', TG_OP USING ERRCODE = 'integrity_constraint_violation';
END;
"""
    statements = [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $${body}$$"
    ]
    for action, trigger, level in (
        ("UPDATE", UPDATE_TRIGGER, "ROW"),
        ("DELETE", DELETE_TRIGGER, "ROW"),
        ("TRUNCATE", TRUNCATE_TRIGGER, "STATEMENT"),
    ):
        statements += [
            f"DROP TRIGGER IF EXISTS {quote(trigger)} ON {events}",
            f"CREATE TRIGGER {quote(trigger)} BEFORE {action} ON {events} "
            f"FOR EACH {level} EXECUTE FUNCTION {function}()",
            # ALWAYS: the trigger fires in replica mode too (session_replication_role).
            f"ALTER TABLE {events} ENABLE ALWAYS TRIGGER {quote(trigger)}",
        ]
    if superuser:
        # The md5 of the trigger function's source: the event trigger notices a
        # replaced function by it.
        expected = hashlib.md5(body.encode()).hexdigest()
        triggers = ", ".join(f"'{t}'" for t in _PG_TRIGGERS)
        statements += [
            f"DROP EVENT TRIGGER IF EXISTS {event_trigger}",
            f"""CREATE OR REPLACE FUNCTION {event_function}()
RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF to_regclass('{events}') IS NULL OR to_regclass('{permits}') IS NULL
       OR {permitted} THEN
        RETURN;
    END IF;
    IF (SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgrelid = '{events}'::regclass AND t.tgname IN ({triggers})
          AND t.tgenabled = 'A' AND p.oid = to_regprocedure('{function}()')
          AND md5(p.prosrc) = '{expected}') <> {len(_PG_TRIGGERS)} THEN
        RAISE EXCEPTION 'orchestrix_event is append-only: this command would disable, drop or '
            'replace its guard triggers. Run it inside allow_event_mutation(), or put the '
            'guard back with: python manage.py orchestrix_append_only --install'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
END;
$$""",
            f"CREATE EVENT TRIGGER {event_trigger} ON ddl_command_end "
            f"EXECUTE FUNCTION {event_function}()",
            f"ALTER EVENT TRIGGER {event_trigger} ENABLE ALWAYS",
        ]
    return statements


_PG_TRIGGERS = (UPDATE_TRIGGER, DELETE_TRIGGER, TRUNCATE_TRIGGER)
#: The trigger of migration 0002, which the triggers here replace.
_PG_MIGRATION_0002_TRIGGER = "orchestrix_event_append_only"


def _pg_schema_and_superuser(connection: BaseDatabaseWrapper) -> tuple[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_schema(), rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        schema, superuser = cursor.fetchone()
    return str(schema), bool(superuser)


def install_guard(using: str) -> GuardInstall:
    """Install (or put back) the database guard of the event table on ``using``.

    On MariaDB/MySQL a user that may not create triggers (binary logging on
    without SUPER, as on most managed servers, or no TRIGGER privilege) gets
    :attr:`GuardInstall.REFUSED` instead of an error: the ORM guard still
    holds, and :func:`guard_problems` reports the missing triggers.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    postgresql = connection.vendor == "postgresql"
    # A permit for PostgreSQL's event trigger, which refuses replacing the
    # triggers otherwise. (Elsewhere each CREATE TRIGGER commits implicitly on
    # MariaDB, which would end the permit's transaction.)
    permit = allow_event_mutation(using) if postgresql else nullcontext()
    with permit, connection.cursor() as cursor:
        if postgresql:
            cursor.execute(
                f"DROP TRIGGER IF EXISTS {quote(_PG_MIGRATION_0002_TRIGGER)} "
                f"ON {quote(EVENT_TABLE)}"
            )
        for statement in guard_sql(connection):
            try:
                cursor.execute(statement)
            except DatabaseError as error:
                code = error.args[0] if error.args else None
                if connection.vendor == "mysql" and code in MYSQL_TRIGGER_REFUSALS:
                    return GuardInstall.REFUSED
                raise
    return GuardInstall.INSTALLED


def remove_guard(using: str) -> None:
    """Drop the database guard of the event table on ``using`` (unapplying its migration)."""
    connection = connections[using]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            schema = quote(_pg_schema_and_superuser(connection)[0])
            events = f"{schema}.{quote(EVENT_TABLE)}"
            event_function = f"{schema}.{quote(PG_EVENT_TRIGGER_FUNCTION)}"
            cursor.execute(f"DROP EVENT TRIGGER IF EXISTS {quote(PG_EVENT_TRIGGER)}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {event_function}()")
            for trigger in _PG_TRIGGERS:
                cursor.execute(f"DROP TRIGGER IF EXISTS {quote(trigger)} ON {events}")
            return
        for trigger in (UPDATE_TRIGGER, DELETE_TRIGGER):
            cursor.execute(f"DROP TRIGGER IF EXISTS {quote(trigger)}")


def guard_problems(using: str) -> list[str]:
    """What is missing or disabled of the database guard on ``using`` (empty: all in place).

    Nothing is reported where the event table does not exist.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        if EVENT_TABLE not in tables:
            return []
        problems = []
        if PERMIT_TABLE not in tables:
            problems.append(f"the permit table {PERMIT_TABLE} is missing")
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass",
                [f"{quote(_pg_schema_and_superuser(connection)[0])}.{quote(EVENT_TABLE)}"],
            )
            expected: tuple[str, ...] = _PG_TRIGGERS
        elif connection.vendor == "mysql":
            cursor.execute(
                "SELECT trigger_name, 'A' FROM information_schema.triggers "
                "WHERE event_object_schema = DATABASE() AND event_object_table = %s",
                [EVENT_TABLE],
            )
            expected = (UPDATE_TRIGGER, DELETE_TRIGGER)
        else:
            cursor.execute(
                "SELECT name, 'A' FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [EVENT_TABLE],
            )
            expected = (UPDATE_TRIGGER, DELETE_TRIGGER)
        found = {str(name): str(enabled) for name, enabled in cursor.fetchall()}
    for trigger in expected:
        if trigger not in found:
            problems.append(f"the trigger {trigger} is missing")
        elif found[trigger] == "D":
            problems.append(f"the trigger {trigger} is disabled")
        elif found[trigger] != "A":
            problems.append(
                f"the trigger {trigger} does not fire in every session "
                "(session_replication_role); it must be ENABLE ALWAYS"
            )
    return problems
