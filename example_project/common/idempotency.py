"""Idempotent saga steps: each step's events carry ids derived from its idempotency key.

A saga step may run twice: its worker can die after the step stored its
events but before the saga recorded the step as completed, and the next
runner then runs the step again. So every event a step stores has an id
made from the step's ``idempotency_key`` (the same on every attempt), and
the step first looks whether that event is stored already: if it is, the
step did its work before and does nothing now. (The store would refuse the
second copy anyway, with a ``DuplicateEventError``; looking first also
skips the business checks, which could now fail: the first run already
took the money.)
"""

from __future__ import annotations

import uuid

from orchestrix_django.models import EventRecord

__all__ = ["event_id_for", "event_recorded", "new_event_id"]


def event_id_for(idempotency_key: str, part: str = "") -> str:
    """The id of the event a step stores (``part`` tells apart several events of one step)."""
    return f"{idempotency_key}:{part}" if part else idempotency_key


def event_recorded(event_id: str) -> bool:
    """Whether an event with this id is stored (in any stream)."""
    return EventRecord.objects.filter(event_id=event_id).exists()


def new_event_id(given: str | None) -> str:
    """The id for a new event: ``given`` (a saga step's), or a fresh one."""
    return given or str(uuid.uuid4())
