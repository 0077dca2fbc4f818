"""The events every workload writes: one small, typical domain event."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrix.core.messaging.message import Event

__all__ = ["Deposited"]


@dataclass(frozen=True, kw_only=True)
class Deposited(Event):
    """Money paid into an account.

    ``seq`` is the event's intended version in its stream: the catch-up
    checker uses it to prove per-stream order without reading positions.
    """

    account_id: str
    amount: int
    seq: int
