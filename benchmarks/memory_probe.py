"""One memory measurement in a fresh process (run by workload 7, not by hand).

``python -m benchmarks.memory_probe CONFIG_JSON PROBE ARGUMENT`` sets Django
up, does a warm-up query, notes the resident set size, resets the kernel's
peak counter (``/proc/self/clear_refs``), runs the probe, and prints one JSON
line: the peak RSS (``VmHWM``), the RSS before, the seconds and what the
probe counted. Probes:

* ``replay N``: ``catch_up`` of the no-op projection over the first N events;
* ``repository-load STREAM``: ``AggregateRepository.load`` of a long stream;
* ``store-iter STREAM``: a fold over ``DjangoEventStore.iter_stream``;
* ``raw-fetch STREAM``: the raw baseline, ``fetchall`` + JSON decode;
* ``eventsourcing-get UUID``: the peer's ``repository.get``.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
import uuid
from typing import Any

from benchmarks.db import DbConfig, setup_django

__all__ = ["main", "rss_kib"]


def rss_kib() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of this process, in KiB."""
    values: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, amount = line.split(":", 1)
                    values[key] = int(amount.split()[0])
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        values = {"VmRSS": peak, "VmHWM": peak}
    return values


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _probe(config: DbConfig, probe: str, argument: str) -> int:
    from benchmarks.benchapp.aggregates import Account
    from orchestrix.core.eventsourcing.aggregate import AggregateRepository
    from orchestrix_django.storage.events import DjangoEventStore

    if probe == "replay":
        from benchmarks.benchapp import projections as bench
        from orchestrix_django.projections import catch_up

        count = int(argument)
        done = catch_up(bench.noop, max_batches=math.ceil(count / bench.noop.batch_size))
        return done.applied
    if probe == "repository-load":
        repository: AggregateRepository[Account] = AggregateRepository(DjangoEventStore())
        return repository.load(Account, argument).version
    if probe == "store-iter":
        total = 0
        for stored in DjangoEventStore().iter_stream(argument):
            total += stored.event.amount  # type: ignore[attr-defined]
        return total
    if probe == "raw-fetch":
        from benchmarks.raw import RawDb

        raw = RawDb(config)
        try:
            return len(raw.stream(argument))
        finally:
            raw.close()
    if probe == "eventsourcing-get":
        from benchmarks.peers import ES, make_peer

        peer = make_peer(config, ES)
        try:
            return int(peer.get(uuid.UUID(argument)).version)
        finally:
            peer.close()
    raise SystemExit(f"unknown probe {probe!r}")


def _prepare(probe: str) -> None:
    """What must happen before the baseline is taken (not part of the measurement)."""
    from django.db import connection

    from orchestrix_django.storage.events import DjangoEventStore

    connection.ensure_connection()
    DjangoEventStore().head_position()
    if probe == "replay":
        from benchmarks.benchapp import projections as bench
        from orchestrix_django.projections import reset_projection

        reset_projection(bench.noop)


def main(argv: list[str]) -> int:
    """Run one probe; print its JSON line."""
    config = DbConfig(**json.loads(argv[0]))
    probe, argument = argv[1], argv[2]
    setup_django(config)
    _prepare(probe)
    before = rss_kib()["VmRSS"]
    resettable = _reset_peak()
    started = time.perf_counter()
    counted = _probe(config, probe, argument)
    seconds = time.perf_counter() - started
    after = rss_kib()
    out: dict[str, Any] = {
        "probe": probe,
        "counted": counted,
        "seconds": round(seconds, 2),
        "rss_before_kib": before,
        "peak_kib": after["VmHWM"],
        "peak_reset": resettable,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
