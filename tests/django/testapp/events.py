"""Events and aggregates of the test app: the reference's bank account example."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from orchestrix.core.eventsourcing.aggregate import AggregateRoot
from orchestrix.core.messaging.message import Event


@dataclass(frozen=True, kw_only=True)
class AccountOpened(Event):
    account_id: str
    owner: str
    initial_deposit: float


@dataclass(frozen=True, kw_only=True)
class MoneyDeposited(Event):
    account_id: str
    amount: Decimal


@dataclass(frozen=True, kw_only=True)
class PersonRegistered(Event):
    """Personal data of a customer (tests/django/test_crypto_shredding.py)."""

    personal_data: ClassVar[tuple[str, ...]] = ("email", "name", "phone", "nickname")
    data_subject: ClassVar[str] = "customer_id"

    customer_id: str
    email: str
    name: str
    phone: str | None
    nickname: str = "anonymous"
    plan: str = "free"
    credit: Decimal = Decimal("0")


@dataclass
class BankAccount(AggregateRoot):
    balance: float = 0.0
    owner: str = ""

    def open(self, owner: str, initial_deposit: float) -> None:
        self._apply_event(
            AccountOpened(
                account_id=self.aggregate_id,
                owner=owner,
                initial_deposit=initial_deposit,
            )
        )

    def deposit(self, amount: Decimal) -> None:
        self._apply_event(MoneyDeposited(account_id=self.aggregate_id, amount=amount))

    def _when_account_opened(self, event: AccountOpened) -> None:
        self.owner = event.owner
        self.balance = event.initial_deposit

    def _when_money_deposited(self, event: MoneyDeposited) -> None:
        self.balance += float(event.amount)
