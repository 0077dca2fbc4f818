"""Django signals sent by the event store.

``events_committed`` is sent once the transaction that appended events has
committed (never for a save that rolled back), with ``sender`` the store
class, ``stream_id`` and ``events``: the :class:`StoredEvent` records, with
their global positions, in version order.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["events_committed"]

events_committed = Signal()
