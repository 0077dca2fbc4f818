"""PostgreSQL crash-restarts while writer processes and projection runners work.

The server is a private cluster (tests/django/fault_helpers.py:
:class:`PrivatePostgres`), never the shared one: the test crashes it twice
(``pg_ctl restart -m immediate``: every backend killed, then crash recovery)
while three writer processes save with expected versions and two
``orchestrix_run`` processes keep the projections up to date. The writers
retry a save that lost its connection with the same events (what an
application does); the runners must recover by themselves. At the end every
event a writer believes it committed is in the log exactly once, there is no
other, and every projection equals a clean replay.

Only meaningful on PostgreSQL: it runs in the PostgreSQL pass of the suite.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.django.fault_helpers import (
    ALL_PROJECTIONS,
    PrivatePostgres,
    Process,
    postgres_bin_dir,
    process_env,
    run_worker,
    start_runner,
    start_workers,
    worker_result,
)

pytestmark = [
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="restarts a PostgreSQL server: runs in the PostgreSQL pass (ORCHESTRIX_TEST_DB)",
    ),
    pytest.mark.skipif(
        postgres_bin_dir() is None,
        reason="needs PostgreSQL's server programs (initdb, pg_ctl) for a private cluster",
    ),
]

WRITE_SECONDS = 6.0
#: When the crashes happen, in seconds after the writers start.
RESTARTS_AT = (2.0, 4.0)


def test_writers_and_runners_survive_postgresql_crash_restarts(tmp_path: Path) -> None:
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    server = PrivatePostgres(bin_dir)
    processes: list[Process] = []
    try:
        server.start()
        name = f"{settings.DATABASES['default']['TEST']['NAME']}_pgrestart"
        server.create_database(name)
        env = process_env(
            name,
            {
                **server.env(),
                # Short saga intervals (no saga here, but the runners sweep).
                "ORCHESTRIX_TEST_SAGA_SWEEP_INTERVAL": "0.5",
            },
        )
        migrate = Process(
            "migrate", [sys.executable, "-m", "django", "migrate", "-v", "0"], env, tmp_path
        )
        assert migrate.popen.wait(timeout=120) == 0, migrate.log()
        streams = [f"R-{n}" for n in range(12)]
        runners = [
            start_runner(f"runner-{n}", env, tmp_path, "--poll-interval", "0.2", "--no-sagas")
            for n in range(2)
        ]
        processes += runners
        writer_args = {"seconds": WRITE_SECONDS, "streams": streams, "batch": 2, "pause": 0.02}
        writers = start_workers(
            [(f"writer-{seed}", "soak_write", {**writer_args, "seed": seed}) for seed in range(3)],
            env,
            tmp_path,
        )
        processes += writers
        started = time.monotonic()
        for at in RESTARTS_AT:
            time.sleep(max(at - (time.monotonic() - started), 0))
            server.restart("immediate")
        results = [worker_result(writer, timeout=120) for writer in writers]
        committed = [event_id for result in results for event_id in result["committed"]]
        # The runners recover by themselves: they catch up with no help.
        caught_up = run_worker(
            "wait", "wait_caught_up", {"timeout": 60, "projections": ALL_PROJECTIONS}, env, tmp_path
        )
        assert caught_up["caught_up"], (caught_up, [r.log()[-3000:] for r in runners])
        alive = [runner.popen.poll() is None for runner in runners]
        codes = [runner.terminate() for runner in runners]
        assert alive == [True, True] and codes == [0, 0], [r.log()[-3000:] for r in runners]
        committed_file = tmp_path / "committed.json"
        committed_file.write_text(json.dumps(committed))
        verdict = run_worker(
            "verify",
            "verify",
            {"committed_file": str(committed_file), "projections": ALL_PROJECTIONS},
            env,
            tmp_path,
        )
    finally:
        for process in processes:
            process.kill()
        server.destroy()
    retries = sum(result["retries"] for result in results)
    print(
        f"\nPostgreSQL crash-restarts: {len(committed)} events committed by {len(writers)} "
        f"writers, {server.restarts} restarts, {retries} retried operations, "
        f"{len(verdict['missing'])} events lost, {verdict['extra']} extra, "
        f"replay mismatches: {verdict['mismatches'] or 'none'}"
    )
    assert server.restarts == len(RESTARTS_AT)
    assert verdict["missing"] == [] and verdict["extra"] == 0
    assert verdict["mismatches"] == []
    # The crashes did hit the writers (else the test proves nothing).
    assert retries > 0
    assert all(result["saves"] > 0 for result in results)
