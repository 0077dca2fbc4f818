"""What the demo prints at the end: streams, events, snapshots, projections, sagas.

Everything is read from Orchestrix's tables, as an operator would see it in
the admin, not from what the workload believes it did.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.contrib.admin.utils import quote
from django.db.models import Count
from django.urls import reverse

from orchestrix_django.models import EventRecord, SagaStateRecord, SnapshotRecord, StreamRecord
from orchestrix_django.projections import projection_status, projections

__all__ = ["Summary", "compensated_sagas", "summarise"]


@dataclass(frozen=True)
class Summary:
    """The numbers of the summary, and the lines that print them."""

    streams: int
    events: int
    upcast_events: int
    snapshots: int
    sagas_by_status: dict[str, Counter[str]]
    compensated: list[str]
    lines: list[str]


def compensated_sagas(limit: int | None = None) -> list[str]:
    """Ids of the sagas that ran at least one compensation, newest first."""
    found: list[str] = []
    rows = SagaStateRecord.objects.order_by("-created_at").values_list("saga_id", "steps")
    for saga_id, steps in rows.iterator():
        if any(int(step.get("compensation_attempts") or 0) > 0 for step in steps or []):
            found.append(saga_id)
            if limit is not None and len(found) >= limit:
                break
    return found


def _admin(name: str, *args: Any) -> str:
    return reverse(f"admin:{name}", args=[quote(arg) for arg in args])


def summarise(base_url: str = "") -> Summary:
    """Count what is stored and build the summary's lines (admin links under ``base_url``)."""
    lines: list[str] = []
    streams = StreamRecord.objects.count()
    by_kind = Counter(
        dict(
            StreamRecord.objects.values_list("aggregate_type")
            .annotate(n=Count("stream_id"))
            .values_list("aggregate_type", "n")
        )
    )
    kinds = ", ".join(f"{n} {kind or 'other'}" for kind, n in by_kind.most_common())
    lines.append(f"streams      {streams:>6}  ({kinds})")

    events = EventRecord.objects.count()
    by_type = Counter(
        dict(
            EventRecord.objects.values_list("event_type")
            .annotate(n=Count("position"))
            .values_list("event_type", "n")
        )
    )
    upcast = EventRecord.objects.filter(event_type="MoneyDeposited", schema_version=1).count()
    top = ", ".join(f"{n} {event_type}" for event_type, n in by_type.most_common(5))
    lines.append(f"events       {events:>6}  ({top}, …)")
    lines.append(
        f"             {upcast:>6}  MoneyDeposited events stored in schema version 1, "
        "upcast to version 2 on every read"
    )
    snapshots = SnapshotRecord.objects.count()
    snapshot_kinds = Counter(SnapshotRecord.objects.values_list("aggregate_type", flat=True))
    shown = ", ".join(f"{n} {kind}" for kind, n in snapshot_kinds.most_common()) or "none"
    lines.append(f"snapshots    {snapshots:>6}  ({shown})")

    lines.append("projections")
    head = None
    for projection_id in projections():
        status = projection_status(projection_id, head=head)
        head = status.head
        health = "healthy" if status.healthy else f"UNHEALTHY: {status.last_error}"
        if status.paused:
            health += ", paused"
        lines.append(
            f"  {projection_id:<20} position {status.position:>6} of {status.head:<6} "
            f"lag {status.lag:<4} {health}"
        )

    sagas: dict[str, Counter[str]] = {}
    for saga_type, saga_status, n in (
        SagaStateRecord.objects.values_list("saga_type", "status")
        .annotate(n=Count("saga_id"))
        .values_list("saga_type", "status", "n")
    ):
        sagas.setdefault(saga_type, Counter())[saga_status] = n
    compensated = compensated_sagas()
    compensated_by_type = Counter(
        SagaStateRecord.objects.filter(saga_id__in=compensated).values_list("saga_type", flat=True)
    )
    lines.append("sagas")
    for saga_type, statuses in sorted(sagas.items()):
        counts = ", ".join(f"{n} {status}" for status, n in statuses.most_common())
        lines.append(f"  {saga_type:<20} {counts} ({compensated_by_type[saga_type]} compensated)")

    lines.append("in the admin")
    lines.append(f"  streams       {base_url}{_admin('orchestrix_django_streamrecord_changelist')}")
    lines.append(
        f"  projections   {base_url}{_admin('orchestrix_django_projectionstaterecord_changelist')}"
    )
    if compensated:
        url = _admin("orchestrix_django_sagastaterecord_change", compensated[0])
        lines.append(f"  a saga that compensated  {base_url}{url}")
    return Summary(
        streams=streams,
        events=events,
        upcast_events=upcast,
        snapshots=snapshots,
        sagas_by_status=sagas,
        compensated=compensated,
        lines=lines,
    )
