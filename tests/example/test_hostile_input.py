"""Hostile input at the command API: a 4xx naming the field, never a 500, and nothing stored.

A NUL character, lone surrogates, 10,000-deep JSON, a huge body and values
of the wrong type, sent to every command endpoint of the example project, as
an attacker or a broken client would.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from orchestrix_django.models import EventRecord
from tests.example.conftest import DemoRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(demo: DemoRun, demo_admin: Any) -> APIClient:
    """An API client signed in as the demo's superuser."""
    client = APIClient()
    client.force_authenticate(demo_admin)
    return client


@pytest.fixture
def account(api: APIClient) -> str:
    body = {"owner": "Grace Hopper", "currency": "EUR", "initial_deposit": "100.00"}
    response = api.post("/api/banking/accounts/", body, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["account_id"])


def send(api: APIClient, path: str, raw: str | bytes) -> Any:
    """POST ``raw`` as the JSON body, exactly as given (no re-encoding by the client)."""
    body = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return api.generic("POST", path, body, content_type="application/json")


def valid_bodies(account: str) -> dict[str, dict[str, Any]]:
    """One valid body per command endpoint, by path."""
    return {
        "/api/banking/accounts/": {"owner": "Ada", "currency": "EUR"},
        f"/api/banking/accounts/{account}/deposit/": {"amount": "1.00", "currency": "EUR"},
        f"/api/banking/accounts/{account}/withdraw/": {"amount": "1.00", "currency": "EUR"},
        f"/api/banking/accounts/{account}/freeze/": {"reason": "stolen card"},
        "/api/banking/transfers/": {
            "source_id": account,
            "target_id": account,
            "amount": "1.00",
            "currency": "EUR",
        },
        "/api/orders/products/": {"sku": "HOSTILE-1", "name": "Lamp", "price": "1.00"},
        "/api/orders/products/LAMP-01/restock/": {"quantity": 1},
        "/api/orders/": {
            "customer": "Ada",
            "account_id": account,
            "country": "DE",
            "lines": [{"sku": "LAMP-01", "quantity": 1}],
        },
    }


def string_fields(body: dict[str, Any]) -> list[str]:
    return [name for name, value in body.items() if isinstance(value, str)]


#: A NUL character, and a lone high and low surrogate (JSON's "\ud800" and "\udfff").
TEXT = [chr(0), chr(0xD800), chr(0xDFFF)]


@pytest.mark.parametrize("bad", TEXT, ids=["NUL", "high", "low"])
def test_a_nul_or_a_lone_surrogate_in_any_text_field_is_a_400_naming_it(
    api: APIClient, account: str, bad: str
) -> None:
    before = EventRecord.objects.count()
    for path, body in valid_bodies(account).items():
        for name in string_fields(body):
            hostile = {**body, name: f"A{bad}B"}
            response = send(api, path, json.dumps(hostile))
            assert response.status_code == 400, (path, name, response.content)
            assert name in response.json(), (path, name, response.json())
    # Inside a nested object too, named by its path.
    order = valid_bodies(account)["/api/orders/"]
    lines = [{"sku": f"LAMP{bad}", "quantity": 1}]
    response = send(api, "/api/orders/", json.dumps({**order, "lines": lines}))
    assert response.status_code == 400
    assert "lines[0].sku" in response.json()
    assert EventRecord.objects.count() == before


@pytest.mark.parametrize("bad", TEXT[:2], ids=["NUL", "surrogate"])
def test_a_nul_or_a_lone_surrogate_in_a_url_or_a_field_name_is_a_4xx(
    api: APIClient, account: str, bad: str
) -> None:
    before = EventRecord.objects.count()
    from urllib.parse import quote

    encoded = quote(f"ACC{bad}".encode("utf-8", "surrogatepass"))
    body = {"amount": "1.00", "currency": "EUR"}
    response = api.post(f"/api/banking/accounts/{encoded}/deposit/", body, format="json")
    assert response.status_code in (400, 404), response.content
    for read in (f"/api/banking/accounts/{encoded}/", f"/api/orders/{encoded}/"):
        assert api.get(read).status_code in (400, 404), read
    odd = json.dumps({"owner": "Ada", "currency": "EUR", f"x{bad}": 1})
    response = send(api, "/api/banking/accounts/", odd)
    assert response.status_code == 400
    assert response.json() == {
        f"x{bad}".encode("utf-8", "backslashreplace").decode(): ["unknown field"]
    }
    # Not even UTF-8: no field to name.
    raw = json.dumps({"owner": f"A{bad}", "currency": "EUR"}, ensure_ascii=False)
    response = send(api, "/api/banking/accounts/", raw.encode("utf-8", "surrogatepass"))
    assert response.status_code == 400
    assert EventRecord.objects.count() == before


@pytest.mark.parametrize("opening", ["[", '{"a":'], ids=["arrays", "objects"])
def test_json_nested_10000_deep_is_a_400_naming_the_field(
    api: APIClient, account: str, opening: str
) -> None:
    closing = "]" if opening == "[" else "}"
    deep = opening * 10_000 + "1" + closing * 10_000
    before = EventRecord.objects.count()
    for path, body in valid_bodies(account).items():
        name = next(iter(body))
        raw = json.dumps(body).replace(json.dumps(body[name]), deep, 1)
        response = send(api, path, raw)
        assert response.status_code == 400, (path, response.content[:200])
        assert name in response.json(), (path, response.json())
        # A body that is deep as a whole: its top-level field, if it has one.
        whole = send(api, path, deep)
        assert whole.status_code == 400, path
        assert list(whole.json()) == (["non_field_errors"] if opening == "[" else ["a"])
    assert EventRecord.objects.count() == before


def test_a_huge_body_is_a_413_and_a_huge_field_a_400_naming_it(
    api: APIClient, account: str
) -> None:
    before = EventRecord.objects.count()
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    huge = json.dumps({"owner": "x" * (limit + 1), "currency": "EUR"})
    response = send(api, "/api/banking/accounts/", huge)
    assert response.status_code == 413, response.content[:200]
    assert "detail" in response.json()
    long = json.dumps({"owner": "x" * 100_000, "currency": "EUR"})
    response = send(api, "/api/banking/accounts/", long)
    assert response.status_code == 400
    assert "owner" in response.json()
    assert EventRecord.objects.count() == before


#: Values of the wrong type or out of any range, for every field whatever its type.
WRONG: list[Any] = [None, True, 1.5, -1, 10**40, 2**63, [], {}, [[]], {"a": "b"}]
#: Text that is not a usable number, for the fields that take numbers.
NOT_NUMBERS = ["1e999999", "NaN", "-Infinity", "-0", "0x10", "1" * 5000, " "]


def test_values_of_the_wrong_type_are_a_400_naming_the_field(api: APIClient, account: str) -> None:
    before = EventRecord.objects.count()
    for path, body in valid_bodies(account).items():
        for name, good in body.items():
            numeric = not isinstance(good, str) or good[:1].isdigit()
            for value in WRONG + (NOT_NUMBERS if numeric else []):
                hostile = {**body, name: value}
                response = send(api, path, json.dumps(hostile))
                assert response.status_code == 400, (path, name, value, response.content[:300])
                assert any(key.startswith(name) for key in response.json()), (path, name, value)
    for raw in ("", "null", "[]", '"text"', "1", "{", "{}x", '{"owner": NaN}', "\ufeff{}"):
        response = send(api, "/api/banking/accounts/", raw)
        assert response.status_code == 400, (raw, response.content)
    assert EventRecord.objects.count() == before
