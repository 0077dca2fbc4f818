"""A PostgreSQL outage of 30 seconds while writers write and a runner runs.

The server is a private cluster on port 55433 (tests/django/fault_helpers.py:
:class:`PrivatePostgres`), never the shared one. Three writer processes save
with expected versions (retrying a save that lost its connection with the
same events, as an application does) and start an order saga every fifth
save, and an ``orchestrix_run`` process keeps the five test projections and
the sagas going. The server is stopped
(``pg_ctl stop -m fast``: every session ended, as a planned restart or a
failover does) for 30 seconds, then started again. The runner gets no help:
it must log and count the faults, wait, reconnect and reach the head of the
log by itself, with every event applied exactly once (each projection equals
a clean replay), no dead letter, no paused or unhealthy projection, and every
saga finished as its business rules say (none failed or compensated because
of the outage).

Only meaningful on PostgreSQL: it runs in the PostgreSQL pass of the suite.
"""

from __future__ import annotations

import json
import re
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
    wait_until,
    worker_result,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="stops a PostgreSQL server: runs in the PostgreSQL pass (ORCHESTRIX_TEST_DB)",
    ),
    pytest.mark.skipif(
        postgres_bin_dir() is None,
        reason="needs PostgreSQL's server programs (initdb, pg_ctl) for a private cluster",
    ),
]

#: The private cluster's port (test_pg_restart.py takes a free one).
PORT = 55433
OUTAGE_SECONDS = 30.0
#: Writing starts this long before the outage and goes on after it.
WRITE_BEFORE = 3.0
WRITE_AFTER = 3.0


def expected_status(saga_id: str) -> str:
    """What saga ``soak-<seed>-<k>`` of the writers ends as (tests/django/workers.py)."""
    k = int(saga_id.rsplit("-", 1)[1])
    return "failed" if k % 3 == 0 or k % 5 == 0 else "completed"


def test_a_runner_recovers_by_itself_from_a_30_second_postgresql_outage(tmp_path: Path) -> None:
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    server = PrivatePostgres(bin_dir, port=PORT)
    processes: list[Process] = []
    try:
        server.start()
        name = f"{settings.DATABASES['default']['TEST']['NAME']}_pgoutage"
        server.create_database(name)
        env = process_env(name, {**server.env(), "ORCHESTRIX_TEST_SAGA_SWEEP_INTERVAL": "0.5"})
        migrate = Process(
            "migrate", [sys.executable, "-m", "django", "migrate", "-v", "0"], env, tmp_path
        )
        assert migrate.popen.wait(timeout=120) == 0, migrate.log()
        runner = start_runner("runner", env, tmp_path, "--poll-interval", "0.2")
        processes.append(runner)
        streams = [f"O-{n}" for n in range(12)]
        seconds = WRITE_BEFORE + OUTAGE_SECONDS + WRITE_AFTER
        writer_args = {
            "seconds": seconds,
            "streams": streams,
            "batch": 2,
            "pause": 0.05,
            "saga_every": 5,
        }
        writers = start_workers(
            [(f"writer-{seed}", "soak_write", {**writer_args, "seed": seed}) for seed in range(3)],
            env,
            tmp_path,
        )
        processes += writers
        time.sleep(WRITE_BEFORE)
        server.stop("fast")
        time.sleep(OUTAGE_SECONDS)
        server.start_again()
        back = time.monotonic()
        # A projection's turn ends, reporting the faults it rode out, once it works again.
        wait_until(lambda: "rode out" in runner.log(), 60, "the runner's recovery")
        recovered = time.monotonic() - back
        results = [worker_result(writer, timeout=180) for writer in writers]
        committed = [event_id for result in results for event_id in result["committed"]]
        saga_ids = [saga_id for result in results for saga_id in result["sagas"]]
        caught_up = run_worker(
            "wait",
            "wait_caught_up",
            {"timeout": 60, "projections": ALL_PROJECTIONS, "sagas": saga_ids},
            env,
            tmp_path,
        )
        assert caught_up["caught_up"], (caught_up, runner.log()[-3000:])
        alive = runner.popen.poll() is None
        code = runner.terminate()
        log = runner.log()
        assert alive and code == 0, log[-3000:]
        committed_file = tmp_path / "committed.json"
        committed_file.write_text(json.dumps(committed))
        verdict = run_worker(
            "verify",
            "verify",
            {
                "committed_file": str(committed_file),
                "projections": ALL_PROJECTIONS,
                "sagas": saga_ids,
            },
            env,
            tmp_path,
        )
    finally:
        for process in processes:
            process.kill()
        server.destroy()
    # orchestrix_run reports each turn's faults: "<projection>: rode out N database fault(s)".
    faults = sum(int(n) for n in re.findall(r"rode out (\d+) database fault", log))
    retries = sum(result["retries"] for result in results)
    print(
        f"\nPostgreSQL outage of {OUTAGE_SECONDS:g} s: {len(committed)} events committed by "
        f"{len(writers)} writers ({retries} retried operations), {faults} faults ridden out by "
        f"the runner, which worked again {recovered:.1f} s after the restart; "
        f"{len(verdict['missing'])} events lost, {verdict['extra']} extra, "
        f"{verdict['parked']} dead letters, stopped projections: {verdict['stopped'] or 'none'}, "
        f"replay mismatches: {verdict['mismatches'] or 'none'}; {len(saga_ids)} sagas, "
        f"{sum(status == 'completed' for status, _ in verdict['sagas'].values())} completed, "
        f"the others compensated as their rules say: "
        f"{sum(s == expected_status(i) for i, (s, _) in verdict['sagas'].items())} as expected"
    )
    assert verdict["missing"] == [] and verdict["extra"] == 0
    assert verdict["mismatches"] == []
    assert verdict["parked"] == 0 and verdict["stopped"] == []
    # Sagas end as their business rules say (declined payments, NOSHIP orders are
    # compensated), never failed or compensated because of the outage.
    assert len(verdict["sagas"]) == len(saga_ids) > 0
    assert {saga_id: status for saga_id, (status, _) in verdict["sagas"].items()} == {
        saga_id: expected_status(saga_id) for saga_id in saga_ids
    }, verdict["sagas"]
    # The outage did hit the runner and the writers (else the test proves nothing).
    assert faults > 0 and retries > 0
    assert all(result["saves"] > 0 for result in results)
