"""Helpers of the tests of the operators' commands and the API: history, commands, bad rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from orchestrix.core.eventsourcing.aggregate import AggregateRepository
from orchestrix_django.models import EventRecord
from orchestrix_django.storage.append_only import allow_event_mutation
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp.events import BankAccount

__all__ = [
    "command",
    "delete_event",
    "failing",
    "insert_row",
    "new_id",
    "open_account",
]


def new_id(prefix: str = "acc") -> str:
    """A stream id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def open_account(
    account_id: str | None = None, deposits: tuple[int, ...] = (), *, using: str = "default"
) -> str:
    """An account saved through the repository (so its stream is labelled BankAccount)."""
    account = BankAccount(aggregate_id=account_id or new_id())
    account.open("Ada", 10.0)
    for amount in deposits:
        account.deposit(Decimal(amount))
    AggregateRepository(DjangoEventStore(using)).save(account)
    return account.aggregate_id


def command(name: str, *args: str, **options: Any) -> tuple[str, str]:
    """Run a command with ``call_command``: its stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def failing(name: str, *args: str, **options: Any) -> str:
    """Run a command that must fail: its CommandError's message."""
    with pytest.raises(CommandError) as raised:
        call_command(name, *args, stdout=StringIO(), stderr=StringIO(), **options)
    return str(raised.value)


def insert_row(
    stream_id: str,
    version: int,
    *,
    event_type: str = "MoneyDeposited",
    data: Any = None,
    schema_version: int = 1,
    event_id: str | None = None,
    using: str = "default",
) -> EventRecord:
    """A row written around the store (as a broken tool or a bad restore would)."""
    return EventRecord.objects.using(using).create(
        stream_id=stream_id,
        version=version,
        event_id=event_id or str(uuid.uuid4()),
        event_type=event_type,
        schema_version=schema_version,
        data=data if data is not None else {"account_id": stream_id, "amount": "1"},
        metadata={"specversion": "1.0", "source": "orchestrix"},
        timestamp=datetime.now(UTC),
    )


def delete_event(stream_id: str, version: int, *, using: str = "default") -> None:
    """Delete a stored event, as an operator may (stored events are otherwise append-only)."""
    with allow_event_mutation(using):
        EventRecord.objects.using(using).filter(stream_id=stream_id, version=version).delete()
