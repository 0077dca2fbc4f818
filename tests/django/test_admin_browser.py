"""The admin pages in a real browser: headless Chromium, driven by Playwright,
against the live test server.

An operator logs in, opens a stream, follows a correlation link, opens an
event, rebuilds a projection and retries a dead letter; screenshots of the
stream page (light and dark themes) and of a saga page are saved to
``ORCHESTRIX_TEST_ARTEFACTS`` (see ``admin_helpers``).

Each test writes its data, runs the operator's steps in the browser's thread
(``browser.run_page``), then checks the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.utils import quote

from orchestrix.core.messaging.dead_letter import DeadLetterStatus
from orchestrix_django.models import EventRecord
from orchestrix_django.projections import catch_up, get_projection, projection_status
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from tests.django.admin_helpers import (
    Browser,
    artefacts_dir,
    browser,
    log_in,
    make_user,
    save_history,
    save_saga,
)
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.models import AccountBalance

__all__ = ["browser"]  # the fixture, imported for the tests here

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _clean_projections() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


def test_browse_a_stream_its_correlation_and_an_event(browser: Browser, live_server: Any) -> None:
    make_user("operator", superuser=True)
    history = save_history(deposits=[5, 7, 9])
    opened_position = history.position_of(history.opened)
    deposit_position = history.position_of(history.deposits[0])
    correlated = set(
        EventRecord.objects.filter(correlation_id=history.correlation_id).values_list(
            "position", flat=True
        )
    )
    base = live_server.url
    stream_page = f"{base}/admin/orchestrix_django/streamrecord/{quote(history.stream_id)}/change/"

    def operator(page: Any) -> None:
        log_in(page, base, "operator")
        page.click("#content-main a:text-is('Streams')")
        page.wait_for_selector("#result_list")
        page.click(f"#result_list a:text-is('{history.stream_id}')")
        page.wait_for_selector("#timeline")
        assert page.inner_text("h1") == f"Stream {history.stream_id}"
        timeline = page.locator(".timeline-event").all_inner_texts()
        assert timeline == ["AccountOpened", "MoneyDeposited", "MoneyDeposited", "MoneyDeposited"]
        page.screenshot(path=str(artefacts_dir() / "admin-stream.png"), full_page=True)

        page.locator(".timeline-correlation").first.click()
        page.wait_for_selector("#result_list")
        assert "correlation_id=" in page.url
        listed = {int(t) for t in page.locator("#result_list tbody th a").all_inner_texts()}
        assert listed == correlated
        page.screenshot(path=str(artefacts_dir() / "admin-event-list.png"), full_page=True)

        page.click(f"#result_list tbody th a:text-is('{deposit_position}')")
        page.wait_for_selector("#event-data")
        assert page.inner_text("h1") == f"Event {deposit_position}: MoneyDeposited"
        assert '"amount": "5"' in page.inner_text("#event-data")
        assert history.correlation_id in page.inner_text("#event-metadata")
        page.screenshot(path=str(artefacts_dir() / "admin-event.png"), full_page=True)

        page.click("#causation-link")
        page.wait_for_selector("#event-data")
        assert page.inner_text("h1") == f"Event {opened_position}: AccountOpened"
        assert '"owner": "Ann"' in page.inner_text("#event-data")
        page.click("#stream-link")
        page.wait_for_url(stream_page)

    browser.run_page(operator)

    def in_the_dark(page: Any) -> None:
        log_in(page, base, "operator")
        page.goto(stream_page)
        page.wait_for_selector("#timeline")
        body = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert body == "rgb(18, 18, 18)", body  # the admin's dark theme applies
        page.screenshot(path=str(artefacts_dir() / "admin-stream-dark.png"), full_page=True)

    browser.run_page(in_the_dark, color_scheme="dark")


def test_rebuild_a_projection_and_retry_a_dead_letter(browser: Browser, live_server: Any) -> None:
    make_user("operator", superuser=True)
    healthy = save_history(deposits=[5])
    catch_up(get_projection("test-balances"))
    AccountBalance.objects.filter(account_id=healthy.stream_id).update(balance=Decimal("999"))
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    save_history(deposits=[1, 13, 2])
    catch_up(get_projection("test-fragile"))
    [letter] = DjangoDeadLetterQueue().list(source="projection:test-fragile")
    base = live_server.url

    def operator(page: Any) -> None:
        log_in(page, base, "operator")
        page.goto(f"{base}/admin/orchestrix_django/projectionstaterecord/")
        page.wait_for_selector("#result_list")
        # Rebuild, as an action on the list.
        page.check("#result_list input[value='test-balances']")
        page.select_option("select[name=action]", "rebuild_projections")
        page.click("button[name=index]")
        page.wait_for_selector(".messagelist")
        message = page.inner_text(".messagelist")
        assert "Projection test-balances rebuilt" in message, message
        assert "at the head of the log" in message
        page.screenshot(path=str(artefacts_dir() / "admin-projections.png"), full_page=True)

        # The fix is deployed; retry the parked event from its dead letter's page.
        testapp_projections.FAILING_AMOUNTS.clear()
        page.click("#result_list a:text-is('test-fragile')")
        page.wait_for_selector("#parked-events")
        assert "cannot handle a deposit of 13" in page.inner_text("#parked-events")
        page.screenshot(path=str(artefacts_dir() / "admin-projection.png"), full_page=True)
        page.locator("#parked-events tbody a").first.click()
        page.wait_for_selector("#letter-reason")
        assert page.inner_text("#letter-status").startswith("parked")
        page.screenshot(path=str(artefacts_dir() / "admin-dead-letter.png"), full_page=True)
        page.click("#retry-button")
        page.wait_for_selector(".messagelist")
        assert "retried: projection test-fragile resumed" in page.inner_text(".messagelist")
        assert page.inner_text("#letter-status").startswith("retried")

    browser.run_page(operator)

    assert AccountBalance.objects.get(account_id=healthy.stream_id).balance == Decimal("15")
    retried = DjangoDeadLetterQueue().get(letter.id)
    assert retried is not None and retried.status == DeadLetterStatus.RETRIED
    status = projection_status("test-fragile")
    assert status.lag == 0 and not status.paused and status.parked == 0


def test_a_saga_page(browser: Browser, live_server: Any) -> None:
    make_user("operator", superuser=True)
    save_saga("order-7")
    base = live_server.url

    def operator(page: Any) -> None:
        log_in(page, base, "operator")
        page.click("#content-main a:text-is('Sagas')")
        page.wait_for_selector("#result_list")
        page.click("#changelist-filter a:text-is('failed')")
        page.wait_for_url("**status=failed**")
        page.click("#result_list a:text-is('order-7')")
        page.wait_for_selector("#saga-steps")
        rows = page.locator("#saga-steps tbody tr").all_inner_texts()
        assert len(rows) == 2
        assert "reserve" in rows[0] and "compensated" in rows[0] and "R-1" in rows[0]
        assert "charge" in rows[1] and "PaymentDeclined: card expired" in rows[1]
        assert page.inner_text("#saga-status") == "failed"
        page.screenshot(path=str(artefacts_dir() / "admin-saga.png"), full_page=True)

    browser.run_page(operator)
