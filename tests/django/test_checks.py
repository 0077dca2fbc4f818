"""The ``orchestrix.E00x`` system checks: each real misconfiguration is reported at start-up.

Every check runs against settings changed with ``override_settings``; the
registries it points at live in :mod:`tests.django.check_fixtures`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import CheckMessage, Error, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from orchestrix_django.checks import check_configuration

FIXTURES = "tests.django.check_fixtures"

#: A configuration with nothing wrong: a registry without conflicts and a complete chain.
CLEAN: dict[str, Any] = {
    "EVENT_MODULES": ["tests.django.testapp.events"],
    "EVENT_REGISTRY": f"{FIXTURES}.versioned_registry",
    "UPCASTERS": f"{FIXTURES}.complete_upcasters",
    "INSERT_BATCH_SIZE": 100,
    "READ_CHUNK_SIZE": 50,
    "MAX_READ_ALL_LIMIT": 1000,
}


def orchestrix_messages(**settings: Any) -> list[CheckMessage]:
    """What ``manage.py check`` reports about Orchestrix under ``settings``."""
    with override_settings(**settings):
        return run_checks(tags=["orchestrix"])


def ids(messages: list[CheckMessage]) -> list[str]:
    return [m.id or "" for m in messages]


def only(messages: list[CheckMessage], check_id: str) -> CheckMessage:
    """The single message with ``check_id`` (failing if there is none or several)."""
    found = [m for m in messages if m.id == check_id]
    assert len(found) == 1, f"expected one {check_id}, got {ids(messages)}: {messages}"
    return found[0]


def test_a_clean_configuration_has_no_orchestrix_errors() -> None:
    assert orchestrix_messages(ORCHESTRIX=CLEAN) == []
    # The defaults alone are a clean configuration too (no upcasters to check).
    with override_settings(ORCHESTRIX={"EVENT_REGISTRY": f"{FIXTURES}.versioned_registry"}):
        assert check_configuration() == []


@pytest.mark.django_db  # Django 6's `check` also runs the database checks
def test_every_message_is_an_error_so_manage_py_check_fails() -> None:
    with (
        override_settings(ORCHESTRIX={**CLEAN, "INSERT_BATCH_SIZE": 0}),
        pytest.raises(SystemCheckError, match=r"orchestrix\.E006"),
    ):
        call_command("check", databases=["default"])


@pytest.mark.parametrize(
    ("orchestrix", "reported"),
    [
        ("None  # keep the test project's", "no issues"),
        ('"tests.django.testapp.events"', "orchestrix.E006"),
        ('{"EVENT_MODULES": "tests.django.testapp.events"}', "orchestrix.E006"),
        ('{"EVENT_MODULES": ["tests.django.testapp.events", 5]}', "orchestrix.E006"),
        ('{"EVENT_MODULES": ["tests.django.no_such_events"]}', "orchestrix.E004"),
        (f'{{"EVENT_REGISTRY": "{FIXTURES}.duplicate_registry"}}', "orchestrix.E001"),
    ],
)
def test_manage_py_check_reports_mistakes_instead_of_crashing(
    tmp_path: Path, orchestrix: str, reported: str
) -> None:
    """A fresh process: the app's ``ready()`` sees the mistake first and must leave
    it to the checks, so the user gets the check id, not a traceback."""
    override = "" if orchestrix.startswith("None") else f"ORCHESTRIX = {orchestrix}\n"
    (tmp_path / "mistaken_settings.py").write_text(f"from tests.settings import *\n{override}")
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mistaken_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert reported in output, output
    assert done.returncode == (0 if reported == "no issues" else 1), output


# -- E001 ----------------------------------------------------------------------


def test_e001_two_event_classes_with_one_type() -> None:
    messages = orchestrix_messages(
        ORCHESTRIX={**CLEAN, "EVENT_REGISTRY": f"{FIXTURES}.duplicate_registry", "UPCASTERS": None}
    )
    error = only(messages, "orchestrix.E001")
    assert isinstance(error, Error)
    assert "CheckFixtureInvoiceSent" in error.msg
    # Both claimants are named, so the user knows which two classes to untangle.
    assert f"{FIXTURES}.InvoiceSent" in error.msg
    assert f"{FIXTURES}.InvoiceMailed" in error.msg
    assert error.hint


# -- E002 ----------------------------------------------------------------------


def test_e002_an_upcaster_chain_with_a_missing_link() -> None:
    messages = orchestrix_messages(
        ORCHESTRIX={**CLEAN, "UPCASTERS": f"{FIXTURES}.missing_link_upcasters"}
    )
    error = only(messages, "orchestrix.E002")
    assert "CheckFixtureParcelShipped" in error.msg
    assert "from schema version 1" in error.msg
    assert ids(messages) == ["orchestrix.E002"]


# -- E003 ----------------------------------------------------------------------


def test_e003_an_unknown_key_is_named() -> None:
    messages = orchestrix_messages(ORCHESTRIX={**CLEAN, "INSERT_BATCH_SIZ": 100})
    error = only(messages, "orchestrix.E003")
    assert "'INSERT_BATCH_SIZ'" in error.msg
    assert "INSERT_BATCH_SIZE" in (error.hint or "")  # the hint lists the real keys


def test_e003_reports_every_unknown_key() -> None:
    messages = orchestrix_messages(ORCHESTRIX={**CLEAN, "DATABSE": "x", "UPCASTER": None})
    assert sorted(m.msg for m in messages if m.id == "orchestrix.E003") == [
        "ORCHESTRIX has an unknown key 'DATABSE'",
        "ORCHESTRIX has an unknown key 'UPCASTER'",
    ]


# -- E004 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("EVENT_REGISTRY", f"{FIXTURES}.no_such_registry"),
        ("EVENT_REGISTRY", "no_such_package.registry"),
        ("UPCASTERS", f"{FIXTURES}.no_such_upcasters"),
        ("OBSERVABILITY", "no_such_package.hooks"),
    ],
)
def test_e004_a_dotted_path_that_does_not_import(setting: str, path: str) -> None:
    messages = orchestrix_messages(ORCHESTRIX={**CLEAN, setting: path})
    error = only(messages, "orchestrix.E004")
    assert repr(setting) in error.msg
    assert repr(path) in error.msg


def test_e004_an_event_module_that_does_not_import() -> None:
    modules = ["tests.django.testapp.events", "tests.django.no_such_events"]
    messages = orchestrix_messages(ORCHESTRIX={**CLEAN, "EVENT_MODULES": modules})
    error = only(messages, "orchestrix.E004")
    assert "EVENT_MODULES" in error.msg
    assert "'tests.django.no_such_events'" in error.msg


# -- E005 ----------------------------------------------------------------------


def test_e005_use_tz_off() -> None:
    error = only(orchestrix_messages(ORCHESTRIX=CLEAN, USE_TZ=False), "orchestrix.E005")
    assert "USE_TZ" in error.msg


# -- E006 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("INSERT_BATCH_SIZE", 0),
        ("INSERT_BATCH_SIZE", -5),
        ("INSERT_BATCH_SIZE", "500"),
        ("INSERT_BATCH_SIZE", True),
        ("READ_CHUNK_SIZE", 2.5),
        ("MAX_READ_ALL_LIMIT", None),
        ("DATABASE", "reporting"),  # not an alias of DATABASES
        ("DATABASE", 0),
        ("EVENT_MODULES", "tests.django.testapp.events"),  # a string, not a list
        ("EVENT_REGISTRY", f"{FIXTURES}.not_a_registry"),
        ("UPCASTERS", f"{FIXTURES}.versioned_registry"),  # an EventRegistry, not upcasters
    ],
)
def test_e006_a_value_of_the_wrong_kind(setting: str, value: object) -> None:
    messages = orchestrix_messages(ORCHESTRIX={**CLEAN, setting: value})
    error = only(messages, "orchestrix.E006")
    assert repr(setting) in error.msg


def test_e006_orchestrix_that_is_not_a_dict() -> None:
    error = only(orchestrix_messages(ORCHESTRIX=["DATABASE"]), "orchestrix.E006")
    assert "ORCHESTRIX must be a dict" in error.msg


def test_checks_read_the_current_settings_not_a_cached_copy() -> None:
    """Fixing the mistake fixes the report (settings reload on ``setting_changed``)."""
    assert "orchestrix.E006" in ids(
        orchestrix_messages(ORCHESTRIX={**CLEAN, "MAX_READ_ALL_LIMIT": 0})
    )
    assert orchestrix_messages(ORCHESTRIX=CLEAN) == []


@pytest.mark.parametrize(
    ("projections", "message"),
    [
        ([f"{FIXTURES}.not_a_projection"], "not a DjangoProjection"),
        (
            ["tests.django.testapp.projections.balances", f"{FIXTURES}.twin_projection"],
            "'test-balances'",
        ),
    ],
)
def test_e008_projections_must_be_distinct_django_projections(
    projections: list[str], message: str
) -> None:
    from orchestrix_django.checks import check_projections

    with override_settings(ORCHESTRIX={**CLEAN, "PROJECTIONS": projections}):
        errors = check_projections()
    assert [e.id for e in errors] == ["orchestrix.E008"]
    assert message in errors[0].msg


def test_the_test_projects_projections_pass_e008() -> None:
    from orchestrix_django.checks import check_projections

    assert check_projections() == []
