"""Registries for the system-check tests, importable by dotted path from ``ORCHESTRIX``.

The event classes here are taken back out of the default registry right after
they are defined: two classes sharing a ``type`` would otherwise be a real
conflict in every test that decodes through the default registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeVar

from orchestrix.core.eventsourcing.versioning import EventUpcaster, UpcasterRegistry
from orchestrix.core.messaging.message import Event, EventRegistry, default_registry
from orchestrix_django.projections import DjangoProjection

__all__ = [
    "complete_upcasters",
    "duplicate_registry",
    "missing_link_upcasters",
    "not_a_registry",
    "versioned_registry",
]


E = TypeVar("E", bound=type[Event])


def _private(event_class: E) -> E:
    """Keep ``event_class`` out of the default registry (it is only used here)."""
    default_registry.unregister(event_class)
    return event_class


# -- E001: two classes claim one type ------------------------------------------


@_private
@dataclass(frozen=True, kw_only=True)
class InvoiceSent(Event):
    """The first claimant of the type ``CheckFixtureInvoiceSent``."""

    type: str = "CheckFixtureInvoiceSent"
    invoice_id: str


@_private
@dataclass(frozen=True, kw_only=True)
class InvoiceMailed(Event):
    """A second class claiming the same type (the copy-paste mistake)."""

    type: str = "CheckFixtureInvoiceSent"
    invoice_id: str
    address: str


#: A registry where two classes claim one ``type``, as module imports leave it.
duplicate_registry = EventRegistry()
duplicate_registry.add(InvoiceSent)
duplicate_registry.add(InvoiceMailed)


# -- E002: an upcaster chain with a missing link --------------------------------


@_private
@dataclass(frozen=True, kw_only=True)
class ParcelShippedV1(Event):
    """The first schema of ``CheckFixtureParcelShipped``."""

    type: str = "CheckFixtureParcelShipped"
    schema_version: ClassVar[int] = 1
    parcel_id: str


@_private
@dataclass(frozen=True, kw_only=True)
class ParcelShipped(Event):
    """The current (third) schema of ``CheckFixtureParcelShipped``."""

    type: str = "CheckFixtureParcelShipped"
    schema_version: ClassVar[int] = 3
    parcel_id: str
    carrier: str = "unknown"


class _ToLatest(EventUpcaster[Event, ParcelShipped]):
    async def upcast(self, event: Event) -> ParcelShipped:
        return ParcelShipped(
            id=event.id,
            timestamp=event.timestamp,
            parcel_id=getattr(event, "parcel_id", ""),
        )


#: Version 1 and version 3 are registered.
versioned_registry = EventRegistry()
versioned_registry.register(ParcelShippedV1)
versioned_registry.register(ParcelShipped)

#: Only 2 -> 3 is registered: events stored as version 1 cannot be read.
missing_link_upcasters = UpcasterRegistry()
missing_link_upcasters.register("CheckFixtureParcelShipped", _ToLatest(2, 3))

#: 1 -> 3 directly: a complete chain.
complete_upcasters = UpcasterRegistry()
complete_upcasters.register("CheckFixtureParcelShipped", _ToLatest(1, 3))

#: Something importable that is not a registry at all.
not_a_registry = {"CheckFixtureParcelShipped": ParcelShipped}


#: For orchestrix.E008: not a projection, and two projections with one id.
not_a_projection = object()
twin_projection = DjangoProjection("test-balances")
