"""A simulated parcel carrier, the outside system the ``ship_order`` step calls.

It behaves like a real partner API in the two ways that matter to a saga:

* it does not deliver everywhere: a destination outside
  :data:`SERVED_COUNTRIES` is refused for good (:class:`DestinationNotServed`),
  and the saga compensates: the payment is refunded, the stock released;
* it is sometimes briefly unavailable: for one order in five (chosen by the
  order id, so runs are reproducible) the first booking attempt fails with
  :class:`CarrierUnavailable`, a transient error the step's retry policy
  retries.

Bookings are idempotent, keyed by the step's ``idempotency_key``: booking
twice (a retried or resumed step) returns the first booking's tracking number.
"""

from __future__ import annotations

import hashlib
import zlib

from django.db import transaction
from django.db.models import F

from example_project.common.retry import TransientError
from example_project.orders.models import Shipment

__all__ = ["CARRIER", "SERVED_COUNTRIES", "CarrierUnavailable", "DestinationNotServed", "book"]

CARRIER = "ParcelFox"
#: Where the carrier delivers (the shop also sells to CH, GB and NO, which it does not serve).
SERVED_COUNTRIES = frozenset({"AT", "BE", "DE", "DK", "ES", "FR", "IE", "IT", "NL", "PT", "SE"})


class CarrierUnavailable(TransientError):
    """The carrier's API did not answer; trying again shortly usually works."""


class DestinationNotServed(Exception):
    """The carrier does not deliver to this country (retrying will not change that)."""


def book(order_id: str, country: str, booking_key: str) -> str:
    """Book a parcel for ``order_id`` to ``country``; returns the tracking number."""
    with transaction.atomic():
        shipment, _ = Shipment.objects.select_for_update().get_or_create(
            booking_key=booking_key, defaults={"order_id": order_id, "country": country}
        )
        if shipment.tracking_number:
            return shipment.tracking_number  # booked by an earlier call
        Shipment.objects.filter(pk=booking_key).update(attempts=F("attempts") + 1)
        attempts = shipment.attempts + 1
    if country not in SERVED_COUNTRIES:
        raise DestinationNotServed(f"{CARRIER} does not deliver to {country}")
    if attempts == 1 and zlib.crc32(order_id.encode()) % 5 == 0:
        raise CarrierUnavailable(f"{CARRIER} did not answer (attempt {attempts})")
    tracking = "PFX" + hashlib.sha256(booking_key.encode()).hexdigest()[:10].upper()
    Shipment.objects.filter(pk=booking_key).update(tracking_number=tracking)
    return tracking
