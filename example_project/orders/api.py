"""The order-fulfilment API: commands in (POST), read models out (GET).

=======================================  ======================  ======
POST /api/orders/products/               AddProduct              201
POST /api/orders/products/<sku>/restock/ RestockProduct          200
POST /api/orders/                        PlaceOrder (a saga)     202
GET  /api/orders/products/<sku>/         the product's stock
GET  /api/orders/<order_id>/             the order's read model
=======================================  ======================  ======

A ``PlaceOrder`` body::

    {"customer": "Ada", "account_id": "ACC-…", "country": "DE",
     "lines": [{"sku": "LAMP-01", "quantity": 2}]}
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.urls import reverse
from rest_framework import serializers, status

from example_project.common.api import CommandView, ReadModelView
from example_project.orders.commands import AddProduct, PlaceOrder, RestockProduct
from example_project.orders.models import OrderSummary, ProductStock

__all__ = ["AddProductView", "OrderView", "PlaceOrderView", "ProductView", "RestockView"]


class AddProductView(CommandView):
    """Add a product: ``{"sku": "LAMP-01", "name": "Desk lamp", "price": "39.90", "stock": 20}``."""

    command_class = AddProduct
    success_status: ClassVar[int] = status.HTTP_201_CREATED

    def accepted(self, command: Any) -> dict[str, Any]:
        """The product's URL."""
        return {"sku": command.sku, "url": reverse("orders-product", args=[command.sku])}


class RestockView(CommandView):
    """Restock: ``{"quantity": 10}``."""

    command_class = RestockProduct
    success_status: ClassVar[int] = status.HTTP_200_OK

    def accepted(self, command: Any) -> dict[str, Any]:
        """The product's URL."""
        return {"sku": command.sku, "url": reverse("orders-product", args=[command.sku])}


class PlaceOrderView(CommandView):
    """Place an order (see the module docs); 202: the ``order-fulfillment`` saga takes it on."""

    command_class = PlaceOrder

    def accepted(self, command: Any) -> dict[str, Any]:
        """The order's id (also its saga's id) and URL."""
        return {
            "order_id": command.order_id,
            "saga_id": command.order_id,
            "url": reverse("orders-order", args=[command.order_id]),
        }


class ProductSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A product's stock."""

    class Meta:
        model = ProductStock
        fields = ["sku", "name", "price", "stock", "reserved", "updated_at"]


class OrderSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """An order's read model."""

    class Meta:
        model = OrderSummary
        fields = [
            "order_id",
            "customer",
            "account_id",
            "country",
            "lines",
            "items",
            "total",
            "currency",
            "status",
            "refunded",
            "tracking_number",
            "reason",
            "placed_at",
            "updated_at",
        ]


class ProductView(ReadModelView):
    """A product, as the ``orders-inventory`` projection has it."""

    queryset = ProductStock.objects.all()
    serializer_class = ProductSerializer
    lookup_field = "sku"


class OrderView(ReadModelView):
    """An order, as the ``orders-summary`` projection has it."""

    queryset = OrderSummary.objects.all()
    serializer_class = OrderSerializer
    lookup_field = "order_id"
