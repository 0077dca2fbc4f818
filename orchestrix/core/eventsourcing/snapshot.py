"""Snapshots: the saved state of an aggregate at a version, a cache of its events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrix.core.common.clock import utc_now

__all__ = ["Snapshot"]


@dataclass(frozen=True)
class Snapshot:
    """The state of ``aggregate_id`` after its first ``version`` events.

    ``state`` is JSON-compatible (see ``AggregateRoot.snapshot_state``), so a
    snapshot can be stored by any store. A snapshot is only a cache: when it
    can't be used, the repository replays the whole stream instead.
    """

    aggregate_id: str
    aggregate_type: str
    version: int
    state: dict[str, Any]
    timestamp: datetime = field(default_factory=utc_now)

    def __post_init__(self) -> None:
        if not self.aggregate_id:
            raise ValueError("a snapshot needs an aggregate_id")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise ValueError(f"snapshot version must be an int >= 0, got {self.version!r}")
        if self.timestamp.tzinfo is None:
            raise ValueError("snapshot timestamp must be timezone-aware")
