"""Projections of the test app.

``balances`` is a well-behaved read model. ``fragile`` fails on deposits whose
amount is listed in ``FAILING_AMOUNTS`` (tests add and remove amounts), and
``flaky`` fails the first attempt on every deposit of 7 after writing a row.
``slow`` records every event; in a process started with
``ORCHESTRIX_TEST_SLOW_TRACE`` set to a file path it also appends each event's
id to that file (while its batch's transaction is open) and then sleeps
``ORCHESTRIX_TEST_SLOW_SECONDS``, so that a test can kill a worker mid-batch.
"""

from __future__ import annotations

import os
import time
from decimal import Decimal

from django.db.models import F

from orchestrix.core.common.retry import FixedDelay
from orchestrix.core.messaging.message import Event
from orchestrix_django.projections import DjangoProjection
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AccountBalance, AppliedEvent

balances = DjangoProjection("test-balances")


@balances.on(AccountOpened)
def opened(event: AccountOpened) -> None:
    AccountBalance.objects.create(
        account_id=event.account_id,
        owner=event.owner,
        balance=Decimal(str(event.initial_deposit)),
        events=1,
    )


@balances.on(MoneyDeposited)
def deposited(event: MoneyDeposited) -> None:
    AccountBalance.objects.filter(account_id=event.account_id).update(
        balance=F("balance") + event.amount, events=F("events") + 1
    )


@balances.on_reset
def clear_balances() -> None:
    AccountBalance.objects.all().delete()


FAILING_AMOUNTS: set[Decimal] = set()

fragile = DjangoProjection("test-fragile", batch_size=4)


@fragile.on(Event)
def record(event: Event) -> None:
    AppliedEvent.objects.create(projection="fragile", event_id=event.id, position=0)
    if isinstance(event, MoneyDeposited) and event.amount in FAILING_AMOUNTS:
        raise RuntimeError(f"cannot handle a deposit of {event.amount}")


@fragile.on_reset
def clear_fragile() -> None:
    AppliedEvent.objects.filter(projection="fragile").delete()


continuing = DjangoProjection("test-continuing", failure_mode="park-and-continue")


@continuing.on(Event)
def record_continuing(event: Event) -> None:
    if isinstance(event, MoneyDeposited) and event.amount in FAILING_AMOUNTS:
        raise RuntimeError(f"cannot handle a deposit of {event.amount}")
    AppliedEvent.objects.create(projection="continuing", event_id=event.id, position=0)


_attempts: dict[str, int] = {}

flaky = DjangoProjection("test-flaky", retry_policy=FixedDelay(max_retries=2, delay=0))


@flaky.on(MoneyDeposited)
def flaky_deposit(event: MoneyDeposited) -> None:
    AppliedEvent.objects.create(projection="flaky", event_id=event.id, position=0)
    _attempts[event.id] = _attempts.get(event.id, 0) + 1
    if event.amount == 7 and _attempts[event.id] == 1:
        raise ConnectionError("a transient failure after a write")


@continuing.on_reset
def clear_continuing() -> None:
    AppliedEvent.objects.filter(projection="continuing").delete()


@flaky.on_reset
def clear_flaky() -> None:
    AppliedEvent.objects.filter(projection="flaky").delete()


slow = DjangoProjection("test-slow", batch_size=5)


@slow.on(Event)
def record_slowly(event: Event) -> None:
    AppliedEvent.objects.create(projection="slow", event_id=event.id, position=0)
    trace = os.environ.get("ORCHESTRIX_TEST_SLOW_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as file:
            file.write(event.id + "\n")
        time.sleep(float(os.environ.get("ORCHESTRIX_TEST_SLOW_SECONDS", "0.2")))


@slow.on_reset
def clear_slow() -> None:
    AppliedEvent.objects.filter(projection="slow").delete()
