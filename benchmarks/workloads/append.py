"""1. Append sweep: one writer, many streams, 1 / 5 / 100 / 1000 events per save.

Every contender appends the same number of events per save, round-robin
over the same number of streams, with the events built beforehand (what is
timed is encoding plus the database round trips): Orchestrix's
``DjangoEventStore.save`` with the expected version, a raw ``executemany``
into ``bench_raw_event`` in one transaction per save (the ceiling), and the
peers' mapper + recorder. Blocks of each contender alternate, repeated, and
the median is reported, so that a slow moment of the machine hits everyone.
"""

from __future__ import annotations

from typing import Any

from benchmarks.benchapp.events import Deposited
from benchmarks.context import Context
from benchmarks.peers import make_peer
from benchmarks.raw import RawDb, raw_rows
from benchmarks.report import Target, WorkloadResult
from benchmarks.workloads.common import ES, ES_DJANGO, ORCHESTRIX, RAW, median, timed_loop

__all__ = ["run"]


def run(ctx: Context) -> WorkloadResult:
    """Measure events/s per events-per-save for each contender."""
    from orchestrix_django.storage.events import DjangoEventStore

    size = ctx.size
    result = WorkloadResult("1", "Append sweep: one writer, many streams (events/s)")
    store = DjangoEventStore()
    raw = RawDb(ctx.config)
    peers = {name: make_peer(ctx.config, name) for name in (ES, ES_DJANGO) if ctx.peer_ok(name)}
    for name, reason in ctx.peers.items():
        if reason is not None:
            result.notes.append(f"{name} not measured: {reason}")
    try:
        for batch in size.append_batch_sizes:
            saves = max(1, size.append_block_events // batch)
            streams = max(1, min(size.append_streams, saves))
            samples: dict[str, list[float]] = {}
            for repeat in range(size.append_repeats):
                tag = f"a{batch}-r{repeat}"
                rates = {
                    ORCHESTRIX: _orchestrix_block(store, tag, batch, saves, streams, size),
                    RAW: _raw_block(raw, tag, batch, saves, streams, size),
                }
                for name, peer in peers.items():
                    rates[name] = _peer_block(peer, batch, saves, streams, size)
                for name, rate in rates.items():
                    samples.setdefault(name, []).append(rate)
            point = f"{batch} events/save"
            for name, rates_of in samples.items():
                result.add(point, name, median(rates_of), "events/s", x=batch, runs=rates_of)
    finally:
        raw.close()
        for peer in peers.values():
            peer.close()
    _targets(result)
    return result


def _orchestrix_block(
    store: Any, tag: str, batch: int, saves: int, streams: int, size: Any
) -> float:
    versions = [0] * streams
    plan = []
    for n in range(saves):
        k = n % streams
        stream = f"{tag}-s{k}"
        v = versions[k]
        events = [Deposited(account_id=stream, amount=1, seq=v + i) for i in range(1, batch + 1)]
        plan.append((stream, v, events))
        versions[k] = v + batch

    def save(item: tuple[str, int, list[Deposited]]) -> int:
        stream, expected, events = item
        store.save(stream, events, expected_version=expected)
        return len(events)

    done, seconds = timed_loop(plan, save, size.append_block_seconds)
    return done / seconds


def _raw_block(raw: RawDb, tag: str, batch: int, saves: int, streams: int, size: Any) -> float:
    versions = [0] * streams
    plan = []
    for n in range(saves):
        k = n % streams
        stream = f"raw-{tag}-s{k}"
        plan.append(raw_rows(stream, versions[k] + 1, batch))
        versions[k] += batch

    def insert(rows: list[Any]) -> int:
        raw.insert(rows, lock=False)
        return len(rows)

    done, seconds = timed_loop(plan, insert, size.append_block_seconds)
    return done / seconds


def _peer_block(peer: Any, batch: int, saves: int, streams: int, size: Any) -> float:
    accounts = [peer.new_account() for _ in range(streams)]
    started = [False] * streams
    plan = []
    for n in range(saves):
        k = n % streams
        plan.append(peer.pending(accounts[k], batch, with_creation=not started[k]))
        started[k] = True

    def insert(events: list[Any]) -> int:
        peer.insert(events)
        return len(events)

    done, seconds = timed_loop(plan, insert, size.append_block_seconds)
    return done / seconds


def _targets(result: WorkloadResult) -> None:
    five, thousand = "5 events/save", "1000 events/save"
    result.targets += [
        Target("5 events/save vs eventsourcing-django", result.ratio(five, ES_DJANGO), 1.5),
        Target("5 events/save vs eventsourcing (PostgreSQL recorder)", result.ratio(five, ES), 1.0),
        Target("5 events/save vs raw executemany", result.ratio(five, RAW), 0.7),
        Target("1000 events/save vs raw executemany", result.ratio(thousand, RAW), 0.7),
    ]
