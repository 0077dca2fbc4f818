"""URLs of the order-fulfilment API (included under ``api/orders/``)."""

from django.urls import path

from example_project.orders import api

urlpatterns = [
    path("", api.PlaceOrderView.as_view(), name="orders-place"),
    path("products/", api.AddProductView.as_view(), name="orders-add-product"),
    path("products/<str:sku>/", api.ProductView.as_view(), name="orders-product"),
    path("products/<str:sku>/restock/", api.RestockView.as_view(), name="orders-restock"),
    path("<str:order_id>/", api.OrderView.as_view(), name="orders-order"),
]
