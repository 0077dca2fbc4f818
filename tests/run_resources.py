"""What one test run owns on this machine: a folder and a Redis database.

Two runs at once (two checkouts, two helpers) must not share the SQLite
files, their saga-lock files, or the Redis database the Celery tests flush.

* The folder: ``ORCHESTRIX_TEST_RUN_DIR``, else a new temporary folder,
  removed when the process that made it exits.
* The Redis database: ``ORCHESTRIX_TEST_REDIS_URL``, else the first of
  databases 1 to 15 on ``redis://127.0.0.1:6379`` whose lock file
  (in the temporary folder) no other process holds; the lock is held until
  this process exits.

The process that chooses exports its choice through both variables, so the
worker processes the tests start (they inherit the environment) use the same.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import tempfile
from typing import IO

__all__ = ["REDIS_URL_ENV", "RUN_DIR_ENV", "redis_url", "redis_url_chosen_here", "run_dir"]

RUN_DIR_ENV = "ORCHESTRIX_TEST_RUN_DIR"
REDIS_URL_ENV = "ORCHESTRIX_TEST_REDIS_URL"
REDIS_SERVER = "redis://127.0.0.1:6379"
#: The Redis databases a run may choose, in order (0 is left to other software).
REDIS_DATABASES = range(1, 16)

#: Lock files this process holds, open for its lifetime (closing one releases its lock).
_held: list[IO[str]] = []
_chosen_here: list[str] = []


def run_dir() -> str:
    """This run's folder (made, exported and removed at exit when no one gave one)."""
    given = os.environ.get(RUN_DIR_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        return given
    made = tempfile.mkdtemp(prefix="orchestrix-test-run-")
    os.environ[RUN_DIR_ENV] = made
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # not in a forked child
            shutil.rmtree(made, ignore_errors=True)

    atexit.register(remove)
    return made


def _lock(database: int) -> bool:
    """Take this machine's lock of Redis database ``database`` (False: another run has it)."""
    path = os.path.join(tempfile.gettempdir(), f"orchestrix-test-redis-{database}.lock")
    handle = open(path, "a")  # noqa: SIM115  # kept open: the lock lives as long as the file
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _held.append(handle)
    return True


def redis_url() -> str:
    """This run's Redis database (see the module docs)."""
    given = os.environ.get(REDIS_URL_ENV)
    if given:
        # Keep runs that choose off it too (its holder may be the process that chose it).
        server, _, database = given.rpartition("/")
        if server == REDIS_SERVER and database.isdigit():
            with contextlib.suppress(OSError):
                _lock(int(database))
        return given
    for database in REDIS_DATABASES:
        if _lock(database):
            url = f"{REDIS_SERVER}/{database}"
            os.environ[REDIS_URL_ENV] = url
            _chosen_here.append(url)
            return url
    raise RuntimeError(
        f"every Redis database {REDIS_DATABASES.start}-{REDIS_DATABASES.stop - 1} of "
        f"{REDIS_SERVER} is taken by another test run; set {REDIS_URL_ENV} to choose one"
    )


def redis_url_chosen_here() -> bool:
    """Whether this process chose the Redis database (it then empties it at the end)."""
    return bool(_chosen_here)
