"""The order-fulfilment module's events.

Products live in streams ``product-<sku>``, orders in their own (``ORD-…``).
Payments are money movements of the customer's account at the example's
bank, so they are banking events (``MoneyWithdrawn`` / ``MoneyDeposited``
with the order as reference); the order records the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from orchestrix.core.messaging.message import Event

__all__ = [
    "OrderCancelled",
    "OrderLine",
    "OrderPaid",
    "OrderPlaced",
    "OrderRefunded",
    "OrderShipped",
    "ProductAdded",
    "ProductRestocked",
    "StockReleased",
    "StockReserved",
]

# -- products and stock


@dataclass(frozen=True, kw_only=True)
class ProductAdded(Event):
    """A product entered the catalogue, with its price and first stock."""

    sku: str
    name: str
    price: Decimal
    stock: int


@dataclass(frozen=True, kw_only=True)
class ProductRestocked(Event):
    """Units arrived at the warehouse."""

    sku: str
    quantity: int


@dataclass(frozen=True, kw_only=True)
class StockReserved(Event):
    """Units set aside for an order."""

    sku: str
    order_id: str
    quantity: int


@dataclass(frozen=True, kw_only=True)
class StockReleased(Event):
    """Units of a cancelled order went back on the shelf."""

    sku: str
    order_id: str
    quantity: int


# -- orders


@dataclass(frozen=True)
class OrderLine:
    """A line of an order, at the price of the moment it was placed."""

    sku: str
    quantity: int
    unit_price: Decimal


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(Event):
    """An order was placed; the ``order-fulfillment`` saga takes it from here."""

    order_id: str
    customer: str
    account_id: str
    country: str
    lines: tuple[OrderLine, ...]
    total: Decimal
    currency: str


@dataclass(frozen=True, kw_only=True)
class OrderPaid(Event):
    """The customer's account was charged (``payment_id``: the bank event's id)."""

    order_id: str
    amount: Decimal
    payment_id: str


@dataclass(frozen=True, kw_only=True)
class OrderRefunded(Event):
    """The payment went back to the customer's account."""

    order_id: str
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class OrderShipped(Event):
    """The carrier took the parcel."""

    order_id: str
    carrier: str
    tracking_number: str


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(Event):
    """The order will not be fulfilled (stock, payment or shipping failed: ``reason``)."""

    order_id: str
    reason: str
