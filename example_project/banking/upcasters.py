"""The upcaster of ``MoneyDeposited``: schema version 1 (cents, euros implied) to 2."""

from __future__ import annotations

from decimal import Decimal

from example_project.banking.events import MoneyDeposited, MoneyDepositedV1
from orchestrix.core.eventsourcing.versioning import EventUpcaster
from orchestrix.core.messaging.message import Event

__all__ = ["LEGACY_CURRENCY", "MoneyDepositedV1ToV2"]

#: The first release ran in the euro area only: its deposits were all in euros.
LEGACY_CURRENCY = "EUR"


class MoneyDepositedV1ToV2(EventUpcaster[MoneyDepositedV1, MoneyDeposited]):
    """``amount_cents`` becomes a ``Decimal`` ``amount``; the currency is made explicit.

    The event keeps its id, time and correlation: it is the same fact, read
    in today's shape (the stored row is never rewritten).
    """

    async def upcast(self, event: Event) -> MoneyDeposited:
        """The version 2 form of a version 1 deposit."""
        if not isinstance(event, MoneyDepositedV1):
            raise TypeError(f"expected a MoneyDeposited v1 event, got {event!r}")
        return MoneyDeposited(
            id=event.id,
            timestamp=event.timestamp,
            source=event.source,
            correlation_id=event.correlation_id,
            causation_id=event.causation_id,
            trace_id=event.trace_id,
            account_id=event.account_id,
            amount=Decimal(event.amount_cents) / 100,
            currency=LEGACY_CURRENCY,
            reference="legacy deposit",
        )
