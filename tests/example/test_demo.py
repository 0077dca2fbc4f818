"""The demo command: it completes, prints its summary, and leaves what the admin shows."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.contrib.admin.utils import quote
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from example_project.banking.models import AccountSummary
from example_project.demo.models import DemoRun as DemoRunRecord
from example_project.demo.report import compensated_sagas
from orchestrix_django.models import EventRecord, SagaStateRecord, StreamRecord
from orchestrix_django.projections import projection_status, projections
from tests.example.conftest import PASSWORD, DemoRun

pytestmark = pytest.mark.django_db


def test_the_demo_completes_and_prints_its_summary(demo: DemoRun) -> None:
    out = demo.output
    assert f"created the superuser 'admin' with the password '{PASSWORD}'" in out
    match = re.search(
        r"commands\s+(\d+)\s+\((\d+) accepted, (\d+) failed validation and stored nothing, "
        r"(\d+) refused by the domain\)",
        out,
    )
    assert match, out
    commands, accepted, invalid, refused = map(int, match.groups())
    assert commands >= 150
    assert invalid > 0 and refused > 0
    assert accepted + invalid + refused == commands
    for projection_id in projections():
        assert re.search(rf"{projection_id}\s+position\s+(\d+) of \1\s+lag 0\s+healthy", out), out
    assert re.search(r"money-transfer .*\((\d+) compensated\)", out)
    assert re.search(r"order-fulfillment .*\([1-9]\d* compensated\)", out)
    assert "upcast to version 2 on every read" in out
    assert "/admin/orchestrix_django/sagastaterecord/" in out
    assert "Done. Serve the admin with: python manage.py runserver" in out

    run = DemoRunRecord.objects.get()
    assert (run.commands, run.invalid, run.refused) == (commands, invalid, refused)
    assert run.finished_at is not None


def test_every_projection_is_caught_up_and_healthy(demo: DemoRun) -> None:
    for projection_id in projections():
        status = projection_status(projection_id)
        assert status.lag == 0, status
        assert status.healthy and not status.paused and not status.parked, status


def test_sagas_completed_and_compensated(demo: DemoRun) -> None:
    statuses = set(SagaStateRecord.objects.values_list("saga_type", "status"))
    for saga_type in ("money-transfer", "order-fulfillment"):
        assert (saga_type, "completed") in statuses
        assert (saga_type, "failed") in statuses
    assert not SagaStateRecord.objects.exclude(status__in=["completed", "failed"]).exists()
    compensated = compensated_sagas()
    assert compensated
    # A compensated order released its stock and was cancelled; a transfer was refunded.
    for saga_id in compensated:
        stored = SagaStateRecord.objects.get(pk=saga_id)
        names = {step["name"]: step for step in stored.steps}
        if stored.saga_type == "order-fulfillment":
            assert names["reserve_inventory"]["status"] == "compensated"
            assert EventRecord.objects.filter(stream_id=saga_id, event_type="OrderCancelled")
        else:
            assert names["debit_source"]["status"] == "compensated"
            assert EventRecord.objects.filter(stream_id=saga_id, event_type="TransferFailed")


def test_the_demo_user_can_sign_in(demo: DemoRun) -> None:
    client = Client()
    assert client.login(username="admin", password=PASSWORD)
    response = client.get("/admin/")
    assert response.status_code == 200


def _admin_page(client: Client, name: str, *args: str) -> str:
    response = client.get(reverse(f"admin:{name}", args=[quote(a) for a in args]))
    assert response.status_code == 200, (name, args, response.status_code)
    return response.content.decode()


def test_the_admin_shows_streams_a_compensated_saga_and_projection_status(
    demo: DemoRun, demo_admin: Any
) -> None:
    client = Client()
    client.force_login(demo_admin)

    streams = _admin_page(client, "orchestrix_django_streamrecord_changelist")
    assert "ACC-R1-PAYROLL" in streams
    payroll = StreamRecord.objects.get(pk="ACC-R1-PAYROLL")
    timeline = _admin_page(client, "orchestrix_django_streamrecord_change", payroll.pk)
    assert "AccountOpened" in timeline and "MoneyWithdrawn" in timeline

    [saga_id] = compensated_sagas(limit=1)
    saga = _admin_page(client, "orchestrix_django_sagastaterecord_change", saga_id)
    assert saga_id in saga
    assert "compensated" in saga
    sagas = _admin_page(client, "orchestrix_django_sagastaterecord_changelist")
    assert "failed" in sagas and "completed" in sagas

    status = _admin_page(client, "orchestrix_django_projectionstaterecord_changelist")
    for projection_id in projections():
        assert projection_id in status
    detail = _admin_page(
        client, "orchestrix_django_projectionstaterecord_change", "banking-accounts"
    )
    assert "banking-accounts" in detail

    accounts = _admin_page(client, "banking_accountsummary_changelist")
    assert "ACC-R1-TREASURY" in accounts
    assert "/admin/orchestrix_django/streamrecord/ACC-R1-TREASURY/" in accounts
    for name in ("banking_transfersummary_changelist", "orders_ordersummary_changelist"):
        assert "/admin/orchestrix_django/sagastaterecord/" in _admin_page(client, name)
    for name in (
        "banking_ledgerentry_changelist",
        "orders_productstock_changelist",
        "orders_shipment_changelist",
        "demo_demorun_changelist",
    ):
        _admin_page(client, name)


def test_read_models_are_read_only_in_the_admin(demo: DemoRun, demo_admin: Any) -> None:
    client = Client()
    client.force_login(demo_admin)
    account = AccountSummary.objects.first()
    assert account is not None
    assert client.get(reverse("admin:banking_accountsummary_add")).status_code == 403
    url = reverse("admin:banking_accountsummary_change", args=[quote(account.pk)])
    page = client.get(url)
    assert page.status_code == 200  # a view, not a form
    assert 'name="_save"' not in page.content.decode()
    before = account.balance
    client.post(url, {"balance": "1000000.00"})
    account.refresh_from_db()
    assert account.balance == before


def test_anonymous_visitors_get_the_sign_in_page(demo: DemoRun) -> None:
    response = Client().get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert Client().get("/admin/login/").status_code == 200


@pytest.mark.django_db(transaction=False)
def test_a_second_run_adds_more_and_keeps_the_password(
    demo: DemoRun, django_db_blocker: Any
) -> None:
    out = io.StringIO()
    streams_before = StreamRecord.objects.count()
    call_command("orchestrix_demo", "--no-serve", "--size", "small", "--seed", "7", stdout=out)
    text = out.getvalue()
    assert "the user 'admin' exists already: its password is left unchanged" in text
    assert "1 earlier run(s) is there already" in text
    assert StreamRecord.objects.count() > streams_before
    assert StreamRecord.objects.filter(pk="ACC-R2-PAYROLL").exists()
    for projection_id in projections():
        assert projection_status(projection_id).lag == 0
