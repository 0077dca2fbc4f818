"""The order-fulfilment read models in the admin, read-only; and the carrier's bookings."""

from __future__ import annotations

from django.contrib import admin

from example_project.common.admin import ReadModelAdmin, saga_link
from example_project.orders.models import OrderSummary, ProductStock, Shipment


@admin.register(ProductStock)
class ProductStockAdmin(ReadModelAdmin):
    """Products and their stock."""

    list_display = ["sku", "name", "price", "stock", "reserved", "updated_at"]
    search_fields = ["sku", "name"]


@admin.register(OrderSummary)
class OrderSummaryAdmin(ReadModelAdmin):
    """Orders and where they stand."""

    list_display = [
        "order_id",
        "customer",
        "country",
        "items",
        "total",
        "status",
        "refunded",
        "tracking_number",
        "reason",
        "placed_at",
        "saga",
    ]
    list_filter = ["status", "country"]
    search_fields = ["order_id", "customer", "account_id"]

    @admin.display(description="saga")
    def saga(self, obj: OrderSummary) -> str:
        """The order's fulfilment saga (its id is the order's)."""
        return saga_link(obj.order_id)


@admin.register(Shipment)
class ShipmentAdmin(ReadModelAdmin):
    """The simulated carrier's bookings (attempts > 1: the saga retried a transient failure)."""

    list_display = ["booking_key", "order_id", "country", "attempts", "tracking_number"]
    list_filter = ["country", "attempts"]
    search_fields = ["order_id", "booking_key"]
