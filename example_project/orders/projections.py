"""The order-fulfilment projections: stock per product, and orders."""

from __future__ import annotations

from django.db.models import F

from example_project.orders.events import (
    OrderCancelled,
    OrderPaid,
    OrderPlaced,
    OrderRefunded,
    OrderShipped,
    ProductAdded,
    ProductRestocked,
    StockReleased,
    StockReserved,
)
from example_project.orders.models import OrderSummary, ProductStock
from orchestrix_django.projections import DjangoProjection

__all__ = ["inventory", "orders"]

#: Units on the shelf and units held by orders, per product.
inventory = DjangoProjection("orders-inventory")


@inventory.on(ProductAdded)
def product_added(event: ProductAdded) -> None:
    """A new row."""
    ProductStock.objects.create(
        sku=event.sku,
        name=event.name,
        price=event.price,
        stock=event.stock,
        updated_at=event.timestamp,
    )


@inventory.on(ProductRestocked)
def product_restocked(event: ProductRestocked) -> None:
    """More on the shelf."""
    ProductStock.objects.filter(pk=event.sku).update(
        stock=F("stock") + event.quantity, updated_at=event.timestamp
    )


@inventory.on(StockReserved)
def stock_reserved(event: StockReserved) -> None:
    """From the shelf to an order."""
    ProductStock.objects.filter(pk=event.sku).update(
        stock=F("stock") - event.quantity,
        reserved=F("reserved") + event.quantity,
        updated_at=event.timestamp,
    )


@inventory.on(StockReleased)
def stock_released(event: StockReleased) -> None:
    """From a cancelled order back to the shelf."""
    ProductStock.objects.filter(pk=event.sku).update(
        stock=F("stock") + event.quantity,
        reserved=F("reserved") - event.quantity,
        updated_at=event.timestamp,
    )


@inventory.on_reset
def clear_inventory() -> None:
    """Empty the table before a replay."""
    ProductStock.objects.all().delete()


#: Every order and where it stands.
orders = DjangoProjection("orders-summary")


@orders.on(OrderPlaced)
def order_placed(event: OrderPlaced) -> None:
    """A new row, status placed."""
    OrderSummary.objects.create(
        order_id=event.order_id,
        customer=event.customer,
        account_id=event.account_id,
        country=event.country,
        lines=[
            {"sku": line.sku, "quantity": line.quantity, "unit_price": str(line.unit_price)}
            for line in event.lines
        ],
        items=sum(line.quantity for line in event.lines),
        total=event.total,
        currency=event.currency,
        placed_at=event.timestamp,
        updated_at=event.timestamp,
    )


@orders.on(OrderPaid)
def order_paid(event: OrderPaid) -> None:
    """Status paid."""
    OrderSummary.objects.filter(pk=event.order_id).update(status="paid", updated_at=event.timestamp)


@orders.on(OrderRefunded)
def order_refunded(event: OrderRefunded) -> None:
    """The refunded amount."""
    OrderSummary.objects.filter(pk=event.order_id).update(
        refunded=event.amount, updated_at=event.timestamp
    )


@orders.on(OrderShipped)
def order_shipped(event: OrderShipped) -> None:
    """Status shipped, with the tracking number."""
    OrderSummary.objects.filter(pk=event.order_id).update(
        status="shipped", tracking_number=event.tracking_number, updated_at=event.timestamp
    )


@orders.on(OrderCancelled)
def order_cancelled(event: OrderCancelled) -> None:
    """Status cancelled, with the reason."""
    OrderSummary.objects.filter(pk=event.order_id).update(
        status="cancelled", reason=event.reason, updated_at=event.timestamp
    )


@orders.on_reset
def clear_orders() -> None:
    """Empty the table before a replay."""
    OrderSummary.objects.all().delete()
