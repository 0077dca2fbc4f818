"""The async repository on the Django async store keeps optimistic locking: a stale save, and
saves racing from several threads, end in ConcurrencyError for all but one."""

from __future__ import annotations

import asyncio
import threading
import uuid
from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connections

from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.eventsourcing.aggregate import AggregateRepository
from orchestrix_django.models import EventRecord
from orchestrix_django.storage import DjangoAsyncEventStore
from tests.django.testapp.events import BankAccount


def new_account(account_id: str) -> BankAccount:
    account = BankAccount(aggregate_id=account_id)
    account.open("Ada", 1.0)
    return account


def repository() -> AggregateRepository[BankAccount]:
    return AggregateRepository(event_store=DjangoAsyncEventStore())


@pytest.mark.django_db
def test_an_async_save_of_a_stale_aggregate_is_a_concurrency_error() -> None:
    repo = repository()
    account_id = f"stale-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        await repo.save_async(new_account(account_id))
        first = await repo.load_async(BankAccount, account_id)
        second = await repo.load_async(BankAccount, account_id)
        first.deposit(Decimal("10"))
        await repo.save_async(first)
        second.deposit(Decimal("20"))
        with pytest.raises(ConcurrencyError) as caught:
            await repo.save_async(second)
        assert (caught.value.expected_version, caught.value.actual_version) == (1, 2)
        assert second.uncommitted_events
        with pytest.raises(ConcurrencyError):
            await repo.save_async(new_account(account_id))  # "must be new"
        reloaded = await repo.load_async(BankAccount, account_id)
        assert (reloaded.balance, reloaded.version) == (11.0, 2)

    async_to_sync(scenario)()


@pytest.mark.django_db
def test_async_saves_gathered_on_one_aggregate_store_exactly_one() -> None:
    repo = repository()
    account_id = f"gathered-{uuid.uuid4().hex[:8]}"

    async def scenario() -> list[BaseException | None]:
        await repo.save_async(new_account(account_id))
        racers = [await repo.load_async(BankAccount, account_id) for _ in range(3)]
        for n, racer in enumerate(racers):
            racer.deposit(Decimal(n + 1))
        return await asyncio.gather(
            *(repo.save_async(racer) for racer in racers), return_exceptions=True
        )

    outcomes = async_to_sync(scenario)()
    assert sum(outcome is None for outcome in outcomes) == 1, outcomes
    assert all(isinstance(outcome, ConcurrencyError) for outcome in outcomes if outcome)
    assert EventRecord.objects.filter(stream_id=account_id).count() == 2


@pytest.mark.django_db(transaction=True)
def test_async_saves_racing_from_threads_store_exactly_one() -> None:
    """Each thread its own event loop and connection, all loaded at one version, then saving."""
    account_id = f"threads-{uuid.uuid4().hex[:8]}"
    async_to_sync(repository().save_async)(new_account(account_id))
    racers = 3
    loaded = threading.Barrier(racers, timeout=60)
    outcomes: list[BaseException | None] = []

    def race(amount: int) -> None:
        repo = repository()

        async def load_then_save() -> None:
            account = await repo.load_async(BankAccount, account_id)
            account.deposit(Decimal(amount))
            await asyncio.to_thread(loaded.wait)  # every racer has read version 1
            await repo.save_async(account)

        try:
            async_to_sync(load_then_save)()
            outcomes.append(None)
        except BaseException as error:
            outcomes.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=race, args=(n + 1,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads), "a racer is stuck"
    assert len(outcomes) == racers
    assert sum(outcome is None for outcome in outcomes) == 1, outcomes
    assert all(isinstance(outcome, ConcurrencyError) for outcome in outcomes if outcome)
    assert EventRecord.objects.filter(stream_id=account_id).count() == 2
