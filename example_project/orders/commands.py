"""The order-fulfilment module's commands, validated with Orchestrix's validation helpers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from example_project.common.validation import FieldErrors, validate_cents
from orchestrix.core.common.validation import (
    validate_in_range,
    validate_max_length,
    validate_min_length,
    validate_not_empty,
    validate_one_of,
)
from orchestrix.core.messaging.message import Command

__all__ = [
    "COUNTRIES",
    "AddProduct",
    "LineRequest",
    "PlaceOrder",
    "RestockProduct",
    "new_order_id",
]

#: Where the shop takes orders to (the carrier may still refuse some destinations).
COUNTRIES = ("AT", "BE", "CH", "DE", "DK", "ES", "FR", "GB", "IE", "IT", "NL", "NO", "PT", "SE")
#: The most lines, and units per line, one order may have.
MAX_LINES = 20
MAX_QUANTITY = 100


def new_order_id() -> str:
    """A fresh order id, ``ORD-`` and twelve hex digits."""
    return f"ORD-{uuid.uuid4().hex[:12].upper()}"


def _check_sku(errors: FieldErrors, sku: str, name: str) -> None:
    errors.check(validate_not_empty, sku, name)
    errors.check(validate_max_length, sku, 32, name)


@dataclass(frozen=True, kw_only=True)
class AddProduct(Command):
    """Add a product to the catalogue."""

    sku: str
    name: str
    price: Decimal
    stock: int = 0

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_sku(errors, self.sku, "sku")
        errors.check(validate_not_empty, self.name, "name")
        errors.check(validate_max_length, self.name, 100, "name")
        errors.check(validate_in_range, self.price, Decimal("0.01"), Decimal("100000"), "price")
        errors.check(validate_cents, self.price, "price")
        errors.check(validate_in_range, self.stock, 0, 1_000_000, "stock")
        errors.raise_if_any()


@dataclass(frozen=True, kw_only=True)
class RestockProduct(Command):
    """Units of a product arrived."""

    sku: str
    quantity: int

    def __post_init__(self) -> None:
        errors = FieldErrors()
        _check_sku(errors, self.sku, "sku")
        errors.check(validate_in_range, self.quantity, 1, 100_000, "quantity")
        errors.raise_if_any()


@dataclass(frozen=True)
class LineRequest:
    """A line of an order as the customer asks for it: a product and a quantity."""

    sku: str
    quantity: int


@dataclass(frozen=True, kw_only=True)
class PlaceOrder(Command):
    """Place an order, paid from the customer's bank account, shipped to ``country``."""

    order_id: str = field(default_factory=new_order_id)
    customer: str
    account_id: str
    country: str
    lines: tuple[LineRequest, ...]

    def __post_init__(self) -> None:
        errors = FieldErrors()
        errors.check(validate_not_empty, self.order_id, "order_id")
        errors.check(validate_max_length, self.order_id, 64, "order_id")
        errors.check(validate_not_empty, self.customer, "customer")
        errors.check(validate_min_length, self.customer, 2, "customer")
        errors.check(validate_max_length, self.customer, 100, "customer")
        errors.check(validate_not_empty, self.account_id, "account_id")
        errors.check(validate_one_of, self.country, COUNTRIES, "country")
        errors.check(validate_in_range, len(self.lines), 1, MAX_LINES, "lines")
        seen: set[str] = set()
        for index, line in enumerate(self.lines):
            _check_sku(errors, line.sku, f"lines[{index}].sku")
            errors.check(
                validate_in_range, line.quantity, 1, MAX_QUANTITY, f"lines[{index}].quantity"
            )
            if line.sku in seen:
                errors.add(f"lines[{index}].sku", f"{line.sku} is on an earlier line already")
            seen.add(line.sku)
        errors.raise_if_any()
