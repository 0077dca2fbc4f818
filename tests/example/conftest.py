"""Fixtures of the example project's tests (settings ``example_project.settings``).

These tests run in a pytest process of their own, as ``scripts/test.sh``
runs them::

    DJANGO_SETTINGS_MODULE=example_project.settings .venv/bin/python -m pytest \\
        --ds=example_project.settings tests/example

The example defines events named like the Django tests' (``AccountOpened``,
``MoneyDeposited``, …), and the event registry is process-wide, so the two
suites never share a process. ``ORCHESTRIX_EXAMPLE_DATABASE_URL`` picks the
database as for the example itself (SQLite by default; the tests create and
drop ``ORCHESTRIX_EXAMPLE_TEST_DB_NAME`` on a server).

The demo runs once per session (:func:`demo`), outside any test's
transaction, and its data stays for every test: tests that write (the API
tests) run in a transaction rolled back at their end.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import pytest

SETTINGS = "example_project.settings"

if os.environ.get("DJANGO_SETTINGS_MODULE") != SETTINGS:
    raise pytest.UsageError(
        f"tests/example need DJANGO_SETTINGS_MODULE={SETTINGS} (got "
        f"{os.environ.get('DJANGO_SETTINGS_MODULE')!r}), in a pytest process of their own: "
        f"DJANGO_SETTINGS_MODULE={SETTINGS} python -m pytest --ds={SETTINGS} tests/example"
    )

#: The demo user's password in the tests (the command generates one otherwise).
PASSWORD = "demo-password-for-tests"


@dataclass(frozen=True)
class DemoRun:
    """What the session's run of ``orchestrix_demo`` printed."""

    output: str


@pytest.fixture(scope="session")
def demo(django_db_setup: Any, django_db_blocker: Any) -> DemoRun:
    """Run ``orchestrix_demo --no-serve --size small`` once, its data kept for the session."""
    from django.core.management import call_command

    out = io.StringIO()
    with django_db_blocker.unblock():
        call_command(
            "orchestrix_demo",
            "--no-serve",
            "--size",
            "small",
            "--seed",
            "7",
            "--password",
            PASSWORD,
            stdout=out,
        )
    return DemoRun(out.getvalue())


@pytest.fixture
def demo_admin(demo: DemoRun, db: None) -> Any:
    """The demo's superuser."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username="admin")
