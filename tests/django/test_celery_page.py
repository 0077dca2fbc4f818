"""docs/celery.md's project, run for real; and a project's console shows Orchestrix's warnings.

The page's modules (``proj/celery.py``, ``proj/__init__.py``) and settings
blocks are written, as they are, into a project in a temporary directory,
with a ``manage.py``, a small ``shop`` module (an event and a projection
whose read model is a cache key) and the test run's database, Redis and
broker in place of the page's addresses. Then the page's single-machine
command starts a real Celery worker with its beat in that directory, an
event saved by the project's ``manage.py`` becomes visible in the
projection through it, ``orchestrix_status --check`` passes, and once the
worker is stopped ``--check`` fails naming the queues nobody consumes, then
the projection as stalled once an event has waited ``STALLED_AFTER`` seconds.

The same project, with a broker nobody listens on and no ``LOGGING``,
prints the ``orchestrix`` logger's warning on standard error once; with a
``LOGGING`` that configures that logger, it goes where the project says.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from orchestrix_django.models import EventRecord, ProjectionStateRecord
from orchestrix_django.observability.console import ConsoleFallbackHandler, install_console_handler
from tests.django.test_celery_projections import free_port
from tests.docs_examples import blocks_of

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
PAGE = "celery.md"

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

SHOP = """\
from dataclasses import dataclass

from django.core.cache import cache

from orchestrix.core.messaging.message import Event
from orchestrix_django.projections import DjangoProjection


@dataclass(frozen=True, kw_only=True)
class OrderPlaced(Event):
    order_id: str
    total: int


totals = DjangoProjection("shop-totals")


@totals.on(OrderPlaced)
def placed(event: OrderPlaced) -> None:
    cache.set(f"shop-total-{event.order_id}", event.total, timeout=None)
"""

SAVE = (
    "from shop import OrderPlaced; from orchestrix_django.storage.events import DjangoEventStore; "
    "DjangoEventStore().save('{order}', [OrderPlaced(order_id='{order}', total={total})])"
)


def _page_block(first_line: str) -> str:
    [code] = [b.code for b in blocks_of(PAGE) if b.code.startswith(first_line)]
    return code


def single_machine_command() -> list[str]:
    """The page's command for one machine: its worker with an embedded beat."""
    lines = [
        line.removeprefix("$ ")
        for block in blocks_of(PAGE)
        if block.language == "console"
        for line in block.code.splitlines()
        if line.startswith("$ celery -A proj worker") and " -B" in line
    ]
    [line] = lines
    return shlex.split(line)


def write_project(
    root: Path, *, broker_url: str, logging_settings: str = "", cache_url: str | None = None
) -> Path:
    """The page's project in ``root`` (see the module docs); returns ``root``."""
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "__init__.py").write_text(_page_block("# proj/__init__.py"))
    (root / "proj" / "celery.py").write_text(_page_block("# proj/celery.py"))
    database = {
        key: connection.settings_dict[key]
        for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
    }
    page_settings = "\n".join(b.code for b in blocks_of(PAGE) if b.marker == "settings")
    (root / "proj" / "settings.py").write_text(
        "\n".join(
            [
                "# The project's own settings.",
                'SECRET_KEY = "not-secret"',
                "USE_TZ = True",
                'INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", '
                '"orchestrix_django"]',
                f"DATABASES = {{'default': {database!r}}}",
                'DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"',
                "# docs/celery.md's settings blocks, as they are.",
                page_settings,
                "# This test run's services, and the shop.",
                f"CELERY_BROKER_URL = {broker_url!r}",
                f'CACHES["default"]["LOCATION"] = {cache_url or django_settings.TEST_REDIS_URL!r}',
                'ORCHESTRIX.update({"EVENT_MODULES": ["shop"], "PROJECTIONS": ["shop.totals"], '
                '"STALLED_AFTER": 2})',
                logging_settings,
            ]
        )
    )
    (root / "shop.py").write_text(SHOP)
    (root / "manage.py").write_text(MANAGE)
    return root


def project_env() -> dict[str, str]:
    """The environment of the project's processes: its own settings, this venv's commands."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name != "DJANGO_SETTINGS_MODULE" and not name.startswith("ORCHESTRIX_")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def manage(root: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=root,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_page_s_modules_and_single_machine_command_run_as_written(
    tmp_path: Path, broker: redis.Redis
) -> None:
    root = write_project(tmp_path / "site", broker_url=django_settings.TEST_REDIS_URL)
    command = single_machine_command()
    assert command[:4] == ["celery", "-A", "proj", "worker"]
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            command,
            cwd=root,
            env=project_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # the worker, its pool and its beat: one group to stop
        )

    def worker_log() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + 60
        while " ready." not in worker_log():
            assert worker.poll() is None and time.monotonic() < deadline, worker_log()
            time.sleep(0.2)
        assert "beat: Starting" in worker_log()

        saved = manage(root, "shell", "-c", SAVE.format(order="order-1", total=42))
        assert saved.returncode == 0, saved.stderr
        head = EventRecord.objects.get().position
        deadline = time.monotonic() + 60
        while broker.get(":1:shop-total-order-1") != b"42":
            assert time.monotonic() < deadline, worker_log()
            time.sleep(0.1)
        assert ProjectionStateRecord.objects.get(pk="shop-totals").last_processed_position == head
        # The wake-up went through the route the page sets, to the queue the command consumes.
        assert "orchestrix.advance_projection" in worker_log()

        status = manage(root, "orchestrix_status", "--check")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "Every queue of the Orchestrix tasks has a running worker." in status.stdout
    finally:
        with suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)

    status = manage(root, "orchestrix_status", "--check")
    assert status.returncode == 1
    assert "'projections', which no running worker consumes" in status.stderr
    assert "start a worker with `celery -A proj worker -Q projections -l info`" in status.stderr
    assert "stalled" not in status.stderr
    # Without a worker, an event saved now is never applied: the projection stalls.
    saved = manage(root, "shell", "-c", SAVE.format(order="order-3", total=1))
    assert saved.returncode == 0, saved.stderr
    time.sleep(2.1)
    status = manage(root, "orchestrix_status", "--check")
    assert status.returncode == 1
    assert "projection shop-totals is stalled (1 event(s) behind" in status.stderr


WARNING = "orchestrix.wakeup: could not send the wake-up of projection shop-totals"


@pytest.mark.parametrize(
    ("logging_settings", "on_stderr"),
    [
        pytest.param("", 1, id="no LOGGING: on the console"),
        pytest.param(
            'LOGGING = {"version": 1, "disable_existing_loggers": False, '
            '"handlers": {"console": {"class": "logging.StreamHandler"}}, '
            '"root": {"handlers": ["console"], "level": "INFO"}}',
            1,
            id="a root console handler: once, not twice",
        ),
        pytest.param(
            'LOGGING = {"version": 1, "disable_existing_loggers": False, '
            '"handlers": {"file": {"class": "logging.FileHandler", "filename": "orchestrix.log"}}, '
            '"loggers": {"orchestrix": {"handlers": ["file"], "propagate": False}}}',
            0,
            id="the project configures the orchestrix logger: left alone",
        ),
    ],
)
def test_a_project_shows_orchestrix_warnings_on_the_console(
    tmp_path: Path, logging_settings: str, on_stderr: int, broker: Any
) -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    root = write_project(tmp_path, broker_url=nobody, logging_settings=logging_settings)
    saved = manage(root, "shell", "-c", SAVE.format(order="order-2", total=7))
    assert saved.returncode == 0, saved.stderr
    assert EventRecord.objects.count() == 1  # the save committed, broker or not
    assert saved.stderr.count(WARNING.split(": ", 1)[1]) == on_stderr, saved.stderr
    if logging_settings and not on_stderr:
        assert WARNING.split(": ", 1)[1] in (root / "orchestrix.log").read_text()
    elif not logging_settings:
        assert f"WARNING {WARNING}" in saved.stderr


def test_the_console_handler_is_added_once_and_never_over_a_project_s_own_set_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The settings are patched without Django's setting_changed signal, which
    # (from Django 6) would configure this process's logging with them.
    settings = django_settings
    logger = logging.getLogger("orchestrix")
    saved = list(logger.handlers)

    def installed() -> int:
        return sum(isinstance(h, ConsoleFallbackHandler) for h in logger.handlers)

    logger.handlers = [h for h in saved if not isinstance(h, ConsoleFallbackHandler)]
    try:
        monkeypatch.setattr(settings, "LOGGING_CONFIG", None)  # the project configures it
        install_console_handler()
        assert installed() == 0
        monkeypatch.setattr(settings, "LOGGING_CONFIG", "logging.config.dictConfig")
        monkeypatch.setattr(
            settings, "LOGGING", {"version": 1, "loggers": {"orchestrix.tasks": {"level": "ERROR"}}}
        )
        install_console_handler()
        assert installed() == 0
        monkeypatch.setattr(
            settings, "LOGGING", {"version": 1, "loggers": {"django": {"level": "INFO"}}}
        )
        install_console_handler()
        install_console_handler()  # ready() runs twice in some set-ups
        assert installed() == 1
    finally:
        logger.handlers = saved
