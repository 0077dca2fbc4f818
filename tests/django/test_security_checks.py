"""``orchestrix.E011``: with Celery wake-ups, the Celery app must not accept or send pickle.

The check reads Celery's current app (the project's, imported by its
``proj/__init__.py``; here tests/celery_app.py, JSON only). Each test makes
another app current for its duration and puts the test app back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from celery import Celery
from django.conf import settings
from django.core.checks import CheckMessage, run_checks
from django.test import override_settings

from tests.celery_app import app as test_celery_app


def e011(wake_up: str = "celery", **django_settings: Any) -> list[CheckMessage]:
    """The E011 messages of ``manage.py check`` with ``WAKE_UP = wake_up``."""
    configured = {**settings.ORCHESTRIX, "WAKE_UP": wake_up}
    with override_settings(ORCHESTRIX=configured, **django_settings):
        return [m for m in run_checks(tags=["orchestrix"]) if m.id == "orchestrix.E011"]


@contextmanager
def current_app(**conf: Any) -> Iterator[Celery]:
    """A Celery app with ``conf``, current for the block."""
    app = Celery("proj", set_as_current=False)
    app.conf.update(**conf)
    app.set_current()
    try:
        yield app
    finally:
        test_celery_app.set_current()


def test_the_test_projects_json_only_app_passes() -> None:
    assert e011() == []


def test_celerys_defaults_pass() -> None:
    with current_app():
        assert e011() == []


@pytest.mark.parametrize(
    ("conf", "setting"),
    [
        ({"accept_content": ["json", "pickle"]}, "accept_content"),
        ({"accept_content": ["application/x-python-serialize"]}, "accept_content"),
        ({"result_accept_content": ["json", "Pickle"]}, "result_accept_content"),
        ({"task_serializer": "pickle"}, "task_serializer"),
        ({"result_serializer": "pickle"}, "result_serializer"),
        ({"event_serializer": "pickle"}, "event_serializer"),
    ],
)
def test_an_app_that_accepts_or_sends_pickle_is_an_error(
    conf: dict[str, Any], setting: str
) -> None:
    with current_app(**conf):
        [error] = e011()
    assert f"the Celery app 'proj' has {setting} = " in error.msg
    assert "run code in the workers" in error.msg
    assert error.hint is not None and "JSON only" in error.hint
    assert f"CELERY_{setting.upper()}" in error.hint


def test_pickle_in_the_django_settings_of_the_usual_celery_module_is_found() -> None:
    # proj/celery.py: app.config_from_object("django.conf:settings", namespace="CELERY")
    with override_settings(CELERY_ACCEPT_CONTENT=["json", "pickle"]):
        app = Celery("proj", set_as_current=False)
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.set_current()
        try:
            [error] = e011()
        finally:
            test_celery_app.set_current()
    assert "accept_content = ['json', 'pickle']" in error.msg


def test_without_celery_wake_ups_orchestrix_checks_no_celery_app() -> None:
    with current_app(accept_content=["pickle"]):
        assert e011(wake_up="none") == []
        assert len(e011(wake_up="celery")) == 1
