"""The banking API: commands in (POST), read models out (GET).

========================================  =========================  ======
POST /api/banking/accounts/               OpenAccount                201
POST /api/banking/accounts/<id>/deposit/  DepositMoney               200
POST /api/banking/accounts/<id>/withdraw/ WithdrawMoney              200
POST /api/banking/accounts/<id>/freeze/   FreezeAccount              200
POST /api/banking/accounts/<id>/close/    CloseAccount               200
POST /api/banking/transfers/              TransferMoney (a saga)     202
GET  /api/banking/accounts/<id>/          the account's read model
GET  /api/banking/transfers/<id>/         the transfer's read model
========================================  =========================  ======

Invalid commands get 400 with the validators' messages per field (see
:mod:`example_project.common.api`). A command answered 200 is stored; the
read models follow as soon as the projections ran (at once with
``orchestrix_run`` or a Celery worker), so a GET right after a POST may
still show the state before it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.urls import reverse
from rest_framework import serializers, status

from example_project.banking.commands import (
    CloseAccount,
    DepositMoney,
    FreezeAccount,
    OpenAccount,
    TransferMoney,
    WithdrawMoney,
)
from example_project.banking.models import AccountSummary, TransferSummary
from example_project.common.api import CommandView, ReadModelView

__all__ = [
    "AccountView",
    "CloseAccountView",
    "DepositView",
    "FreezeAccountView",
    "OpenAccountView",
    "TransferMoneyView",
    "TransferView",
    "WithdrawView",
]


class OpenAccountView(CommandView):
    """Open an account: ``{"owner": "Ada", "currency": "EUR", "initial_deposit": "100.00"}``."""

    command_class = OpenAccount
    success_status: ClassVar[int] = status.HTTP_201_CREATED

    def accepted(self, command: Any) -> dict[str, Any]:
        """The new account's id and URL."""
        return {
            "account_id": command.account_id,
            "url": reverse("banking-account", args=[command.account_id]),
        }


class _AccountCommandView(CommandView):
    success_status: ClassVar[int] = status.HTTP_200_OK

    def accepted(self, command: Any) -> dict[str, Any]:
        """The account's id and URL."""
        return {
            "account_id": command.account_id,
            "url": reverse("banking-account", args=[command.account_id]),
        }


class DepositView(_AccountCommandView):
    """Deposit: ``{"amount": "25.00", "currency": "EUR"}``."""

    command_class = DepositMoney


class WithdrawView(_AccountCommandView):
    """Withdraw: ``{"amount": "25.00", "currency": "EUR"}`` (409 when the balance is short)."""

    command_class = WithdrawMoney


class FreezeAccountView(_AccountCommandView):
    """Freeze: ``{"reason": "card reported stolen"}``."""

    command_class = FreezeAccount


class CloseAccountView(_AccountCommandView):
    """Close an account whose balance is zero: ``{}``."""

    command_class = CloseAccount


class TransferMoneyView(CommandView):
    """Transfer: ``{"source_id": …, "target_id": …, "amount": "10.00", "currency": "EUR"}``.

    202 Accepted: the ``money-transfer`` saga moves the money; follow it at
    the transfer's URL (or the saga's page in the admin).
    """

    command_class = TransferMoney

    def accepted(self, command: Any) -> dict[str, Any]:
        """The transfer's id (also its saga's id) and URL."""
        return {
            "transfer_id": command.transfer_id,
            "saga_id": command.transfer_id,
            "url": reverse("banking-transfer", args=[command.transfer_id]),
        }


class AccountSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """An account's read model."""

    class Meta:
        model = AccountSummary
        fields = [
            "account_id",
            "owner",
            "currency",
            "balance",
            "status",
            "deposits",
            "withdrawals",
            "version",
            "opened_at",
            "updated_at",
        ]


class TransferSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """A transfer's read model."""

    class Meta:
        model = TransferSummary
        fields = [
            "transfer_id",
            "source_id",
            "target_id",
            "amount",
            "currency",
            "status",
            "reason",
            "requested_at",
            "finished_at",
        ]


class AccountView(ReadModelView):
    """An account, as the ``banking-accounts`` projection has it."""

    queryset = AccountSummary.objects.all()
    serializer_class = AccountSerializer
    lookup_field = "account_id"


class TransferView(ReadModelView):
    """A transfer, as the ``banking-transfers`` projection has it."""

    queryset = TransferSummary.objects.all()
    serializer_class = TransferSerializer
    lookup_field = "transfer_id"
