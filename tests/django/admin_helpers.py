"""Helpers of the admin tests: users, a small history to browse, and a real browser.

The browser is Debian's Chromium (``apt-get install chromium``; ``.ci/run``
installs it when it is missing) driven by Playwright for Python, which never
downloads a browser of its own here: it is launched from
``ORCHESTRIX_TEST_CHROMIUM`` (default ``/usr/bin/chromium``). A missing
browser fails the browser tests with a message saying what to install; they
are never skipped.

Screenshots go to ``ORCHESTRIX_TEST_ARTEFACTS`` (default ``tests/artefacts/``,
git-ignored).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from django.contrib.auth.models import Permission, User

from orchestrix.core.eventsourcing.versioning import EventUpcaster, UpcasterRegistry
from orchestrix.core.execution.saga import SagaState, SagaStatus
from orchestrix.core.execution.saga_state import StepRecord, StepStatus
from orchestrix.core.messaging.message import Event, EventRegistry, default_registry
from orchestrix_django.models import EventRecord
from orchestrix_django.storage.events import DjangoEventStore
from orchestrix_django.storage.saga_state import DjangoSagaStateStore
from tests.django.testapp.events import AccountOpened, MoneyDeposited

__all__ = [
    "CHROMIUM_ARGS",
    "PASSWORD",
    "Browser",
    "History",
    "artefacts_dir",
    "browser",
    "chromium_path",
    "log_in",
    "make_user",
    "note_registry",
    "note_upcasters",
    "save_history",
    "save_saga",
]

PASSWORD = "orchestrix-admin-test"

_T = TypeVar("_T")

#: Flags for a headless Chromium that talks to nothing but the test server.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# ---------------------------------------------------------------- users


def make_user(
    username: str,
    *,
    superuser: bool = False,
    staff: bool = True,
    permissions: Iterable[str] = (),
) -> User:
    """A user with the password :data:`PASSWORD` and ``permissions`` (``app.codename``)."""
    if superuser:
        user = User.objects.create_superuser(username, f"{username}@example.com", PASSWORD)
    else:
        user = User.objects.create_user(username, f"{username}@example.com", PASSWORD)
        user.is_staff = staff
        user.save()
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


# ---------------------------------------------------------------- a small history


@dataclass(frozen=True)
class History:
    """What :func:`save_history` stored."""

    stream_id: str
    correlation_id: str
    opened: AccountOpened
    deposits: list[MoneyDeposited]
    other_stream_id: str

    def position_of(self, event: Event) -> int:
        """The log position of ``event``."""
        return int(EventRecord.objects.get(event_id=event.id).position)


def save_history(deposits: Iterable[int] = (5, 7), prefix: str = "acc") -> History:
    """Open an account and deposit into it, one correlation id for all, each
    deposit caused by the opening; and a second account, uncorrelated."""
    store = DjangoEventStore()
    stream_id = f"{prefix}-{uuid.uuid4().hex[:8]}"
    correlation_id = f"corr-{uuid.uuid4().hex[:8]}"
    opened = AccountOpened(
        account_id=stream_id, owner="Ann", initial_deposit=10.0, correlation_id=correlation_id
    )
    made = [
        MoneyDeposited(
            account_id=stream_id,
            amount=Decimal(amount),
            correlation_id=correlation_id,
            causation_id=opened.id,
        )
        for amount in deposits
    ]
    store.save(stream_id, [opened, *made], aggregate_type="BankAccount")
    other = f"{prefix}-{uuid.uuid4().hex[:8]}"
    store.save(
        other,
        [AccountOpened(account_id=other, owner="Bob", initial_deposit=1.0)],
        aggregate_type="BankAccount",
    )
    return History(stream_id, correlation_id, opened, made, other)


def save_saga(saga_id: str = "order-7") -> SagaState:
    """A saga that reserved stock, failed to charge and compensated (then failed)."""
    now = datetime.now(UTC)
    state = SagaState(
        saga_id=saga_id,
        saga_type="OrderSaga",
        status=SagaStatus.FAILED,
        current_step="charge",
        steps=[
            StepRecord(
                name="reserve",
                status=StepStatus.COMPENSATED,
                attempts=1,
                result={"reservation": "R-1", "amount": Decimal("12.50")},
                started_at=now - timedelta(seconds=30),
                finished_at=now - timedelta(seconds=29),
                compensated_at=now - timedelta(seconds=10),
                compensation_attempts=1,
            ),
            StepRecord(
                name="charge",
                status=StepStatus.FAILED,
                attempts=3,
                error="PaymentDeclined: card expired",
                started_at=now - timedelta(seconds=28),
                finished_at=now - timedelta(seconds=11),
            ),
        ],
        kwargs={"order_id": "O-7", "total": Decimal("12.50")},
        error="step charge failed: PaymentDeclined: card expired",
        correlation_id="corr-saga-7",
    )
    return DjangoSagaStateStore().save(state)


# ---------------------------------------------------------------- an upcast event


def _private(event_class: Any) -> Any:
    """Keep ``event_class`` out of the default registry (only :data:`note_registry` has it)."""
    default_registry.unregister(event_class)
    return event_class


@_private
@dataclass(frozen=True, kw_only=True)
class NoteAddedV1(Event):
    """The first schema of ``AdminTestNoteAdded``: one text field."""

    type: str = "AdminTestNoteAdded"
    schema_version: ClassVar[int] = 1
    text: str


@_private
@dataclass(frozen=True, kw_only=True)
class NoteAdded(Event):
    """The current schema: the text and its author."""

    type: str = "AdminTestNoteAdded"
    schema_version: ClassVar[int] = 2
    text: str
    author: str = "unknown"


class _AddAuthor(EventUpcaster[NoteAddedV1, NoteAdded]):
    async def upcast(self, event: Event) -> NoteAdded:
        return NoteAdded(
            id=event.id,
            timestamp=event.timestamp,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            text=getattr(event, "text", ""),
            author="upcaster",
        )


#: The test app's events and both schemas of ``AdminTestNoteAdded``.
note_registry = EventRegistry()
for _event_class in (AccountOpened, MoneyDeposited, NoteAddedV1, NoteAdded):
    note_registry.register(_event_class)

#: Version 1 → 2 of ``AdminTestNoteAdded``.
note_upcasters = UpcasterRegistry()
note_upcasters.register("AdminTestNoteAdded", _AddAuthor(1, 2))


# ---------------------------------------------------------------- the browser


def artefacts_dir() -> Path:
    """Where screenshots go (created if needed)."""
    default = Path(__file__).resolve().parents[1] / "artefacts"
    folder = Path(os.environ.get("ORCHESTRIX_TEST_ARTEFACTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def chromium_path() -> str:
    """The Chromium to drive; fails the test, saying what to install, when it is missing."""
    path = os.environ.get("ORCHESTRIX_TEST_CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no Chromium at {path}: install Debian's (apt-get install chromium; .ci/run does) "
            "or point ORCHESTRIX_TEST_CHROMIUM at one",
            pytrace=False,
        )
    return path


class Browser:
    """A headless Chromium driven by Playwright in a thread of its own.

    Playwright's synchronous API keeps an event loop running in the thread
    that uses it, and Django refuses ORM calls (and ``async_to_sync``) in a
    thread with a running loop. So the browser lives in another thread: the
    test writes and reads its data in its own thread, and runs what the
    operator does in the browser's with :meth:`run_page`.
    """

    def __init__(self, executable: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Any = None
        self._browser: Any = None
        self._thread.submit(self._start, executable).result(timeout=60)

    def _start(self, executable: str) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS
        )

    def run_page(
        self, scenario: Callable[[Any], _T], *, color_scheme: str = "light", timeout: float = 120
    ) -> _T:
        """Call ``scenario(page)`` in the browser's thread with a new page (own cookies)."""

        def run() -> _T:
            context = self._browser.new_context(
                viewport={"width": 1280, "height": 900}, color_scheme=color_scheme
            )
            context.set_default_timeout(15_000)
            try:
                return scenario(context.new_page())
            finally:
                context.close()

        return self._thread.submit(run).result(timeout=timeout)

    def close(self) -> None:
        """Close the browser and end its thread."""

        def stop() -> None:
            try:
                self._browser.close()
            finally:
                self._playwright.stop()

        try:
            self._thread.submit(stop).result(timeout=60)
        finally:
            self._thread.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium for the tests of one module (see :class:`Browser`)."""
    launched = Browser(chromium_path())
    try:
        yield launched
    finally:
        launched.close()


def log_in(page: Any, base_url: str, username: str) -> None:
    """Log ``username`` in through the admin's login form."""
    page.goto(f"{base_url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/admin/")
