"""The orders app."""

from django.apps import AppConfig


class OrdersConfig(AppConfig):
    """Products, stock, orders and their fulfilment (read models in this app's tables)."""

    name = "example_project.orders"
    label = "orders"
    verbose_name = "Order fulfilment (read models)"
    default_auto_field = "django.db.models.BigAutoField"
