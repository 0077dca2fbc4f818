"""Saga state on Django models: the core ``SagaStateStore`` protocols.

:class:`DjangoSagaStateStore` keeps one
:class:`~orchestrix_django.models.SagaStateRecord` row per saga, with the
optimistic locking the core documents: ``save(state)`` succeeds only if the
stored version is still ``state.version``. The check and the write are one
conditional statement (``UPDATE … WHERE saga_id = %s AND version = %s``, or
for a new saga an ``INSERT`` that the primary key refuses twice), so two
workers, threads or processes can never both advance one saga: one wins, the
other gets :class:`~orchestrix.core.common.exceptions.ConcurrencyError`.

Step records and keyword arguments are stored as JSON through
:meth:`SagaState.to_dict` / :meth:`SagaState.from_dict`, so a ``Decimal``,
``datetime`` or ``UUID`` in them comes back as what it was.

:class:`DjangoAsyncSagaStateStore` is the async twin.
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any, NoReturn

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.execution.saga import SagaState, SagaStatus
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.storage.configured import DatabaseBound

__all__ = ["SAGA_STATE_FIELDS", "DjangoAsyncSagaStateStore", "DjangoSagaStateStore"]

#: The fields of a saga row that hold its ``SagaState`` (``SagaState.to_dict`` keys).
SAGA_STATE_FIELDS = (
    "saga_id",
    "saga_type",
    "status",
    "current_step",
    "steps",
    "kwargs",
    "error",
    "correlation_id",
    "causation_id",
    "trace_id",
    "created_at",
    "updated_at",
    "version",
)

#: The columns a save writes (``deadline`` is managed elsewhere and left alone).
_STATE_COLUMNS = tuple(name for name in SAGA_STATE_FIELDS if name not in ("saga_id", "version"))


class DjangoSagaStateStore(DatabaseBound):
    """A synchronous :class:`~orchestrix.core.execution.saga.SyncSagaStateStore`
    on the Django ORM (see the module docs).

    ``using`` is the database alias; by default ``ORCHESTRIX["DATABASE"]``,
    read when the store is first used.
    """

    def _records(self) -> QuerySet[SagaStateRecord]:
        return SagaStateRecord.objects.using(self.using)

    def save(self, state: SagaState) -> SagaState:
        """Store ``state`` if ``state.version`` is the stored version; return the stored copy.

        The stored copy has ``version = state.version + 1``; ``state`` itself
        is left unchanged. Raises :class:`ConcurrencyError` (with
        ``aggregate_id`` the saga id, ``expected_version`` ``state.version``
        and ``actual_version`` the stored version, 0 when there is none) when
        another writer saved first.
        """
        if not isinstance(state, SagaState):
            raise TypeError(f"expected a SagaState, got {type(state).__name__}")
        data = state.to_dict()  # fails on unencodable values before touching the database
        data["version"] = state.version + 1
        values = _columns(data)
        if state.version == 0:
            self._insert(state, values)
        else:
            updated = (
                self._records()
                .filter(saga_id=state.saga_id, version=state.version)
                .update(version=state.version + 1, **values)
            )
            if updated != 1:
                self._conflict(state)
        # What a load would return: the state as its JSON round trip rebuilds it.
        return SagaState.from_dict(data)

    def _insert(self, state: SagaState, values: dict[str, Any]) -> None:
        using = self.using
        try:
            # A savepoint, so a refused insert leaves an outer transaction usable.
            with transaction.atomic(using=using):
                self._records().create(saga_id=state.saga_id, version=1, **values)
        except IntegrityError:
            self._conflict(state)

    def _conflict(self, state: SagaState) -> NoReturn:
        stored = (
            self._records().filter(saga_id=state.saga_id).values_list("version", flat=True).first()
        )
        raise ConcurrencyError(
            aggregate_id=state.saga_id,
            expected_version=state.version,
            actual_version=int(stored or 0),
            reason="saga state",
        )

    def load(self, saga_id: str) -> SagaState | None:
        """The stored state of ``saga_id``, or ``None``."""
        if "\x00" in saga_id:  # never stored, and PostgreSQL raises on it
            return None
        record = self._records().filter(saga_id=saga_id).first()
        return None if record is None else _to_state(record)

    def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Stored states matching both filters (``None``: any), oldest ``created_at`` first."""
        records = self._records()
        if status is not None:
            records = records.filter(status=SagaStatus(status).value)
        if saga_type is not None:
            records = records.filter(saga_type=saga_type)
        return [_to_state(record) for record in records.order_by("created_at", "saga_id")]

    def delete(self, saga_id: str) -> None:
        """Forget the state of ``saga_id`` (a no-op when there is none)."""
        self._records().filter(saga_id=saga_id).delete()


def _columns(data: dict[str, Any]) -> dict[str, Any]:
    """The column values of a :meth:`SagaState.to_dict` result."""
    values = {name: data[name] for name in _STATE_COLUMNS}
    values["created_at"] = datetime.fromisoformat(data["created_at"])
    values["updated_at"] = datetime.fromisoformat(data["updated_at"])
    return values


def _to_state(record: SagaStateRecord) -> SagaState:
    data: dict[str, Any] = {name: getattr(record, name) for name in _STATE_COLUMNS}
    data["saga_id"] = record.saga_id
    data["version"] = record.version
    for name in ("created_at", "updated_at"):
        moment = data[name]
        if moment.tzinfo is None:
            raise ValueError("Orchestrix needs USE_TZ = True (stored timestamps are naive)")
        data[name] = moment.astimezone(UTC)
    return SagaState.from_dict(data)


class DjangoAsyncSagaStateStore:
    """The async twin of :class:`DjangoSagaStateStore`
    (:class:`~orchestrix.core.execution.saga.SagaStateStore`).

    Each call runs the synchronous store with ``sync_to_async``.
    """

    def __init__(self, using: str | None = None) -> None:
        self.sync_store = DjangoSagaStateStore(using)

    @property
    def using(self) -> str:
        """The database alias."""
        return self.sync_store.using

    async def save(self, state: SagaState) -> SagaState:
        """Store ``state`` if ``state.version`` is the stored version; return the stored copy."""
        return await sync_to_async(self.sync_store.save)(state)

    async def load(self, saga_id: str) -> SagaState | None:
        """The stored state of ``saga_id``, or ``None``."""
        return await sync_to_async(self.sync_store.load)(saga_id)

    async def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> builtins.list[SagaState]:
        """Stored states matching both filters, oldest ``created_at`` first."""
        return await sync_to_async(self.sync_store.list)(status=status, saga_type=saga_type)

    async def delete(self, saga_id: str) -> None:
        """Forget the state of ``saga_id``."""
        await sync_to_async(self.sync_store.delete)(saga_id)
