"""4. Aggregate load: streams of 100 / 1k / 10k events, with and without snapshots.

Orchestrix: ``AggregateRepository.load`` over ``DjangoEventStore`` (which
looks for a snapshot first, then decodes and replays the events after it).
Also shown: ``DjangoEventStore.load`` alone (the events decoded, no
aggregate), to tell the store's cost from the replay's. Baselines: a raw
``SELECT`` of the same rows in ``orchestrix_event`` with JSON decoding (the
ceiling), and ``eventsourcing``'s ``repository.get`` (snapshotting enabled,
as Orchestrix always looks for one). With snapshots, each stream has a
snapshot ``load_snapshot_tail`` events before its end, so every load
replays the same number of events on top of it whatever the stream's length.
Figures are latencies in milliseconds (p50; p95 in the report).
"""

from __future__ import annotations

from typing import Any

from benchmarks.benchapp.aggregates import Account
from benchmarks.benchapp.events import Deposited
from benchmarks.context import Context
from benchmarks.peers import make_peer
from benchmarks.raw import RawDb
from benchmarks.report import Target, WorkloadResult, percentiles
from benchmarks.workloads.common import ES, ES_DJANGO, ORCHESTRIX, time_interleaved

__all__ = ["run"]

RAW_SELECT = "raw SELECT + JSON decode"
STORE_LOAD = "orchestrix store.load (no aggregate)"
#: Events per save when the streams are seeded.
_SEED_CHUNK = 1000


def run(ctx: Context) -> WorkloadResult:
    """Measure load latency per stream length, with and without a snapshot."""
    from orchestrix.core.eventsourcing.aggregate import AggregateRepository
    from orchestrix_django.storage.events import DjangoEventStore

    size = ctx.size
    result = WorkloadResult("4", "Aggregate load (ms per load, p50)")
    store = DjangoEventStore()
    repository: AggregateRepository[Account] = AggregateRepository(store)
    raw = RawDb(ctx.config)
    peers = {name: make_peer(ctx.config, name) for name in (ES, ES_DJANGO) if ctx.peer_ok(name)}
    try:
        for snapshots in (False, True):
            for length in size.load_lengths:
                tail = min(size.load_snapshot_tail, length // 2)
                point = (
                    _snapshot_point(length, size.load_snapshot_tail)
                    if snapshots
                    else f"{length} events"
                )
                stream = f"load-{length}-{'snap' if snapshots else 'plain'}"
                _seed(store, stream, length)
                if snapshots:
                    _snapshot(store, stream, length - tail)
                after = length - tail if snapshots else 0
                calls: dict[str, Any] = {
                    ORCHESTRIX: lambda s=stream: repository.load(Account, s),
                    # With a snapshot: the events after it, as the repository reads them.
                    STORE_LOAD: lambda s=stream, a=after: store.load(s, from_version=a),
                }
                if not snapshots:
                    calls[RAW_SELECT] = lambda s=stream: raw.stream(s)
                for name, peer in peers.items():
                    aggregate_id = _seed_peer(peer, length, tail if snapshots else None)
                    calls[name] = lambda p=peer, a=aggregate_id: p.get(a)
                _check(repository.load(Account, stream), length)
                for call in calls.values():
                    call()  # warm: connections, caches, prepared statements
                measured = time_interleaved(
                    calls, size.load_min_repeats, size.load_seconds * len(calls)
                )
                for name, samples in measured.items():
                    stats = percentiles(samples)
                    result.add(
                        point,
                        name,
                        stats["p50"],
                        "ms",
                        higher_is_better=False,
                        x=length,
                        series="with snapshot" if snapshots else "",
                        p95=round(stats["p95"], 3),
                        samples=len(samples),
                    )
    finally:
        raw.close()
        for peer in peers.values():
            peer.close()
    _targets(result, size.load_lengths, size.load_snapshot_tail)
    return result


def _seed(store: Any, stream: str, length: int) -> None:
    version = 0
    while version < length:
        count = min(_SEED_CHUNK, length - version)
        events = [
            Deposited(account_id=stream, amount=1, seq=version + i) for i in range(1, count + 1)
        ]
        store.save(stream, events, expected_version=version)
        version += count


def _snapshot(store: Any, stream: str, version: int) -> None:
    account = Account(aggregate_id=stream)
    account._replay_events(store.load(stream)[:version])
    store.save_snapshot(account.to_snapshot())


def _seed_peer(peer: Any, length: int, tail: int | None) -> Any:
    account = peer.new_account()
    events = peer.pending(account, length, with_creation=True)
    for start in range(0, len(events), _SEED_CHUNK):
        peer.insert(events[start : start + _SEED_CHUNK])
    if tail is not None:
        peer.take_snapshot(account.id, length - tail)
    return account.id


def _check(account: Account, length: int) -> None:
    if account.version != length or account.balance != length:
        raise AssertionError(
            f"loaded {account.aggregate_id} at version {account.version}, balance "
            f"{account.balance}; expected {length} and {length}"
        )


def _targets(result: WorkloadResult, lengths: tuple[int, ...], tail: int) -> None:
    middle = lengths[len(lengths) // 2]
    result.targets.append(
        Target(
            f"load of {middle} events vs eventsourcing", result.ratio(f"{middle} events", ES), 1.0
        )
    )
    shortest, longest = lengths[0], lengths[-1]
    short = result.value(_snapshot_point(shortest, tail), ORCHESTRIX)
    long = result.value(_snapshot_point(longest, tail), ORCHESTRIX)
    result.targets.append(
        Target(
            f"with snapshots: load of {longest} events / load of {shortest} events",
            long / short if long and short else None,
            2.0,
            at_least=False,
        )
    )


def _snapshot_point(length: int, tail: int) -> str:
    return f"{length} events, snapshot {min(tail, length // 2)} before the end"
