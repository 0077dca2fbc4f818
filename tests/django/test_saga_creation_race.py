"""Two starts of one saga id race on the saga table: the loser adopts the winner's saga.

The race is made deterministic on a real table: when the loser is about to
insert its row (``pre_save`` of the saga record, after its load found no
saga), a second thread, with a connection of its own, creates the same saga
and commits; only then does the loser insert, and its insert is refused.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections
from django.db.models.signals import pre_save

from orchestrix.core.common.exceptions import SagaError
from orchestrix.core.execution.saga import SagaStatus, SagaStep
from orchestrix_django.models import SagaStateRecord
from orchestrix_django.sagas import DjangoSaga
from orchestrix_django.storage import DjangoSagaStateStore
from tests.django.testapp.models import SagaStepCall
from tests.django.testapp.sagas import record_call

db = pytest.mark.django_db(transaction=True)


def record(idempotency_key: str) -> str:
    record_call(idempotency_key, "action", pause=False)
    return idempotency_key


def parcel_saga(saga_type: str = "race-parcel", saga_id: str | None = None) -> DjangoSaga:
    steps = [SagaStep("pack", record), SagaStep("send", record)]
    return DjangoSaga(saga_type, steps, saga_id=saga_id)


def step_calls(saga_id: str) -> dict[str, int]:
    rows = SagaStepCall.objects.filter(saga_id=saga_id).values_list("step", "calls")
    return dict(rows)


@contextmanager
def won_by_another_thread(saga_id: str, winner: Callable[[], Any]) -> Iterator[list[Any]]:
    """Inside: the first insert of ``saga_id``'s row in this thread waits for ``winner``.

    ``winner`` runs (to its commit) in a thread of its own just before that
    insert; the list yielded receives its result, or the error it raised.
    """
    loser = threading.get_ident()
    outcome: list[Any] = []

    def run_winner() -> None:
        try:
            outcome.append(winner())
        except BaseException as error:
            outcome.append(error)
        finally:
            connections.close_all()

    def before_insert(sender: Any, instance: SagaStateRecord, **kwargs: Any) -> None:
        if instance.saga_id != saga_id or threading.get_ident() != loser or outcome:
            return
        thread = threading.Thread(target=run_winner)
        thread.start()
        thread.join(60)
        assert not thread.is_alive(), "the winner of the race is stuck"

    pre_save.connect(before_insert, sender=SagaStateRecord, weak=False)
    try:
        yield outcome
    finally:
        pre_save.disconnect(before_insert, sender=SagaStateRecord)


def stored_state(saga_id: str) -> Any:
    return DjangoSagaStateStore().load(saga_id)


@db
def test_the_loser_of_a_creation_race_adopts_the_winner_s_saga() -> None:
    saga_id = f"race-{uuid.uuid4().hex[:8]}"

    def winner() -> Any:
        return async_to_sync(parcel_saga().initialize)(saga_id, correlation_id="winner")

    with won_by_another_thread(saga_id, winner) as outcome:
        loser = parcel_saga()
        state = async_to_sync(loser.initialize)(saga_id, correlation_id="loser")
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    assert (state.saga_id, state.correlation_id, state.version) == (saga_id, "winner", 1)
    assert SagaStateRecord.objects.filter(saga_id=saga_id).count() == 1
    final = async_to_sync(loser.execute)()
    assert final.status is SagaStatus.COMPLETED and final.correlation_id == "winner"
    assert step_calls(saga_id) == {"pack": 1, "send": 1}
    assert stored_state(saga_id).status is SagaStatus.COMPLETED


@db
def test_the_loser_of_a_creation_race_executing_at_once_adopts_the_winner_s_saga() -> None:
    saga_id = f"race-{uuid.uuid4().hex[:8]}"

    def winner() -> Any:
        return async_to_sync(parcel_saga().initialize)(saga_id, correlation_id="winner")

    with won_by_another_thread(saga_id, winner) as outcome:
        final = async_to_sync(parcel_saga(saga_id=saga_id).execute)()
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome
    assert final.status is SagaStatus.COMPLETED and final.correlation_id == "winner"
    assert step_calls(saga_id) == {"pack": 1, "send": 1}


@db
def test_a_creation_race_won_by_another_saga_type_is_an_error() -> None:
    saga_id = f"race-{uuid.uuid4().hex[:8]}"

    def winner() -> Any:
        return async_to_sync(parcel_saga("race-other").initialize)(saga_id)

    with won_by_another_thread(saga_id, winner), pytest.raises(SagaError, match="race-other"):
        async_to_sync(parcel_saga().initialize)(saga_id)


@db
def test_the_loser_of_a_start_race_returns_the_winner_s_saga() -> None:
    saga_id = f"race-{uuid.uuid4().hex[:8]}"

    def winner() -> Any:
        return parcel_saga().start(saga_id=saga_id, correlation_id="winner", parcel="P-1")

    with won_by_another_thread(saga_id, winner) as outcome:
        started = parcel_saga().start(saga_id=saga_id, correlation_id="loser", parcel="P-1")
    assert outcome == [saga_id] and started == saga_id
    state = stored_state(saga_id)
    assert (state.correlation_id, state.kwargs, state.status) == (
        "winner",
        {"parcel": "P-1"},
        SagaStatus.PENDING,
    )
