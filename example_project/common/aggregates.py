"""Changing an aggregate: load it, let the change check its rules, save it; again on a conflict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from example_project.common.retry import retry_on_conflict
from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot

__all__ = ["update"]

A = TypeVar("A", bound=AggregateRoot)


def update(
    repo: AggregateRepository[Any],
    aggregate_type: type[A],
    aggregate_id: str,
    change: Callable[[A], None],
) -> A:
    """Apply ``change`` to the stored aggregate and save it (optimistic locking).

    When another writer saved the aggregate in between, the save raises
    ``ConcurrencyError``; the whole load-change-save then runs again on the
    fresh state, so the rules are checked against what is really stored.
    """

    def attempt() -> A:
        aggregate: A = repo.load(aggregate_type, aggregate_id)
        change(aggregate)
        repo.save(aggregate)
        return aggregate

    return retry_on_conflict(attempt)
