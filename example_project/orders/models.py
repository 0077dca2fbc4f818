"""The order-fulfilment read models, and the simulated carrier's bookings.

``ProductStock`` and ``OrderSummary`` are read models kept by the projections
(views of the event log, rebuilt by a replay). ``Shipment`` is not: it stands
for the carrier's own system, which the ``ship_order`` saga step calls.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models

__all__ = ["OrderSummary", "ProductStock", "Shipment"]


class ProductStock(models.Model):
    """One row per product: price, units on the shelf, units held by orders."""

    sku = models.CharField(max_length=32, primary_key=True)
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    stock = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["sku"]
        verbose_name = "product"

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class OrderSummary(models.Model):
    """One row per order: its lines, total and where it stands."""

    order_id = models.CharField(max_length=64, primary_key=True)
    customer = models.CharField(max_length=100)
    account_id = models.CharField(max_length=64)
    country = models.CharField(max_length=2)
    lines = models.JSONField(default=list)
    items = models.PositiveIntegerField(default=0)
    total = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, default="placed")
    refunded = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0.00"))
    tracking_number = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    placed_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["-placed_at"]
        verbose_name = "order"

    def __str__(self) -> str:
        return f"{self.order_id} ({self.status})"


class Shipment(models.Model):
    """A booking in the (simulated) carrier's system, keyed by the saga step's idempotency key."""

    booking_key = models.CharField(max_length=255, primary_key=True)
    order_id = models.CharField(max_length=64)
    country = models.CharField(max_length=2)
    attempts = models.PositiveIntegerField(default=0)
    tracking_number = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.order_id} -> {self.country} ({self.tracking_number or 'not booked'})"
