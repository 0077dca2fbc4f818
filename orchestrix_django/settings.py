"""Settings for Orchestrix, read from the ``ORCHESTRIX`` dict in Django settings.

Usage (the pattern Django REST framework made familiar)::

    from orchestrix_django.settings import orchestrix_settings
    orchestrix_settings.DATABASE

Every key has a default (see :data:`DEFAULTS`); dotted paths in
:data:`IMPORT_STRINGS` are imported on first access; unknown keys are
reported by the system check ``orchestrix.E003`` and raise on access. Nothing
is read at import time, and the settings reload when a test overrides
``ORCHESTRIX``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = [
    "API_IMPORT_STRINGS",
    "DEFAULTS",
    "IMPORT_STRINGS",
    "ConfiguredObjects",
    "OrchestrixSettings",
    "orchestrix_settings",
    "perform_import",
]

DEFAULTS: dict[str, Any] = {
    # The database alias the event store and the framework's tables use.
    "DATABASE": "default",
    # Modules to import at start-up so that their Event classes are registered
    # (a worker must know every stored event type to decode it).
    "EVENT_MODULES": [],
    # The registry stored events are decoded through.
    "EVENT_REGISTRY": "orchestrix.core.messaging.message.default_registry",
    # An UpcasterRegistry instance (dotted path), or None for no upcasting.
    "UPCASTERS": None,
    # ObservabilityHooks instance (dotted path); None uses the process-wide hooks.
    "OBSERVABILITY": None,
    # Rows per INSERT statement when one save carries many events.
    "INSERT_BATCH_SIZE": 500,
    # Rows fetched per round trip when a read streams a long stream or the log.
    "READ_CHUNK_SIZE": 2000,
    # Upper bound of one read_all() page.
    "MAX_READ_ALL_LIMIT": 10000,
    # Modules (the core ``Module`` protocol) registered with the process-wide
    # message bus in AppConfig.ready(): dotted paths to a class (instantiated
    # without arguments) or to an instance, each with a register(bus, store)
    # method; it gets orchestrix_django.bus.get_bus() and a DjangoEventStore().
    # Entries that can't be wired are skipped and reported by check E007.
    # (Imported by orchestrix_django.bus, not through IMPORT_STRINGS, so that
    # one bad entry does not hide the others.)
    "MODULES": [],
    # DjangoProjection objects (dotted paths) the runners keep up to date.
    "PROJECTIONS": [],
    # Events read and applied per transaction by a projection runner.
    "PROJECTION_BATCH_SIZE": 500,
    # Seconds ``orchestrix_run`` waits between two looks at the log for events
    # written by other processes (writes in its own process wake it at once).
    "POLL_INTERVAL": 1.0,
    # How commits wake the projections: "none" (the default: the embedded runner,
    # ``orchestrix_run``, keeps them up to date) or "celery" (each commit sends
    # one ``orchestrix.advance_projection`` task per interested projection, at
    # most one pending each; see orchestrix_django.wakeup).
    "WAKE_UP": "none",
    # The cache alias (settings.CACHES) holding the pending-wake-up markers. It
    # must be shared by every process (Redis, Memcached, the database cache),
    # not local memory.
    "WAKE_UP_CACHE": "default",
    # Seconds a pending-wake-up marker lives: bounds how long a wake-up lost by
    # the broker holds further wake-ups of its projection back.
    "WAKE_UP_TTL": 60,
    # Seconds between two runs of the periodic ``orchestrix.catch_up_projections``
    # task (orchestrix_django.celery.beat_schedule()), the net for lost wake-ups.
    "CATCH_UP_INTERVAL": 30,
    # Seconds after which ``orchestrix_status`` reports a projection as stalled
    # (and ``--check`` fails): events wait after its checkpoint, the oldest stored
    # longer ago than this, and its checkpoint has not moved for as long, so no
    # runner is advancing it. None: four CATCH_UP_INTERVALs (two minutes by default).
    "STALLED_AFTER": None,
    # DjangoSaga objects (or core Sagas on a DjangoSagaStateStore), dotted paths,
    # that DjangoSaga.start() / start_saga() start and the workers or
    # ``orchestrix_run`` execute (see orchestrix_django.sagas.runner). Process managers
    # are projections: they go in PROJECTIONS.
    "SAGAS": [],
    # Seconds between two runs of the periodic ``orchestrix.sweep_sagas`` task
    # (orchestrix_django.celery.saga_beat_schedule()): how soon a deadline is
    # noticed once nobody runs its saga, and the net for lost saga tasks.
    "SAGA_SWEEP_INTERVAL": 10,
    # Seconds an unfinished saga that nobody runs must have been idle before the
    # sweep sends it to the workers again (its task was lost).
    "SAGA_RESUME_AFTER": 60,
    # -- personal data (orchestrix_django.storage.personal_data; needs the "encryption" extra)
    # Encrypt the fields event classes declare personal (``personal_data``) with
    # a key per data subject, so that orchestrix_forget_subject makes them
    # unreadable (crypto-shredding). Once events are stored encrypted, keep it on.
    "ENCRYPT_PERSONAL_DATA": False,
    # The key that wraps every subject's key (base64 of 32 random bytes, e.g. read
    # from the environment), or None to store subject keys unwrapped. With it, a
    # copy of the database alone (a dump, a backup, a replica) reveals no
    # personal data; changing or losing it makes every personal field unreadable.
    "ENCRYPTION_MASTER_KEY": None,
    # -- the optional REST API (orchestrix_django.api; needs the "api" extra) --
    # DRF permission classes (dotted paths) every API endpoint requires. By
    # default the admin's rules: active staff users, the view permission of the
    # model behind an endpoint to read it, the change permission (as the admin's
    # buttons) to rebuild, pause, resume, retry or discard; superusers have all.
    # The project's REST_FRAMEWORK defaults are not used, so that loosening them
    # for the project's own API never opens this one.
    "API_PERMISSION_CLASSES": ["orchestrix_django.api.permissions.OrchestrixModelPermissions"],
    # DRF authentication classes (dotted paths) of the API: the admin's session
    # (unsafe requests then need the CSRF token) and HTTP Basic for scripts.
    "API_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    # Items per page of the API's lists when the request gives no ``limit``.
    "API_PAGE_SIZE": 100,
    # The largest ``limit`` the API honours; larger ones are capped to it.
    "API_MAX_PAGE_SIZE": 1000,
    # Seconds a rebuild asked through the API catches up within the request
    # after the reset; the runners (orchestrix_run or Celery) do the rest.
    # 0 only resets.
    "API_REBUILD_SECONDS": 5.0,
}

#: Settings whose values are dotted import paths (or lists of them).
IMPORT_STRINGS: frozenset[str] = frozenset(
    {
        "EVENT_REGISTRY",
        "UPCASTERS",
        "OBSERVABILITY",
        "PROJECTIONS",
        "SAGAS",
        "API_PERMISSION_CLASSES",
        "API_AUTHENTICATION_CLASSES",
    }
)

#: Import strings that name classes of Django REST framework: imported (and
#: checked) only where DRF is installed, since the API is optional.
API_IMPORT_STRINGS: frozenset[str] = frozenset(
    {"API_PERMISSION_CLASSES", "API_AUTHENTICATION_CLASSES"}
)


def perform_import(value: Any, setting_name: str) -> Any:
    """Import a dotted path (or each of a list of them); other values pass through."""
    if isinstance(value, str):
        return import_from_string(value, setting_name)
    if isinstance(value, list | tuple):
        return [
            import_from_string(item, setting_name) if isinstance(item, str) else item
            for item in value
        ]
    return value


def import_from_string(path: str, setting_name: str) -> Any:
    """Import ``package.module.attribute``, with an error that names the setting."""
    module_path, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_path)
        return getattr(module, attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ImproperlyConfigured(
            f"ORCHESTRIX[{setting_name!r}]: could not import {path!r}: "
            f"{type(error).__name__}: {error}"
        ) from error


class OrchestrixSettings:
    """Lazy, validated access to the ``ORCHESTRIX`` settings dict."""

    def __init__(
        self,
        user_settings: dict[str, Any] | None = None,
        defaults: dict[str, Any] | None = None,
        import_strings: Iterable[str] | None = None,
    ) -> None:
        self._user_settings = user_settings
        self.defaults = defaults if defaults is not None else DEFAULTS
        self.import_strings = frozenset(
            import_strings if import_strings is not None else IMPORT_STRINGS
        )
        self._cached: set[str] = set()

    @property
    def user_settings(self) -> dict[str, Any]:
        """The project's ``ORCHESTRIX`` dict (empty when it has none)."""
        if self._user_settings is None:
            from django.conf import settings

            value = getattr(settings, "ORCHESTRIX", {})
            if not isinstance(value, dict):
                raise ImproperlyConfigured("settings.ORCHESTRIX must be a dict")
            self._user_settings = value
        return self._user_settings

    def unknown_keys(self) -> list[str]:
        """Keys of ``ORCHESTRIX`` this version does not know (typos, usually)."""
        return sorted(key for key in self.user_settings if key not in self.defaults)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self.defaults:
            raise AttributeError(f"invalid Orchestrix setting: {name!r}")
        value = self.user_settings.get(name, self.defaults[name])
        if name in self.import_strings:
            value = perform_import(value, name)
        self._cached.add(name)
        setattr(self, name, value)
        return value

    def reload(self) -> None:
        """Forget cached values (after the Django settings changed)."""
        for name in self._cached:
            delattr(self, name)
        self._cached.clear()
        self._user_settings = None


orchestrix_settings = OrchestrixSettings()


@receiver(setting_changed)
def _reload_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORCHESTRIX":
        orchestrix_settings.reload()


T = TypeVar("T")


class ConfiguredObjects(Generic[T]):
    """Objects a setting lists (projections, sagas) by key: loaded once, forgotten on a change.

    ``missing`` is the KeyError message for an unknown key, with ``{!r}`` where
    the key goes (``"no projection {!r} is configured"``).
    """

    def __init__(self, load: Callable[[], dict[str, T]], *, missing: str) -> None:
        self._load = load
        self._missing = missing
        self._lock = threading.Lock()
        self._loaded: dict[str, T] | None = None
        setting_changed.connect(self._reload, weak=False)

    def all(self) -> dict[str, T]:
        """Every object by key (loaded now if not yet)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def get(self, key: str) -> T:
        """The object ``key``; KeyError says which keys exist."""
        loaded = self.all()
        found = loaded.get(key)
        if found is None:
            known = ", ".join(sorted(loaded)) or "none"
            raise KeyError(f"{self._missing.format(key)} (known: {known})")
        return found

    def reset(self) -> None:
        """Forget the loaded objects (the settings changed)."""
        with self._lock:
            self._loaded = None

    def _reload(self, *, setting: str, **kwargs: Any) -> None:
        if setting == "ORCHESTRIX":
            self.reset()
