"""The command endpoints: valid commands are accepted, invalid ones refused with field errors.

Each test runs in a transaction rolled back at its end, on top of the demo's data.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from example_project.banking.aggregates import Account, repository
from example_project.banking.commands import OpenAccount
from example_project.common.commands import build_command
from example_project.orders.events import OrderPlaced
from orchestrix.core.common.validation import ValidationError
from orchestrix_django.models import EventRecord, SagaStateRecord
from orchestrix_django.storage.events import DjangoEventStore
from tests.example.conftest import DemoRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(demo: DemoRun, demo_admin: Any) -> APIClient:
    """An API client signed in as the demo's superuser."""
    client = APIClient()
    client.force_authenticate(demo_admin)
    return client


def _open(api: APIClient, **fields: Any) -> str:
    body = {"owner": "Grace Hopper", "currency": "EUR", "initial_deposit": "100.00", **fields}
    response = api.post("/api/banking/accounts/", body, format="json")
    assert response.status_code == 201, response.json()
    return str(response.json()["account_id"])


def _events() -> int:
    return EventRecord.objects.count()


def test_open_deposit_withdraw(api: APIClient) -> None:
    account_id = _open(api)
    assert (
        api.post(
            f"/api/banking/accounts/{account_id}/deposit/",
            {"amount": "25.50", "currency": "EUR"},
            format="json",
        ).status_code
        == 200
    )
    response = api.post(
        f"/api/banking/accounts/{account_id}/withdraw/",
        {"amount": "20.00", "currency": "EUR"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["account_id"] == account_id
    account = repository().load(Account, account_id)
    assert account.balance == Decimal("105.50")
    assert [e.type for e in DjangoEventStore().load(account_id)] == [
        "AccountOpened",
        "MoneyDeposited",
        "MoneyDeposited",
        "MoneyWithdrawn",
    ]


def test_invalid_commands_get_400_naming_every_field_and_store_nothing(api: APIClient) -> None:
    before = _events()
    response = api.post(
        "/api/banking/accounts/",
        {"owner": "", "currency": "DOGE", "initial_deposit": "-5"},
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"owner", "currency", "initial_deposit"}
    assert errors["owner"] == ["must not be empty"]
    assert "DOGE" in errors["currency"][0]
    assert errors["initial_deposit"] == ["must be greater than or equal to 0, got -5"]

    account_id = _open(api)
    before = _events()
    response = api.post(
        f"/api/banking/accounts/{account_id}/deposit/",
        {"amount": "12.345", "currency": "XYZ"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"amount", "currency"}
    assert "2 decimal places" in response.json()["amount"][0]

    response = api.post(f"/api/banking/accounts/{account_id}/deposit/", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "amount": ["This field is required."],
        "currency": ["This field is required."],
    }

    response = api.post(
        f"/api/banking/accounts/{account_id}/deposit/",
        {"amount": 12.5, "currency": "EUR", "note": "hi"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"amount", "note"}
    assert response.json()["note"] == ["unknown field"]
    assert _events() == before


def test_transfers_validate_and_start_a_saga(api: APIClient) -> None:
    source = _open(api)
    target = _open(api, owner="Alan Turing")
    before = _events()
    response = api.post(
        "/api/banking/transfers/",
        {"source_id": source, "target_id": source, "amount": "0", "currency": "EUR"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"target_id", "amount"}
    assert response.json()["target_id"] == ["must differ from source_id"]
    assert _events() == before

    response = api.post(
        "/api/banking/transfers/",
        {"source_id": source, "target_id": target, "amount": "30.00", "currency": "EUR"},
        format="json",
    )
    assert response.status_code == 202, response.json()
    transfer_id = response.json()["transfer_id"]
    assert response.json()["saga_id"] == transfer_id
    assert SagaStateRecord.objects.get(pk=transfer_id).status == "pending"
    assert EventRecord.objects.filter(stream_id=transfer_id, event_type="TransferRequested")


def test_refusals_are_409_and_unknown_accounts_404(api: APIClient) -> None:
    account_id = _open(api, initial_deposit="10.00")
    response = api.post(
        f"/api/banking/accounts/{account_id}/withdraw/",
        {"amount": "50.00", "currency": "EUR"},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["field"] == "amount"
    assert "has 10.00 EUR" in response.json()["detail"]

    response = api.post(
        "/api/banking/accounts/ACC-NOPE/deposit/", {"amount": "5", "currency": "EUR"}, format="json"
    )
    assert response.status_code == 404
    response = api.post(
        f"/api/banking/accounts/{account_id}/deposit/",
        {"account_id": "ACC-OTHER", "amount": "5", "currency": "EUR"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"account_id"}


def test_orders_validate_and_start_the_fulfilment_saga(api: APIClient) -> None:
    account_id = _open(api, initial_deposit="500.00")
    before = _events()
    response = api.post(
        "/api/orders/",
        {
            "customer": "Ada",
            "account_id": account_id,
            "country": "XX",
            "lines": [{"sku": "MUG-03", "quantity": 0}, {"sku": "", "quantity": 3}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "country": [
            "must be one of ['AT', 'BE', 'CH', 'DE', 'DK', 'ES', 'FR', 'GB', 'IE', 'IT', 'NL', "
            "'NO', 'PT', 'SE'], got 'XX'"
        ],
        "lines[0].quantity": ["must be between 1 and 100, got 0"],
        "lines[1].sku": ["must not be empty"],
    }
    # Values of the wrong type are reported first (the rules need values to check).
    response = api.post(
        "/api/orders/",
        {"customer": "Ada", "account_id": account_id, "country": "DE", "lines": [{"sku": "A"}]},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"lines[0].quantity": ["This field is required."]}
    response = api.post(
        "/api/orders/",
        {"customer": "Ada", "account_id": account_id, "country": "DE", "lines": []},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()) == {"lines"}
    assert _events() == before

    response = api.post(
        "/api/orders/",
        {
            "customer": "Ada",
            "account_id": account_id,
            "country": "DE",
            "lines": [{"sku": "MUG-03", "quantity": 2}],
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    order_id = response.json()["order_id"]
    assert SagaStateRecord.objects.get(pk=order_id).saga_type == "order-fulfillment"
    [placed] = DjangoEventStore().load(order_id)
    assert isinstance(placed, OrderPlaced)
    assert placed.total == Decimal("25.00")

    response = api.post(
        "/api/orders/products/", {"sku": "LAMP-01", "name": "Lamp", "price": "1"}, format="json"
    )
    assert response.status_code == 409  # the demo added it
    response = api.post("/api/orders/products/LAMP-01/restock/", {"quantity": 5}, format="json")
    assert response.status_code == 200


def test_the_api_needs_a_signed_in_user(demo: DemoRun) -> None:
    response = APIClient().post(
        "/api/banking/accounts/", {"owner": "Ada", "currency": "EUR"}, format="json"
    )
    assert response.status_code in (401, 403)


def test_read_side_endpoints(api: APIClient) -> None:
    response = api.get("/api/banking/accounts/ACC-R1-PAYROLL/")
    assert response.status_code == 200
    assert response.json()["owner"] == "Example Shop (payroll)"
    assert api.get("/api/orders/products/LAMP-01/").status_code == 200


def test_build_command_reports_every_problem_at_once() -> None:
    with pytest.raises(ValidationError) as raised:
        build_command(OpenAccount, {"owner": 5, "currency": "EUR", "initial_deposit": "abc"})
    assert set(raised.value.errors) == {"owner", "initial_deposit"}


def test_orchestrix_api_is_included(api: APIClient) -> None:
    response = api.get("/orchestrix/streams/ACC-R1-PAYROLL/")
    assert response.status_code == 200, response.content
    assert "ACC-R1-PAYROLL" in response.content.decode()
