"""Base classes that read their configuration from the ``ORCHESTRIX`` settings lazily.

Settings are never read at import time or in ``__init__`` (a store may be
created at module level): the database alias, the event registry and the
upcasters are looked up when first used, unless given explicitly.
"""

from __future__ import annotations

from orchestrix.core.common.observability import ObservabilityHooks, get_observability
from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.messaging.message import EventRegistry
from orchestrix.core.serialization.event_codec import EventCodec
from orchestrix_django.settings import orchestrix_settings
from orchestrix_django.storage.personal_data import PersonalDataCodec

__all__ = ["DatabaseBound", "EventDecoding", "configured_observability"]


def configured_observability() -> ObservabilityHooks:
    """``ORCHESTRIX["OBSERVABILITY"]``, else the process-wide hooks (looked up at each call)."""
    configured: ObservabilityHooks | None = orchestrix_settings.OBSERVABILITY
    return configured if configured is not None else get_observability()


class DatabaseBound:
    """Works on one database: ``using``, by default ``ORCHESTRIX["DATABASE"]``."""

    def __init__(self, using: str | None = None) -> None:
        self._using = using

    @property
    def using(self) -> str:
        """The database alias."""
        return self._using or str(orchestrix_settings.DATABASE)


class EventDecoding(DatabaseBound):
    """Also turns stored rows back into events: a codec and the upcasters."""

    def __init__(
        self,
        using: str | None = None,
        *,
        registry: EventRegistry | None = None,
        upcasters: UpcasterRegistry | None = None,
    ) -> None:
        super().__init__(using)
        self._registry = registry
        self._upcasters = upcasters
        self._codec: EventCodec | None = None
        self._codec_decrypts = False

    @property
    def codec(self) -> EventCodec:
        """The codec events are encoded and decoded with (the configured registry's).

        With ``ENCRYPT_PERSONAL_DATA`` on, a
        :class:`~orchestrix_django.storage.personal_data.PersonalDataCodec`, which
        decrypts personal fields before decoding.
        """
        decrypts = bool(orchestrix_settings.ENCRYPT_PERSONAL_DATA)
        if self._codec is None or decrypts is not self._codec_decrypts:
            # `is None`, not `or`: an empty registry is falsy, and still the one asked for.
            registry = self._registry
            if registry is None:
                registry = orchestrix_settings.EVENT_REGISTRY
            if decrypts:
                self._codec = PersonalDataCodec(registry, self.using)
            else:
                self._codec = EventCodec(registry)
            self._codec_decrypts = decrypts
        return self._codec

    @property
    def upcasters(self) -> UpcasterRegistry | None:
        """The upcaster registry applied on reads (None: no upcasting)."""
        if self._upcasters is not None:
            return self._upcasters
        configured: UpcasterRegistry | None = orchestrix_settings.UPCASTERS
        return configured
