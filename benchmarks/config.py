"""How big each workload runs: the ``smoke`` size (seconds, for CI) and the ``full`` size."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["SIZES", "Size"]


@dataclass(frozen=True)
class Size:
    """The parameters of every workload for one run size."""

    name: str
    # 1. append sweep: events per save; each measured block stops after
    # `append_block_events` events or `append_block_seconds`, whichever is first.
    append_batch_sizes: tuple[int, ...]
    append_block_events: int
    append_block_seconds: float
    append_repeats: int
    append_streams: int
    # 2. concurrent writers
    writer_counts: tuple[int, ...]
    writer_seconds: float
    writer_events_per_save: int
    # 3. contention on hot streams
    contention_writers: tuple[int, ...]
    contention_streams: int
    contention_seconds: float
    # 4. aggregate load
    load_lengths: tuple[int, ...]
    load_snapshot_tail: int
    load_min_repeats: int
    load_seconds: float
    # 5. projection catch-up
    catchup_events: int
    catchup_stream_length: int
    catchup_upsert_events: int
    catchup_live_writers: int
    catchup_live_seconds: float
    # 6. Celery end to end: the paced writer's rates (events/s, one event per
    # save) and how long each runs; then the worker's catch-up over a log of
    # `celery_catchup_events` seeded events against the in-process runner's,
    # `celery_catchup_repeats` times each (the median is reported).
    celery_rates: tuple[int, ...]
    celery_seconds: float
    celery_catchup_events: int
    celery_catchup_repeats: int
    # 7. memory
    memory_replay_events: int
    memory_stream_events: int
    # how long the pool waits before a timed run starts (all workers ready)
    start_margin: float

    def as_dict(self) -> dict[str, Any]:
        """The parameters, for the JSON report."""
        return asdict(self)


SIZES: dict[str, Size] = {
    "smoke": Size(
        name="smoke",
        append_batch_sizes=(1, 5, 100, 1000),
        append_block_events=200,
        append_block_seconds=0.15,
        append_repeats=1,
        append_streams=20,
        writer_counts=(1, 2),
        writer_seconds=0.3,
        writer_events_per_save=5,
        contention_writers=(2,),
        contention_streams=2,
        contention_seconds=0.3,
        load_lengths=(20, 100, 500),
        load_snapshot_tail=10,
        load_min_repeats=3,
        load_seconds=0.05,
        catchup_events=2_000,
        catchup_stream_length=10,
        catchup_upsert_events=500,
        catchup_live_writers=1,
        catchup_live_seconds=0.4,
        celery_rates=(10, 100),
        celery_seconds=1.0,
        celery_catchup_events=2_000,
        celery_catchup_repeats=1,
        memory_replay_events=2_000,
        memory_stream_events=1_000,
        start_margin=0.3,
    ),
    # Minutes: the full workloads at a tenth of their sizes, for working on a hot path.
    "medium": Size(
        name="medium",
        append_batch_sizes=(1, 5, 100, 1000),
        append_block_events=5_000,
        append_block_seconds=1.0,
        append_repeats=2,
        append_streams=100,
        writer_counts=(1, 4, 16),
        writer_seconds=2.0,
        writer_events_per_save=5,
        contention_writers=(4, 16),
        contention_streams=4,
        contention_seconds=2.0,
        load_lengths=(100, 1_000, 10_000),
        load_snapshot_tail=50,
        load_min_repeats=3,
        load_seconds=0.5,
        catchup_events=100_000,
        catchup_stream_length=10,
        catchup_upsert_events=10_000,
        catchup_live_writers=2,
        catchup_live_seconds=3.0,
        celery_rates=(10, 100, 1000),
        celery_seconds=5.0,
        celery_catchup_events=20_000,
        celery_catchup_repeats=2,
        memory_replay_events=100_000,
        memory_stream_events=10_000,
        start_margin=0.5,
    ),
    "full": Size(
        name="full",
        append_batch_sizes=(1, 5, 100, 1000),
        append_block_events=20_000,
        append_block_seconds=3.0,
        append_repeats=3,
        append_streams=200,
        writer_counts=(1, 4, 16),
        writer_seconds=5.0,
        writer_events_per_save=5,
        contention_writers=(4, 16),
        contention_streams=4,
        contention_seconds=5.0,
        load_lengths=(100, 1_000, 10_000),
        load_snapshot_tail=50,
        load_min_repeats=5,
        load_seconds=1.5,
        catchup_events=1_000_000,
        catchup_stream_length=10,
        catchup_upsert_events=100_000,
        catchup_live_writers=2,
        catchup_live_seconds=20.0,
        celery_rates=(10, 100, 1000),
        celery_seconds=10.0,
        celery_catchup_events=100_000,
        celery_catchup_repeats=3,
        memory_replay_events=1_000_000,
        memory_stream_events=100_000,
        start_margin=1.0,
    ),
}
