"""The demo's workload: a few hundred commands against the bank and the shop.

It goes through the same door as the API (:func:`build_command` then
:func:`execute`), with payloads as a client would send them, so that:

* some commands fail validation (a negative amount, an unknown currency, an
  empty order): they are counted and store nothing;
* some are refused by the domain (insufficient funds, a closed account):
  counted too;
* some sagas compensate: transfers to frozen accounts are refunded, orders
  whose payment fails release their stock, orders to countries the carrier
  does not serve are refunded and released;
* two long-lived "house" accounts collect many events, so the repository
  stores snapshots of them;
* a few accounts are imported as the first release stored them, with
  ``MoneyDeposited`` events of schema version 1, which the upcaster brings to
  version 2 whenever they are read.

The choices come from a random generator seeded with the run's seed and
number: the same seed gives the same workload (in the embedded mode, where
sagas run at once; with Celery they run as the workers get to them, so
later commands may see other balances).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from example_project.banking.aggregates import Account
from example_project.banking.aggregates import repository as bank_repository
from example_project.banking.commands import (
    CloseAccount,
    DepositMoney,
    FreezeAccount,
    OpenAccount,
    TransferMoney,
    WithdrawMoney,
)
from example_project.banking.events import AccountOpened, MoneyDepositedV1
from example_project.common.commands import CommandRejected, build_command, execute
from example_project.orders.aggregates import Product, product_stream
from example_project.orders.aggregates import repository as orders_repository
from example_project.orders.commands import AddProduct, PlaceOrder, RestockProduct
from orchestrix.core.common.exceptions import AggregateNotFoundError
from orchestrix.core.common.validation import ValidationError
from orchestrix.core.messaging.message import Command
from orchestrix_django.sagas import run_saga
from orchestrix_django.storage import DjangoEventStore

__all__ = ["SIZES", "Size", "Tally", "Workload"]


@dataclass(frozen=True)
class Size:
    """How much a run generates."""

    customers: int
    mixed_commands: int
    legacy_accounts: int = 3


#: ``--size`` choices: roughly 200, 700 and 3000 commands.
SIZES: dict[str, Size] = {
    "small": Size(customers=14, mixed_commands=170),
    "medium": Size(customers=40, mixed_commands=640),
    "large": Size(customers=120, mixed_commands=2900),
}

PRODUCTS: list[tuple[str, str, str, int]] = [
    ("LAMP-01", "Desk lamp", "39.90", 60),
    ("CHAIR-02", "Office chair", "189.00", 30),
    ("MUG-03", "Enamel mug", "12.50", 120),
    ("PEN-04", "Fountain pen", "64.00", 50),
    ("BAG-05", "Laptop bag", "79.00", 45),
    ("DESK-06", "Standing desk", "499.00", 12),
    ("NOTE-07", "Notebook, dotted", "8.90", 200),
    ("PLANT-08", "Potted fern", "24.00", 35),
]

FIRST_NAMES = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken"]
LAST_NAMES = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]

#: Where orders go: mostly places the carrier serves, some it does not (CH, GB, NO).
DESTINATIONS = ["DE"] * 6 + ["FR"] * 4 + ["NL", "IT", "ES", "AT", "BE", "SE", "CH", "GB", "NO"]


@dataclass
class Tally:
    """What a run did, counted by outcome and by command type."""

    commands: int = 0
    accepted: int = 0
    invalid: int = 0
    refused: int = 0
    sagas_started: int = 0
    legacy_events: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    invalid_by_type: Counter[str] = field(default_factory=Counter)
    refused_by_type: Counter[str] = field(default_factory=Counter)
    #: A few validation errors, as the API would return them.
    invalid_examples: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)


ProgressCallback = Callable[[int, int, Tally], None]


class Workload:
    """One run of the demo's workload (see the module docs).

    ``run_sagas``: execute each saga right after the command that started
    it (the embedded mode); with Celery the workers do.
    """

    def __init__(
        self,
        *,
        number: int,
        seed: int,
        size: Size,
        run_sagas: bool,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.number = number
        self.size = size
        self.run_sagas = run_sagas
        self.on_progress = on_progress
        self.random = random.Random(f"orchestrix-demo:{seed}:{number}")
        self.tally = Tally()
        self.prefix = f"R{number}"
        self.customers: list[tuple[str, str]] = []  # (account id, currency)
        self.house: list[str] = []
        #: Accounts the workload froze (their owners keep ordering less often).
        self.frozen: set[str] = set()
        self.skus = [sku for sku, *_ in PRODUCTS]
        self._sequence = 0

    # -- running ------------------------------------------------------------------

    def planned(self) -> int:
        """About how many commands the run sends (for the progress display)."""
        return len(PRODUCTS) + 2 + self.size.customers + 6 + self.size.mixed_commands

    def run(self) -> Tally:
        """Generate the whole workload; returns the tally."""
        self.import_legacy_accounts()
        self.stock_catalogue()
        self.open_accounts()
        self.freeze_some()
        for _ in range(self.size.mixed_commands):
            self.random_command()
        self._progress(force=True)
        return self.tally

    def send(self, command_class: type[Command], payload: Mapping[str, Any]) -> Command | None:
        """Build and execute one command, as the API does; None when it failed (counted)."""
        name = command_class.__name__
        self.tally.commands += 1
        self.tally.by_type[name] += 1
        try:
            command = build_command(command_class, payload)
        except ValidationError as invalid:
            self.tally.invalid += 1
            self.tally.invalid_by_type[name] += 1
            if len(self.tally.invalid_examples) < 3:
                self.tally.invalid_examples.append((name, invalid.errors))
            self._progress()
            return None
        try:
            execute(command)
        except (CommandRejected, AggregateNotFoundError):
            self.tally.refused += 1
            self.tally.refused_by_type[name] += 1
            self._progress()
            return None
        self.tally.accepted += 1
        saga_id = getattr(command, "transfer_id", None) or getattr(command, "order_id", None)
        if saga_id is not None:
            self.tally.sagas_started += 1
            if self.run_sagas:
                run_saga(saga_id)
        self._progress()
        return command

    def _progress(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        planned = max(self.planned(), self.tally.commands)
        step = max(planned // 10, 1)
        if force or self.tally.commands % step == 0:
            self.on_progress(self.tally.commands, planned, self.tally)

    def _next(self, kind: str) -> str:
        self._sequence += 1
        return f"{kind}-{self.prefix}-{self._sequence:04d}"

    def _money(self, low: int, high: int) -> str:
        return f"{self.random.randint(low * 100, high * 100) / 100:.2f}"

    # -- phases -------------------------------------------------------------------

    def import_legacy_accounts(self) -> None:
        """Accounts as the first release stored them: deposits in cents (schema version 1).

        Written straight to the event store, as that release's code did;
        not through today's commands, which only write version 2.
        """
        store = DjangoEventStore()
        for index in range(self.size.legacy_accounts):
            account_id = f"ACC-{self.prefix}-L{index + 1:02d}"
            owner = f"{self.random.choice(FIRST_NAMES)} {self.random.choice(LAST_NAMES)}"
            events: list[Any] = [AccountOpened(account_id=account_id, owner=owner, currency="EUR")]
            events += [
                MoneyDepositedV1(
                    account_id=account_id, amount_cents=self.random.randint(500, 90000)
                )
                for _ in range(self.random.randint(2, 5))
            ]
            store.save(account_id, events, expected_version=0, aggregate_type="Account")
            self.tally.legacy_events += len(events) - 1
            self.customers.append((account_id, "EUR"))

    def stock_catalogue(self) -> None:
        """Add the products (restock them when an earlier run added them)."""
        store = DjangoEventStore()
        for sku, name, price, stock in PRODUCTS:
            if store.stream_version(product_stream(sku)):
                self.send(RestockProduct, {"sku": sku, "quantity": stock})
            else:
                self.send(AddProduct, {"sku": sku, "name": name, "price": price, "stock": stock})

    def open_accounts(self) -> None:
        """The two house accounts (long-lived: many events, snapshots) and the customers'."""
        for role in ("PAYROLL", "TREASURY"):
            account_id = f"ACC-{self.prefix}-{role}"
            opened = self.send(
                OpenAccount,
                {
                    "account_id": account_id,
                    "owner": f"Example Shop ({role.lower()})",
                    "currency": "EUR",
                    "initial_deposit": "250000.00",
                },
            )
            if opened is not None:
                self.house.append(account_id)
        for index in range(self.size.customers):
            account_id = f"ACC-{self.prefix}-{index + 1:03d}"
            currency = self.random.choice(["EUR"] * 7 + ["USD", "GBP"])
            opened = self.send(
                OpenAccount,
                {
                    "account_id": account_id,
                    "owner": f"{self.random.choice(FIRST_NAMES)} {self.random.choice(LAST_NAMES)}",
                    "currency": currency,
                    "initial_deposit": self._money(200, 2500),
                },
            )
            if opened is not None:
                self.customers.append((account_id, currency))
        # Sign-up forms get things wrong: these fail validation.
        self.send(OpenAccount, {"owner": "", "currency": "EUR"})
        self.send(OpenAccount, {"owner": "Zed", "currency": "DOGE", "initial_deposit": "-5"})

    def freeze_some(self) -> None:
        """Freeze two customer accounts: transfers to them will have to be refunded."""
        for account_id, _ in self.random.sample(self.customers, k=min(2, len(self.customers))):
            self._freeze(account_id, "card reported stolen")
        self.send(FreezeAccount, {"account_id": self.customers[0][0], "reason": ""})  # invalid

    # -- the mix ------------------------------------------------------------------

    def random_command(self) -> None:
        """One command of the mix, chosen by weight."""
        actions: list[tuple[Callable[[], None], int]] = [
            (self.house_activity, 26),
            (self.deposit, 14),
            (self.withdraw, 12),
            (self.transfer, 16),
            (self.place_order, 22),
            (self.restock, 5),
            (self.freeze, 1),
            (self.close, 1),
            (self.sign_up, 3),
        ]
        functions, weights = zip(*actions, strict=True)
        self.random.choices(functions, weights)[0]()

    def _customer(self, currency: str | None = None) -> tuple[str, str]:
        pool = [c for c in self.customers if currency is None or c[1] == currency]
        return self.random.choice(pool or self.customers)

    def house_activity(self) -> None:
        """Payroll and treasury move money all day: long streams, hence snapshots.

        One time in four, payroll pays a customer's salary (a transfer saga).
        """
        if self.house and self.random.random() < 0.25:
            target_id, _ = self._customer("EUR")
            self.send(
                TransferMoney,
                {
                    "transfer_id": self._next("TRF"),
                    "source_id": self.house[0],
                    "target_id": target_id,
                    "amount": self._money(800, 2400),
                    "currency": "EUR",
                },
            )
            return
        account_id = self.random.choice(self.house or [self._customer("EUR")[0]])
        command = self.random.choice([DepositMoney, WithdrawMoney])
        self.send(
            command, {"account_id": account_id, "amount": self._money(100, 5000), "currency": "EUR"}
        )

    def deposit(self) -> None:
        """A customer deposit; one in ten is malformed."""
        account_id, currency = self._customer()
        payload: dict[str, Any] = {
            "account_id": account_id,
            "amount": self._money(20, 1200),
            "currency": currency,
        }
        if self.random.random() < 0.1:
            payload.update(
                self.random.choice(
                    [{"amount": "-20.00"}, {"amount": "12.345"}, {"currency": "XYZ"}, {"amount": 0}]
                )
            )
        self.send(DepositMoney, payload)

    def withdraw(self) -> None:
        """A customer withdrawal; large ones bounce (insufficient funds)."""
        account_id, currency = self._customer()
        amount = self._money(10, 900) if self.random.random() < 0.8 else self._money(3000, 9000)
        self.send(WithdrawMoney, {"account_id": account_id, "amount": amount, "currency": currency})

    def transfer(self) -> None:
        """A transfer between customers, or a salary from payroll (a saga)."""
        source_id, currency = self._customer()
        if self.house and currency == "EUR" and self.random.random() < 0.3:
            source_id = self.house[0]
        target_id, _ = self._customer(currency)
        payload = {
            "transfer_id": self._next("TRF"),
            "source_id": source_id,
            "target_id": target_id,
            "amount": self._money(10, 700),
            "currency": currency,
        }
        if self.random.random() < 0.06:
            payload["target_id"] = source_id  # to itself: invalid
        self.send(TransferMoney, payload)

    def place_order(self) -> None:
        """An order paid from a customer's euro account (a saga); some are malformed."""
        account_id, _ = self._customer("EUR")
        if account_id in self.frozen and self.random.random() < 0.8:
            account_id, _ = self._customer("EUR")  # most owners of frozen accounts noticed
        lines = [
            {"sku": sku, "quantity": self.random.randint(1, 2)}
            for sku in self.random.sample(self.skus, k=self.random.randint(1, 3))
        ]
        payload: dict[str, Any] = {
            "order_id": self._next("ORD"),
            "customer": f"{self.random.choice(FIRST_NAMES)} {self.random.choice(LAST_NAMES)}",
            "account_id": account_id,
            "country": self.random.choice(DESTINATIONS),
            "lines": lines,
        }
        if self.random.random() < 0.08:
            payload.update(
                self.random.choice(
                    [
                        {"lines": []},
                        {"country": "XX"},
                        {"lines": [{"sku": lines[0]["sku"], "quantity": 0}]},
                        {"customer": ""},
                    ]
                )
            )
        self.send(PlaceOrder, payload)

    def restock(self) -> None:
        """A delivery reached the warehouse: of what runs lowest, usually."""
        sku = self.random.choice(self.skus)
        if self.random.random() < 0.8:
            repo = orders_repository()
            sku = min(self.skus, key=lambda s: repo.load(Product, product_stream(s)).stock)
        self.send(RestockProduct, {"sku": sku, "quantity": self.random.randint(10, 40)})

    def freeze(self) -> None:
        """Compliance freezes an account."""
        self._freeze(self._customer()[0], "unusual activity")

    def _freeze(self, account_id: str, reason: str) -> None:
        if len(self.frozen) * 8 > len(self.customers):
            return  # one account in eight at most: compliance is busy enough
        if self.send(FreezeAccount, {"account_id": account_id, "reason": reason}) is not None:
            self.frozen.add(account_id)

    def close(self) -> None:
        """A customer leaves: the balance is paid out, then the account closed."""
        account_id, currency = self._customer()
        try:
            account: Account = bank_repository().load(Account, account_id)
        except AggregateNotFoundError:
            return
        if account.balance and account.status == "open":
            self.send(
                WithdrawMoney,
                {
                    "account_id": account_id,
                    "amount": f"{account.balance:.2f}",
                    "currency": currency,
                },
            )
        if self.send(CloseAccount, {"account_id": account_id}) is not None:
            # The customer left: nobody sends them money or orders any more
            # (frozen accounts stay in the pool: their owners don't know yet).
            self.customers.remove((account_id, currency))

    def sign_up(self) -> None:
        """A new customer (their account joins the pool)."""
        account_id = self._next("ACC")
        currency = self.random.choice(["EUR", "EUR", "USD"])
        opened = self.send(
            OpenAccount,
            {
                "account_id": account_id,
                "owner": f"{self.random.choice(FIRST_NAMES)} {self.random.choice(LAST_NAMES)}",
                "currency": currency,
                "initial_deposit": self._money(20, 800),
            },
        )
        if opened is not None:
            self.customers.append((account_id, currency))
