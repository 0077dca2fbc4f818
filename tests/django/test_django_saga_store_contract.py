"""The Django saga state stores: the core contract, and optimistic locking across processes."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections, transaction

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.execution.saga import SagaState, SagaStateStore, SagaStatus
from orchestrix.core.execution.saga_state import SyncSagaStateStore
from orchestrix.testing.saga_contract import SagaStateStoreContract
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.storage.saga_state import DjangoAsyncSagaStateStore, DjangoSagaStateStore

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


def closing_connections(call: Callable[[], Any]) -> Callable[[], Any]:
    """``call``, then close the database connections of the thread it ran in."""

    def run() -> Any:
        try:
            return call()
        finally:
            connections.close_all()

    return run


@pytest.fixture
def close_async_connections() -> Iterator[None]:
    """Close the connection of the thread ``sync_to_async`` ran the ORM in."""
    yield
    asyncio.run(sync_to_async(connections.close_all)())


class TestDjangoSagaStateStore(SagaStateStoreContract):
    def create_store(self) -> DjangoSagaStateStore:
        return DjangoSagaStateStore()

    def run_in_parallel(self, *functions: Callable[[], Any]) -> list[Any]:
        return super().run_in_parallel(*(closing_connections(f) for f in functions))


@pytest.mark.usefixtures("close_async_connections")
class TestDjangoAsyncSagaStateStore(SagaStateStoreContract):
    def create_store(self) -> DjangoAsyncSagaStateStore:
        return DjangoAsyncSagaStateStore()

    def run_in_parallel(self, *functions: Callable[[], Any]) -> list[Any]:
        # Each thread runs its own event loop; sync_to_async then runs the ORM
        # in one shared thread, whose connection the fixture closes.
        return super().run_in_parallel(*(closing_connections(f) for f in functions))


def test_the_stores_satisfy_the_protocols() -> None:
    assert isinstance(DjangoSagaStateStore(), SyncSagaStateStore)
    assert isinstance(DjangoAsyncSagaStateStore(), SagaStateStore)


def test_a_refused_first_save_leaves_the_outer_transaction_usable() -> None:
    store = DjangoSagaStateStore()
    store.save(SagaState(saga_id="s", saga_type="t"))
    with transaction.atomic():
        with pytest.raises(ConcurrencyError):
            store.save(SagaState(saga_id="s", saga_type="t"))
        store.save(SagaState(saga_id="other", saga_type="t"))  # no aborted transaction
    assert {s.saga_id for s in store.list()} == {"s", "other"}


def test_save_leaves_the_deadline_column_alone() -> None:
    store = DjangoSagaStateStore()
    saved = store.save(SagaState(saga_id="s", saga_type="t"))
    deadline = saved.created_at
    SagaStateRecord.objects.filter(pk="s").update(deadline=deadline)
    saved.status = SagaStatus.COMPLETED
    store.save(saved)
    assert SagaStateRecord.objects.get(pk="s").deadline == deadline


def test_the_columns_are_queryable() -> None:
    """Status, type and correlation id are real columns (admin filters, the API)."""
    store = DjangoSagaStateStore()
    state = SagaState(
        saga_id="s", saga_type="order", status=SagaStatus.COMPENSATING, correlation_id="c-1"
    )
    state.kwargs = {"amount": Decimal("10.00")}
    store.save(state)
    record = SagaStateRecord.objects.get(pk="s")
    assert (record.saga_type, record.status, record.correlation_id, record.version) == (
        "order",
        "compensating",
        "c-1",
        1,
    )
    loaded = store.load("s")
    assert loaded is not None
    assert loaded.kwargs == {"amount": Decimal("10.00")}


def test_async_delete(close_async_connections: None) -> None:
    store = DjangoAsyncSagaStateStore()

    async def scenario() -> SagaState | None:
        await store.save(SagaState(saga_id="gone", saga_type="t"))
        await store.delete("gone")
        return await store.load("gone")

    assert asyncio.run(scenario()) is None


# -- separate processes -------------------------------------------------------------

#: A worker process: loads the saga (or builds a new one), says "ready", waits
#: for "go", saves once and prints its outcome as JSON.
WORKER = textwrap.dedent(
    """
    import json, os, sys

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = sys.argv[1]
    import django

    django.setup()
    from orchestrix.core.common.exceptions import ConcurrencyError
    from orchestrix.core.execution.saga import SagaState
    from orchestrix_django.storage.saga_state import DjangoSagaStateStore

    store = DjangoSagaStateStore()
    saga_id, writer = sys.argv[2], sys.argv[3]
    state = store.load(saga_id) or SagaState(saga_id=saga_id, saga_type="race")
    state.error = writer
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("expected go")
    try:
        saved = store.save(state)
    except ConcurrencyError as error:
        out = {"outcome": "conflict", "expected": error.expected_version,
               "actual": error.actual_version}
    else:
        out = {"outcome": "won", "version": saved.version, "writer": writer}
    print(json.dumps(out), flush=True)
    """
)


def race_in_processes(saga_id: str, writers: int) -> list[dict[str, Any]]:
    """``writers`` processes load ``saga_id`` then save it at the same moment."""
    name = str(connection.settings_dict["NAME"])
    connections.close_all()  # the processes must not wait for a lock of ours
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, name, saga_id, f"writer-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        )
        for n in range(writers)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 60)
            line = process.stdout.readline() if ready else ""
            assert line.strip() == "ready", (line, process.stderr and process.stderr.read())
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


WRITERS = 4


def test_processes_advancing_one_saga_have_exactly_one_winner() -> None:
    store = DjangoSagaStateStore()
    store.save(SagaState(saga_id="shared", saga_type="race"))
    results = race_in_processes("shared", WRITERS)
    winners = [r for r in results if r["outcome"] == "won"]
    assert len(winners) == 1, results
    assert [(r["expected"], r["actual"]) for r in results if r["outcome"] == "conflict"] == [
        (1, 2)
    ] * (WRITERS - 1)
    stored = store.load("shared")
    assert stored is not None
    assert (stored.version, stored.error) == (2, winners[0]["writer"])


def test_processes_creating_one_saga_have_exactly_one_winner() -> None:
    results = race_in_processes("brand-new", WRITERS)
    winners = [r for r in results if r["outcome"] == "won"]
    assert len(winners) == 1, results
    assert [(r["expected"], r["actual"]) for r in results if r["outcome"] == "conflict"] == [
        (0, 1)
    ] * (WRITERS - 1)
    stored = DjangoSagaStateStore().load("brand-new")
    assert stored is not None
    assert (stored.version, stored.error) == (1, winners[0]["writer"])
