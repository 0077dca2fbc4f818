"""Stored events are history: the ORM refuses to change or delete them.

``EventRecord`` is a public model (the admin, the API and users' own queries
read it), so its manager and its instances refuse ``update()``, ``delete()``,
``bulk_update()`` and saving an existing row, on every database. On
PostgreSQL a trigger also refuses raw ``UPDATE`` and ``DELETE``.

An operator who must change history anyway (erasing data that should never
have been stored, say) does it inside :func:`allow_event_mutation`, which
lifts both guards for one transaction on one database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connections, transaction

from orchestrix.core.common.exceptions import OrchestrixError

__all__ = ["EventMutationError", "allow_event_mutation", "check_event_mutation"]

#: Database aliases whose events the current context may change.
_allowed: ContextVar[frozenset[str]] = ContextVar(
    "orchestrix_event_mutation_allowed", default=frozenset()
)

#: The PostgreSQL setting the trigger of migration 0002 reads.
PG_SETTING = "orchestrix.allow_event_mutation"


class EventMutationError(OrchestrixError):
    """An attempt to change or delete stored events outside :func:`allow_event_mutation`."""

    def __init__(self, action: str, using: str) -> None:
        self.action = action
        self.using = using
        super().__init__(
            f"{action} of stored events is refused: the event log is append-only. "
            "Correct history by appending events (or upcast old ones when reading). "
            "An operator who must change stored rows anyway does it inside "
            f"orchestrix_django.append_only.allow_event_mutation(using={using!r})."
        )


def check_event_mutation(action: str, using: str) -> None:
    """Raise :class:`EventMutationError` unless events on ``using`` may be changed here."""
    if using not in _allowed.get():
        raise EventMutationError(action, using)


@contextmanager
def allow_event_mutation(using: str = "default") -> Iterator[None]:
    """Allow updating and deleting stored events on ``using``, for this block only.

    The block runs in a transaction (a savepoint if one is open already), so
    the change is all or nothing. On PostgreSQL it also sets
    ``orchestrix.allow_event_mutation`` for the transaction, which lifts the
    append-only trigger; the setting is switched off again when the block
    ends. Projections that read the changed events do not notice by
    themselves: rebuild them (``orchestrix_rebuild``) afterwards.
    """
    postgresql = connections[using].vendor == "postgresql"
    with transaction.atomic(using=using):
        if postgresql:
            _set_pg_guard(using, lifted=True)
        token = _allowed.set(_allowed.get() | {using})
        try:
            yield
        finally:
            _allowed.reset(token)
        # Reached only when the block succeeded; on an error the rollback (of
        # the transaction or the savepoint) undoes the SET LOCAL by itself.
        if postgresql:
            _set_pg_guard(using, lifted=False)


def _set_pg_guard(using: str, *, lifted: bool) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, true)", [PG_SETTING, "on" if lifted else "off"])
