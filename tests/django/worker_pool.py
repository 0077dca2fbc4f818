"""Start worker processes (tests/django/workers.py) on the test database, together."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def run_workers(
    jobs: list[tuple[str, dict[str, Any]]], timeout: float = 180
) -> list[dict[str, Any]]:
    """Run one worker process per job, released at the same moment; their results."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ORCHESTRIX_WORKER_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.django.workers", command, json.dumps(args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        for command, args in jobs
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], 60)
            line = process.stdout.readline() if ready else ""
            if line.strip() != "ready":
                process.kill()
                raise AssertionError(f"worker did not start: {line!r} {process.stderr.read()}")  # type: ignore[union-attr]
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, f"worker failed ({process.returncode}): {err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
