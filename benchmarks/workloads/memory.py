"""7. Memory: peak RSS of replaying N events and of loading a long stream.

Each measurement runs in a fresh process (:mod:`benchmarks.memory_probe`),
which reports its peak resident set size (``VmHWM``, reset after Django is
set up and connected, so the figure is the process's real peak during the
probe) and its RSS before the probe. Probes: ``catch_up`` replay of the
first ``memory_replay_events`` events of the log; ``AggregateRepository.load``
of a ``memory_stream_events``-event stream; a fold over
``DjangoEventStore.iter_stream`` of the same stream (streaming); the raw
``fetchall`` + JSON decode of its rows; and ``eventsourcing``'s
``repository.get`` of an aggregate as long.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from benchmarks.context import Context
from benchmarks.peers import make_peer
from benchmarks.report import Target, WorkloadResult
from benchmarks.seed import peer_seed_id, seed_log, seed_peer_log
from benchmarks.workloads.common import ES, ORCHESTRIX

__all__ = ["run"]

_STREAM_PREFIX = "mem"


def run(ctx: Context) -> WorkloadResult:
    """Measure the peak RSS of each probe in its own process."""
    from orchestrix_django.storage.events import DjangoEventStore

    size = ctx.size
    result = WorkloadResult("7", "Memory: peak RSS of a replay and of a long stream's load (MiB)")
    store = DjangoEventStore()
    replay = size.memory_replay_events
    have = store.head_position()
    if have < replay:
        seconds = seed_log(ctx.config, replay - have, 10, prefix=f"memlog{have}")
        result.notes.append(f"seeded {replay - have:,} events for the replay in {seconds:.1f} s")
    length = size.memory_stream_events
    stream = f"{_STREAM_PREFIX}-0"
    if store.stream_version(stream) == 0:
        seed_log(ctx.config, length, length, prefix=_STREAM_PREFIX)

    probes: list[tuple[str, str, str, str]] = [
        (f"replay of {replay:,} events", ORCHESTRIX, "replay", str(replay)),
        (f"load of a {length:,}-event stream", ORCHESTRIX, "repository-load", stream),
        (
            f"load of a {length:,}-event stream",
            "orchestrix store.iter_stream fold",
            "store-iter",
            stream,
        ),
        (f"load of a {length:,}-event stream", "raw fetchall + JSON decode", "raw-fetch", stream),
    ]
    if ctx.peer_ok(ES):
        peer = make_peer(ctx.config, ES)
        try:
            seed_peer_log(ctx.config, peer, length, length, prefix=_STREAM_PREFIX)
        finally:
            peer.close()
        probes.append(
            (
                f"load of a {length:,}-event stream",
                "eventsourcing repository.get",
                "eventsourcing-get",
                peer_seed_id(ctx.config, _STREAM_PREFIX, 0),
            )
        )
    for point, name, probe, argument in probes:
        measured = _run_probe(ctx, probe, argument)
        result.add(
            point,
            name,
            measured["peak_kib"] / 1024,
            "MiB peak",
            higher_is_better=False,
            rss_before_mib=round(measured["rss_before_kib"] / 1024, 1),
            growth_mib=round((measured["peak_kib"] - measured["rss_before_kib"]) / 1024, 1),
            seconds=measured["seconds"],
            counted=measured["counted"],
        )
    result.targets.append(
        Target(
            f"replay of {replay:,} events: peak RSS (MiB)",
            result.value(f"replay of {replay:,} events", ORCHESTRIX),
            300.0,
            at_least=False,
        )
    )
    result.notes.append(
        "peak = the probe process's VmHWM (reset after set-up); growth = peak minus the RSS "
        "before the probe (Django, the apps and a connection)"
    )
    return result


def _run_probe(ctx: Context, probe: str, argument: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.memory_probe",
        json.dumps(asdict(ctx.config)),
        probe,
        argument,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe {probe} failed:\n{done.stderr[-3000:]}")
    last = done.stdout.strip().splitlines()[-1]
    measured: dict[str, Any] = json.loads(last)
    return measured
