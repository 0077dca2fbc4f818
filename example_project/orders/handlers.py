"""The order-fulfilment module: its command handlers, wired to the message bus.

``ORCHESTRIX["MODULES"]`` lists :class:`OrdersModule` (the core ``Module``
protocol); see :mod:`example_project.banking.handlers` for how commands
reach the handlers.
"""

from __future__ import annotations

from django.db import transaction

from example_project.banking.aggregates import Account
from example_project.banking.aggregates import repository as bank_repository
from example_project.common.aggregates import update
from example_project.common.commands import CommandRejected
from example_project.orders.aggregates import Order, Product, product_stream, repository
from example_project.orders.commands import AddProduct, PlaceOrder, RestockProduct
from example_project.orders.events import OrderLine
from example_project.orders.sagas import order_fulfillment
from orchestrix.core.common.exceptions import ConcurrencyError
from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix.core.messaging.message_bus import MessageBus

__all__ = ["OrderCommands", "OrdersModule"]

#: The shop's currency: prices, and the accounts that pay, are in euros.
SHOP_CURRENCY = "EUR"


class OrderCommands:
    """Handles the catalogue and order commands."""

    def __init__(self, bus: MessageBus, store: EventStore) -> None:
        self.bus = bus
        self.repo = repository(store)
        self.bank = bank_repository(store)

    def add_product(self, command: AddProduct) -> None:
        """Add the product, with its first stock."""
        product = Product(aggregate_id=product_stream(command.sku))
        product.add(command.sku, command.name, command.price, command.stock)
        try:
            self.repo.save(product)
        except ConcurrencyError:
            raise CommandRejected(f"product {command.sku} exists already", "sku") from None

    def restock(self, command: RestockProduct) -> None:
        """Units arrived."""
        update(
            self.repo,
            Product,
            product_stream(command.sku),
            lambda product: product.restock(command.quantity),
        )

    def place_order(self, command: PlaceOrder) -> None:
        """Price the lines, record the order and start its fulfilment saga (one transaction).

        Unknown products answer 404; a paying account in another currency is
        refused. Stock and money are the saga's business: it reserves,
        charges, ships, and compensates what it did when a step fails.
        """
        account: Account = self.bank.load(Account, command.account_id)
        if account.currency != SHOP_CURRENCY:
            raise CommandRejected(
                f"account {command.account_id} holds {account.currency}; "
                f"the shop takes {SHOP_CURRENCY}",
                "account_id",
            )
        lines = []
        for request in command.lines:
            product: Product = self.repo.load(Product, product_stream(request.sku))
            lines.append(OrderLine(request.sku, request.quantity, product.price))
        order = Order(aggregate_id=command.order_id)
        order.place(command.customer, command.account_id, command.country, lines, SHOP_CURRENCY)
        with transaction.atomic():
            try:
                self.repo.save(order)
            except ConcurrencyError:
                raise CommandRejected(
                    f"order {command.order_id} exists already", "order_id"
                ) from None
            order_fulfillment.start(
                saga_id=command.order_id,
                caused_by=command,
                order_id=command.order_id,
                account_id=command.account_id,
                amount=order.total,
                country=command.country,
                lines=[{"sku": line.sku, "quantity": line.quantity} for line in lines],
            )


class OrdersModule:
    """The order-fulfilment module (the core ``Module`` protocol)."""

    def register(self, bus: MessageBus, store: EventStore) -> None:
        """One handler per command."""
        commands = OrderCommands(bus, store)
        bus.subscribe(AddProduct, commands.add_product)
        bus.subscribe(RestockProduct, commands.restock)
        bus.subscribe(PlaceOrder, commands.place_order)
