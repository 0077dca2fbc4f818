"""The order-fulfilment aggregates: products (with their stock) and orders."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from example_project.common.commands import CommandRejected
from example_project.common.idempotency import new_event_id
from example_project.orders.events import (
    OrderCancelled,
    OrderLine,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderShipped,
    ProductAdded,
    ProductRestocked,
    StockReleased,
    StockReserved,
)
from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot
from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix_django.storage import DjangoEventStore

__all__ = ["Order", "OutOfStock", "Product", "product_stream", "repository"]

#: Products are long-lived too (every order reserves stock): a snapshot every 50 events.
SNAPSHOT_EVERY = 50


class OutOfStock(CommandRejected):
    """Fewer units on the shelf than an order asks for."""


def product_stream(sku: str) -> str:
    """The stream (aggregate id) of the product ``sku``."""
    return f"product-{sku}"


def repository(store: EventStore | None = None) -> AggregateRepository[Any]:
    """The repository of the order-fulfilment aggregates."""
    return AggregateRepository(
        event_store=store if store is not None else DjangoEventStore(),
        snapshot_every=SNAPSHOT_EVERY,
    )


@dataclass
class Product(AggregateRoot):
    """A product of the catalogue and the units of it on the shelf."""

    sku: str = ""
    name: str = ""
    price: Decimal = Decimal("0.00")
    stock: int = 0

    def add(self, sku: str, name: str, price: Decimal, stock: int) -> None:
        """Put a new product in the catalogue."""
        if self.sku:
            raise CommandRejected(f"product {sku} exists already", "sku")
        self._apply_event(ProductAdded(sku=sku, name=name, price=price, stock=stock))

    def restock(self, quantity: int) -> None:
        """Units arrived."""
        self._apply_event(ProductRestocked(sku=self.sku, quantity=quantity))

    def reserve(self, order_id: str, quantity: int, *, event_id: str | None = None) -> None:
        """Set units aside for an order, if there are enough."""
        if quantity > self.stock:
            raise OutOfStock(f"{self.sku}: {quantity} wanted, {self.stock} in stock")
        self._apply_event(
            StockReserved(
                id=new_event_id(event_id), sku=self.sku, order_id=order_id, quantity=quantity
            )
        )

    def release(self, order_id: str, quantity: int, *, event_id: str | None = None) -> None:
        """Put an order's units back on the shelf."""
        self._apply_event(
            StockReleased(
                id=new_event_id(event_id), sku=self.sku, order_id=order_id, quantity=quantity
            )
        )

    def _when_product_added(self, event: ProductAdded) -> None:
        self.sku = event.sku
        self.name = event.name
        self.price = event.price
        self.stock = event.stock

    def _when_product_restocked(self, event: ProductRestocked) -> None:
        self.stock += event.quantity

    def _when_stock_reserved(self, event: StockReserved) -> None:
        self.stock -= event.quantity

    def _when_stock_released(self, event: StockReleased) -> None:
        self.stock += event.quantity


@dataclass
class Order(AggregateRoot):
    """An order, from placed to shipped or cancelled.

    The transitions are idempotent (marking a paid order paid again changes
    nothing), because the saga steps that make them may run twice.
    """

    customer: str = ""
    account_id: str = ""
    country: str = ""
    lines: list[OrderLine] = field(default_factory=list)
    total: Decimal = Decimal("0.00")
    currency: str = ""
    status: str = "new"
    refunded: bool = False

    def place(
        self,
        customer: str,
        account_id: str,
        country: str,
        lines: list[OrderLine],
        currency: str,
    ) -> None:
        """Record the order, with its total."""
        if self.status != "new":
            raise CommandRejected(f"order {self.aggregate_id} exists already", "order_id")
        total = sum((line.unit_price * line.quantity for line in lines), Decimal("0.00"))
        self._apply_event(
            OrderPlaced(
                order_id=self.aggregate_id,
                customer=customer,
                account_id=account_id,
                country=country,
                lines=tuple(lines),
                total=total,
                currency=currency,
            )
        )

    def mark_paid(self, payment_id: str) -> None:
        """The payment went through."""
        if self.status == "placed":
            self._apply_event(
                OrderPaid(order_id=self.aggregate_id, amount=self.total, payment_id=payment_id)
            )

    def mark_refunded(self) -> None:
        """The payment went back."""
        if self.status == "paid" and not self.refunded:
            self._apply_event(OrderRefunded(order_id=self.aggregate_id, amount=self.total))

    def mark_shipped(self, carrier: str, tracking_number: str) -> None:
        """The parcel left."""
        if self.status == "paid":
            self._apply_event(
                OrderShipped(
                    order_id=self.aggregate_id, carrier=carrier, tracking_number=tracking_number
                )
            )

    def cancel(self, reason: str) -> None:
        """The order will not be fulfilled."""
        if self.status in ("placed", "paid"):
            self._apply_event(OrderCancelled(order_id=self.aggregate_id, reason=reason))

    def _when_order_placed(self, event: OrderPlaced) -> None:
        self.customer = event.customer
        self.account_id = event.account_id
        self.country = event.country
        self.lines = list(event.lines)
        self.total = event.total
        self.currency = event.currency
        self.status = "placed"

    def _when_order_paid(self, event: OrderPaid) -> None:
        self.status = "paid"

    def _when_order_refunded(self, event: OrderRefunded) -> None:
        self.refunded = True

    def _when_order_shipped(self, event: OrderShipped) -> None:
        self.status = "shipped"

    def _when_order_cancelled(self, event: OrderCancelled) -> None:
        self.status = "cancelled"
