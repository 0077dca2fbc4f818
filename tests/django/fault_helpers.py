"""Helpers of the fault and soak tests: long-running processes, a private PostgreSQL, checks.

The processes are real: writer and reader processes run commands of
tests/django/workers.py (for a given number of seconds), projection runners
are ``orchestrix_run`` processes, each logging to a file of the test's
temporary directory. :class:`PrivatePostgres` is a PostgreSQL cluster of a
test's own (``initdb`` into a temporary directory, a free port), which the
test may restart or crash at will: the shared server is never touched.
:func:`replay_mismatches` is the final check of both tests: every projection
equals what a clean replay (reset, then catch up) builds.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: Projections of the test app, as tests/settings.py configures them.
ALL_PROJECTIONS = ["test-balances", "test-fragile", "test-continuing", "test-flaky", "test-slow"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MiB (``VmRSS``), None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def process_env(db_name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process working on the database ``db_name``."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ORCHESTRIX_WORKER_DB_NAME": db_name,
        "PYTHONUNBUFFERED": "1",
        **(extra or {}),
    }


class Process:
    """A child process logging to ``directory/<name>.log``; killed by :meth:`kill`."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], directory: Path) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until the log contains ``text``; fail (with the log) if the process dies first."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"{self.name} did not print {text!r}:\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, at once (a no-op once the process ended)."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(timeout=30)
        self._log.close()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then wait (SIGKILL after ``timeout`` seconds); the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=30)
        self._log.close()
        return int(self.popen.returncode)


def start_workers(
    jobs: list[tuple[str, str, dict[str, Any]]], env: dict[str, str], directory: Path
) -> list[Process]:
    """Start ``python -m tests.django.workers command args`` per ``(name, command, args)``.

    They are released together, once each has set Django up and printed
    ``ready``: a run of a given length then covers all of them.
    """
    processes = [
        Process(
            name,
            [sys.executable, "-m", "tests.django.workers", command, json.dumps(args)],
            env,
            directory,
        )
        for name, command, args in jobs
    ]
    for process in processes:
        process.wait_for_output("ready\n")
    for process in processes:
        assert process.popen.stdin is not None
        process.popen.stdin.write(b"go\n")
        process.popen.stdin.flush()
    return processes


def run_worker(
    name: str, command: str, args: dict[str, Any], env: dict[str, str], directory: Path
) -> dict[str, Any]:
    """Run one worker to its end; its result."""
    [process] = start_workers([(name, command, args)], env, directory)
    return worker_result(process)


def worker_result(process: Process, timeout: float = 120) -> dict[str, Any]:
    """Wait for a worker's end; its JSON result (the last line of its log)."""
    try:
        process.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"{process.name} did not finish:\n{process.log()[-4000:]}") from None
    process._log.close()
    log = process.log()
    assert process.popen.returncode == 0, f"{process.name} failed:\n{log[-4000:]}"
    return dict(json.loads(log.strip().splitlines()[-1]))


def start_runner(name: str, env: dict[str, str], directory: Path, *args: str) -> Process:
    """Start an ``orchestrix_run`` process and wait until it runs."""
    process = Process(
        name, [sys.executable, "-m", "django", "orchestrix_run", *args], env, directory
    )
    process.wait_for_output("orchestrix_run: running")
    return process


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 0.1 s until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


# ---------------------------------------------------------------- a private PostgreSQL


def postgres_bin_dir() -> Path | None:
    """The directory of ``initdb``, ``pg_ctl`` and ``createdb``, None without one.

    Debian's packages keep them in /usr/lib/postgresql/<version>/bin (the
    newest is taken); elsewhere they are on the PATH.
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found and (Path(found).parent / "pg_ctl").exists():
        return Path(found).parent
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own, on a free port of 127.0.0.1.

    PostgreSQL refuses to run as root: as root, its commands run as the
    ``postgres`` user (through ``runuser``), which owns the temporary
    directory. Trust authentication, user ``postgres``. ``fsync`` is off:
    the restarts crash the server, not the machine, so the operating
    system still writes out what PostgreSQL handed it.
    """

    def __init__(self, bin_dir: Path, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = port or free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="orchestrix-pg-"))
        self.data = self.directory / "data"
        self.log_path = self.directory / "server.log"
        self._as_postgres: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, user="postgres")
            self._as_postgres = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.directory, 0o700)
        self.restarts = 0

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [*self._as_postgres, str(self.bin_dir / program), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            output = f"{done.stdout}{done.stderr}"
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {output}\n{self.server_log()}"
            )

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=50"
        )

    def server_log(self) -> str:
        """The server's log so far (empty before the first start)."""
        with suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def start(self) -> None:
        """initdb, then start the server and wait until it accepts connections."""
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log_path),
            "-w", "start",
        )  # fmt: skip

    def create_database(self, name: str) -> None:
        """CREATE DATABASE ``name``."""
        self._run(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name
        )  # fmt: skip

    def restart(self, mode: str = "immediate") -> None:
        """Restart the server; ``immediate`` is a crash (every backend killed, then recovery)."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log_path),
            "-m", mode, "-w", "restart",
        )  # fmt: skip
        self.restarts += 1

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: every session ended, as a planned restart or failover)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def start_again(self) -> None:
        """Start the stopped server again and wait until it accepts connections."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log_path),
            "-w", "start",
        )  # fmt: skip
        self.restarts += 1

    def destroy(self) -> None:
        """Stop the server (if it runs) and delete the cluster."""
        with suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The settings' environment variables that point a process at this server."""
        return {
            "ORCHESTRIX_TEST_DB": "postgresql",
            "ORCHESTRIX_PG_HOST": "127.0.0.1",
            "ORCHESTRIX_PG_PORT": str(self.port),
            "ORCHESTRIX_PG_USER": "postgres",
        }


# ---------------------------------------------------------------- the final checks


def read_model(projection_id: str) -> Any:
    """What ``projection_id`` built: balances' rows, or the others' applied ids in order."""
    from tests.django.testapp.models import AccountBalance, AppliedEvent

    if projection_id == "test-balances":
        return sorted(
            (account, owner, str(balance), events)
            for account, owner, balance, events in AccountBalance.objects.values_list(
                "account_id", "owner", "balance", "events"
            )
        )
    return list(
        AppliedEvent.objects.filter(projection=projection_id.removeprefix("test-"))
        .order_by("id")
        .values_list("event_id", flat=True)
    )


def replay_mismatches(projection_ids: list[str] = ALL_PROJECTIONS) -> list[str]:
    """The projections whose read model differs from a clean replay's (reset + catch up).

    Each projection must be at the head of the log when this is called.
    """
    from orchestrix_django.projections import catch_up, get_projection, reset_projection

    mismatches = []
    for projection_id in projection_ids:
        live = read_model(projection_id)
        projection = get_projection(projection_id)
        reset_projection(projection)
        catch_up(projection)
        if read_model(projection_id) != live:
            mismatches.append(projection_id)
    return mismatches


def lost_and_extra(committed: list[str], event_types: list[str]) -> tuple[list[str], int]:
    """Against the log: the ``committed`` ids missing, and the events of ``event_types`` extra.

    Extra events are those of these types no writer believes it committed
    (or ids committed twice, which the unique event id rules out anyway).
    """
    from orchestrix_django.models import EventRecord

    stored = set(
        EventRecord.objects.filter(event_type__in=event_types).values_list("event_id", flat=True)
    )
    believed = set(committed)
    missing = sorted(believed - stored)
    return missing, len(stored - believed) + (len(committed) - len(believed))
