"""The ``order-fulfillment`` saga: the reference's example, for real.

Steps and compensations carry the reference's names:

=====================  ======================  ==========================================
step                   compensation            what it does
=====================  ======================  ==========================================
``reserve_inventory``  ``release_inventory``   sets the units aside / puts them back and
                                               cancels the order
``charge_payment``     ``refund_payment``      withdraws the total from the customer's bank
                                               account / deposits it back
``ship_order``         (none)                  books the carrier; retried while the
                                               carrier is unavailable
=====================  ======================  ==========================================

When the payment fails (insufficient funds, a frozen account), the saga
compensates ``reserve_inventory``: the stock is released and the order
cancelled. When shipping fails for good (a destination the carrier does not
serve), it compensates both: refund, then release. When there is not enough
stock, nothing was reserved and nothing is compensated: the step cancels the
order itself before it fails.

As in the transfer saga, every event a step stores carries an id made from
its ``idempotency_key``, and a step finding its events stored does nothing
again: a step may run twice when its worker died before the saga recorded it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction

from example_project.banking.aggregates import Account
from example_project.banking.aggregates import repository as bank_repository
from example_project.common.aggregates import update
from example_project.common.commands import CommandRejected
from example_project.common.idempotency import event_id_for, event_recorded
from example_project.common.retry import TransientOnly
from example_project.common.sagas import failure_reason
from example_project.orders import carrier
from example_project.orders.aggregates import Order, OutOfStock, Product, product_stream, repository
from orchestrix.core.common.exceptions import AggregateNotFoundError
from orchestrix.core.execution.saga import SagaStep
from orchestrix_django.sagas import DjangoSaga

__all__ = [
    "PaymentDeclined",
    "charge_payment",
    "order_fulfillment",
    "refund_payment",
    "release_inventory",
    "reserve_inventory",
    "ship_order",
]


class PaymentDeclined(Exception):
    """The customer's account refused the payment."""


def _cancel(order_id: str, reason: str) -> None:
    update(repository(), Order, order_id, lambda order: order.cancel(reason))


def _reserving(order_id: str, quantity: int, event_id: str) -> Callable[[Product], None]:
    return lambda product: product.reserve(order_id, quantity, event_id=event_id)


def _releasing(order_id: str, quantity: int, event_id: str) -> Callable[[Product], None]:
    return lambda product: product.release(order_id, quantity, event_id=event_id)


def reserve_inventory(
    order_id: str, lines: list[dict[str, Any]], idempotency_key: str
) -> dict[str, Any]:
    """Set the order's units aside: all lines or none (one transaction)."""
    repo = repository()
    try:
        with transaction.atomic():
            for line in lines:
                event_id = event_id_for(idempotency_key, line["sku"])
                if event_recorded(event_id):
                    continue
                update(
                    repo,
                    Product,
                    product_stream(line["sku"]),
                    _reserving(order_id, int(line["quantity"]), event_id),
                )
    except (OutOfStock, AggregateNotFoundError) as missing:
        # Nothing was reserved (the transaction rolled back): nothing to compensate.
        _cancel(order_id, f"out of stock: {missing}")
        raise
    return {"reservation": f"RES-{order_id}", "lines": lines}


def release_inventory(
    order_id: str, lines: list[dict[str, Any]], idempotency_key: str, saga_id: str
) -> None:
    """Compensation of ``reserve_inventory``: units back on the shelf, the order cancelled."""
    repo = repository()
    with transaction.atomic():
        for line in lines:
            event_id = event_id_for(idempotency_key, f"release:{line['sku']}")
            if event_recorded(event_id):
                continue
            update(
                repo,
                Product,
                product_stream(line["sku"]),
                _releasing(order_id, int(line["quantity"]), event_id),
            )
        _cancel(order_id, failure_reason(saga_id))


def charge_payment(
    order_id: str, account_id: str, amount: Decimal, idempotency_key: str
) -> dict[str, Any]:
    """Withdraw the order's total from the customer's account."""
    payment_id = event_id_for(idempotency_key)
    if not event_recorded(payment_id):
        try:
            update(
                bank_repository(),
                Account,
                account_id,
                lambda account: account.withdraw(
                    amount, "EUR", f"payment of order {order_id}", event_id=payment_id
                ),
            )
        except (CommandRejected, AggregateNotFoundError) as refused:
            raise PaymentDeclined(str(refused)) from refused
    update(repository(), Order, order_id, lambda order: order.mark_paid(payment_id))
    return {"payment_id": payment_id, "amount": amount}


def refund_payment(
    order_id: str, account_id: str, amount: Decimal, idempotency_key: str, result: dict[str, Any]
) -> None:
    """Compensation of ``charge_payment``: deposit the charge ``result`` back."""
    refund_id = event_id_for(idempotency_key, "refund")
    if not event_recorded(refund_id):
        update(
            bank_repository(),
            Account,
            account_id,
            lambda account: account.refund(
                result["amount"], "EUR", f"refund of order {order_id}", event_id=refund_id
            ),
        )
    update(repository(), Order, order_id, lambda order: order.mark_refunded())


def ship_order(order_id: str, country: str, idempotency_key: str) -> dict[str, str]:
    """Book the carrier (retried while it is unavailable) and mark the order shipped."""
    tracking = carrier.book(order_id, country, idempotency_key)
    update(
        repository(),
        Order,
        order_id,
        lambda order: order.mark_shipped(carrier.CARRIER, tracking),
    )
    return {"tracking_number": tracking}


#: Listed in ``ORCHESTRIX["SAGAS"]``.
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
        SagaStep(
            name="ship_order",
            action=ship_order,
            # Transient carrier outages only; a refused destination fails at once.
            retry_policy=TransientOnly(max_retries=3, delay=0.05),
        ),
    ],
    # A payment that hangs for two minutes is given up (and the stock released).
    deadlines={"charge_payment": timedelta(minutes=2)},
)
