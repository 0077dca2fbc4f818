"""Sagas and a process manager of the test app: the reference's order fulfilment.

The step functions are those the reference's example names
(``reserve_inventory``, ``release_inventory``, ``charge_payment``,
``refund_payment``, ``ship_order``); ``order_fulfillment`` is its saga, as
written, on Django. Each step records its calls in
:class:`~tests.django.testapp.models.SagaStepCall` under its idempotency key
(the row is the step's effect, applied once; ``calls`` counts the calls).

Business rules, so that tests choose a path by the arguments alone (which
worker processes see too): ``charge_payment`` declines amounts over 1000 and
``ship_order`` fails for order ids starting with ``NOSHIP``.

Pausing a step, for the tests that kill workers: in a process started with
``ORCHESTRIX_TEST_SAGA_MARKERS`` naming a directory, a step (``kind``:
``action`` or ``compensation``) whose ``hold-<step>-<kind>`` file exists there
creates ``entered-hold-<step>-<kind>`` and waits, *before* recording its call,
until the file is removed (at most two minutes); with ``block-<step>-<kind>``
it does the same *after* recording its call (``entered-block-…``).

``order_process`` is an event-driven process manager over the events and
commands below; :class:`OrderCommands` handles its commands (register it
with ``ORCHESTRIX["MODULES"]``, or subscribe its handlers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction
from django.db.models import F

from orchestrix.core.common.exceptions import DuplicateEventError
from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix.core.execution.saga import Saga, SagaStep
from orchestrix.core.messaging.message import Command, Event
from orchestrix.core.messaging.message_bus import MessageBus
from orchestrix_django.sagas import DjangoSaga, current_saga
from orchestrix_django.sagas.process_managers import Process, ProcessManager
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from tests.django.testapp.models import SagaStepCall

MARKERS_ENV = "ORCHESTRIX_TEST_SAGA_MARKERS"

#: The deadline of the deadline sagas' payment steps (``ORCHESTRIX_TEST_SAGA_DEADLINE`` seconds).
PAYMENT_DEADLINE = timedelta(seconds=float(os.environ.get("ORCHESTRIX_TEST_SAGA_DEADLINE", "2")))


class PaymentDeclined(Exception):
    """The card was declined."""


# ---------------------------------------------------------------- events and commands


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(Event):
    order_id: str
    amount: float


@dataclass(frozen=True, kw_only=True)
class PaymentRequested(Event):
    order_id: str
    amount: float


@dataclass(frozen=True, kw_only=True)
class PaymentReceived(Event):
    order_id: str


@dataclass(frozen=True, kw_only=True)
class OrderShipped(Event):
    order_id: str


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(Event):
    order_id: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RequestPayment(Command):
    order_id: str
    amount: float


@dataclass(frozen=True, kw_only=True)
class ShipOrder(Command):
    order_id: str


@dataclass(frozen=True, kw_only=True)
class CancelOrder(Command):
    order_id: str
    reason: str


# ---------------------------------------------------------------- recording and pausing


def _markers() -> Path | None:
    directory = os.environ.get(MARKERS_ENV)
    return Path(directory) if directory else None


def _marker(name: str) -> Path | None:
    """The marker file ``name``, once ``entered-<name>`` was created; None when it is absent."""
    directory = _markers()
    if directory is None or not (directory / name).exists():
        return None
    (directory / f"entered-{name}").write_text(str(os.getpid()))
    return directory / name


def _pause(name: str) -> None:
    marker = _marker(name)
    deadline = time.monotonic() + 120
    while marker is not None and marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def record_call(idempotency_key: str, kind: str, *, pause: bool = True) -> None:
    """Count a call of the step ``idempotency_key`` names; pause where the test asks to."""
    saga_id, _, step = idempotency_key.rpartition(":")
    label = f"{step}-{kind}"
    if pause:
        _pause(f"hold-{label}")
    key = f"{idempotency_key}:{kind}"
    with transaction.atomic():
        SagaStepCall.objects.get_or_create(
            key=key, defaults={"saga_id": saga_id, "step": step, "kind": kind}
        )
        SagaStepCall.objects.filter(pk=key).update(calls=F("calls") + 1)
    if pause:
        _pause(f"block-{label}")


# ---------------------------------------------------------------- the reference's steps


def reserve_inventory(order_id: str, idempotency_key: str) -> dict[str, str]:
    """Reserve the order's items."""
    record_call(idempotency_key, "action")
    return {"reservation": f"RES-{order_id}"}


def release_inventory(order_id: str, idempotency_key: str, result: dict[str, str]) -> None:
    """Give the reservation ``result`` back."""
    assert result == {"reservation": f"RES-{order_id}"}
    record_call(idempotency_key, "compensation")


def charge_payment(order_id: str, amount: float, idempotency_key: str) -> dict[str, Any]:
    """Charge the customer (amounts over 1000 are declined)."""
    record_call(idempotency_key, "action")
    if amount > 1000:
        raise PaymentDeclined(f"card declined for {amount}")
    return {"charge": f"CH-{order_id}", "amount": amount}


def refund_payment(
    order_id: str, amount: float, idempotency_key: str, result: dict[str, Any]
) -> None:
    """Refund the charge ``result``."""
    assert result == {"charge": f"CH-{order_id}", "amount": amount}
    record_call(idempotency_key, "compensation")


def ship_order(order_id: str, idempotency_key: str) -> dict[str, str]:
    """Ship the order (not to orders starting with NOSHIP) and record ``OrderShipped``.

    The event is caused by the saga (it carries the saga's correlation ids)
    and has the step's idempotency key as its id: a repeated call stores it once.
    """
    record_call(idempotency_key, "action")
    if order_id.startswith("NOSHIP"):
        raise RuntimeError(f"no carrier delivers order {order_id}")
    shipped = current_saga().caused(OrderShipped, id=idempotency_key, order_id=order_id)
    with contextlib.suppress(DuplicateEventError):  # shipped by a call a crash interrupted
        DjangoEventStore().save(f"order-{order_id}", [shipped])
    return {"tracking": f"TRK-{order_id}"}


def _reference_steps() -> list[SagaStep]:
    return [
        SagaStep(
            name="reserve_inventory",
            action=reserve_inventory,
            compensation=release_inventory,
        ),
        SagaStep(
            name="charge_payment",
            action=charge_payment,
            compensation=refund_payment,
        ),
        SagaStep(name="ship_order", action=ship_order),
    ]


#: The reference's example, as written, on Django.
order_fulfillment = DjangoSaga(
    saga_type="order-fulfillment",
    steps=[
        SagaStep(
            name="reserve_inventory",
            action=reserve_inventory,
            compensation=release_inventory,
        ),
        SagaStep(
            name="charge_payment",
            action=charge_payment,
            compensation=refund_payment,
        ),
        SagaStep(name="ship_order", action=ship_order),
    ],
)

#: The reference's core ``Saga``, literally, on the Django saga store.
order_fulfillment_core = Saga(
    saga_type="order-fulfillment-core",
    steps=_reference_steps(),
    state_store=DjangoSagaStateStore(),
)


# ---------------------------------------------------------------- deadlines


def payment_timed_out(idempotency_key: str, step: str | None, reason: str) -> None:
    """The ``on_timeout`` handler of the deadline sagas: recorded like a step."""
    assert step == "charge_payment" or step == "confirm_payment", step
    assert "deadline" in reason or "did not complete" in reason, reason
    record_call(idempotency_key, "timeout")


#: Its payment step must complete within PAYMENT_DEADLINE.
order_with_deadline = DjangoSaga(
    "order-with-deadline",
    _reference_steps(),
    deadlines={"charge_payment": PAYMENT_DEADLINE},
    on_timeout=payment_timed_out,
)


async def confirm_payment(order_id: str, idempotency_key: str) -> str:
    """Wait for the payment provider's confirmation (async: cancelled at its deadline)."""
    await sync_to_async(record_call)(idempotency_key, "action", pause=False)
    block = _marker("block-confirm_payment-action")
    while block is not None and block.exists():  # noqa: ASYNC110 - a file, not an event
        await asyncio.sleep(0.05)
    return f"CONF-{order_id}"


#: An async step that never completes while its block file exists.
order_awaiting_confirmation = DjangoSaga(
    "order-awaiting-confirmation",
    [
        SagaStep(
            name="reserve_inventory",
            action=reserve_inventory,
            compensation=release_inventory,
        ),
        SagaStep(name="confirm_payment", action=confirm_payment),
        SagaStep(name="ship_order", action=ship_order),
    ],
    deadlines={"confirm_payment": PAYMENT_DEADLINE},
    on_timeout=payment_timed_out,
)


# ---------------------------------------------------------------- the process manager

order_process = ProcessManager(
    "test-order-process", key=lambda event: getattr(event, "order_id", None)
)


@order_process.starts(OrderPlaced)
def order_placed(process: Process, event: OrderPlaced) -> None:
    """Ask for the payment, and wait for it until PAYMENT_DEADLINE."""
    process.data.update(order_id=event.order_id, amount=event.amount)
    process.send(RequestPayment(order_id=event.order_id, amount=event.amount))
    process.schedule("payment", PAYMENT_DEADLINE)


@order_process.on(PaymentReceived)
def payment_received(process: Process, event: PaymentReceived) -> None:
    """Paid in time: ship."""
    process.cancel("payment")
    process.send(ShipOrder(order_id=process.data["order_id"]))
    process.complete()


@order_process.on_timeout("payment")
def payment_overdue(process: Process) -> None:
    """No payment in time: cancel the order."""
    reason = "payment not received in time"
    process.send(CancelOrder(order_id=process.data["order_id"], reason=reason))
    process.fail(reason)


class OrderCommands:
    """The command handlers of the process manager: each records an event on the order."""

    def register(self, bus: MessageBus, store: EventStore) -> None:
        """Subscribe one handler per command."""
        self.store = store
        bus.subscribe(RequestPayment, self.request_payment)
        bus.subscribe(ShipOrder, self.ship)
        bus.subscribe(CancelOrder, self.cancel)

    def request_payment(self, command: RequestPayment) -> None:
        """Record that the payment was asked for."""
        self._record(
            command,
            PaymentRequested.caused_by(command, order_id=command.order_id, amount=command.amount),
        )

    def ship(self, command: ShipOrder) -> None:
        """Record the shipment."""
        self._record(command, OrderShipped.caused_by(command, order_id=command.order_id))

    def cancel(self, command: CancelOrder) -> None:
        """Record the cancellation."""
        self._record(
            command,
            OrderCancelled.caused_by(command, order_id=command.order_id, reason=command.reason),
        )

    def _record(self, command: Command, event: Event) -> None:
        self.store.save(f"order-{getattr(command, 'order_id', '')}", [event])
