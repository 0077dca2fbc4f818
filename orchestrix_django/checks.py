"""Django system checks: configuration mistakes reported at start-up, with ids.

* ``orchestrix.E001`` two event classes claim one ``type`` and schema version.
* ``orchestrix.E002`` an upcaster chain has a missing link.
* ``orchestrix.E003`` ``ORCHESTRIX`` has a key this version does not know.
* ``orchestrix.E004`` a setting names something that cannot be imported.
* ``orchestrix.E005`` ``USE_TZ`` is off (every timestamp must be aware UTC).
* ``orchestrix.E006`` a setting has a value of the wrong kind.
* ``orchestrix.E007`` an ``ORCHESTRIX["MODULES"]`` entry cannot be wired (it does not
  import, has no ``register(bus, store)`` method, or is a class that needs arguments).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured

from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.serialization.registry import EventRegistry
from orchestrix_django.conf import DEFAULTS, orchestrix_settings

__all__ = ["check_configuration"]


@register("orchestrix")
def check_configuration(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Run every Orchestrix check."""
    errors: list[CheckMessage] = []
    errors += _check_settings()
    if any(e.id in ("orchestrix.E003", "orchestrix.E004", "orchestrix.E006") for e in errors):
        return errors
    errors += _check_event_modules()
    registry = orchestrix_settings.EVENT_REGISTRY
    if not isinstance(registry, EventRegistry):
        return [*errors, _bad_type("EVENT_REGISTRY", "an EventRegistry", registry)]
    for conflict in registry.conflicts():
        errors.append(
            Error(
                str(conflict),
                hint="Two event classes with one `type` would decode stored events "
                "into the wrong class. Rename one class or set its `type`.",
                id="orchestrix.E001",
            )
        )
    upcasters = orchestrix_settings.UPCASTERS
    if upcasters is not None:
        if not isinstance(upcasters, UpcasterRegistry):
            return [*errors, _bad_type("UPCASTERS", "an UpcasterRegistry", upcasters)]
        for problem in upcasters.check(registry):
            errors.append(
                Error(
                    str(problem),
                    hint="Register an upcaster for every step from each old schema "
                    "version to the latest one.",
                    id="orchestrix.E002",
                )
            )
    if not settings.USE_TZ:
        errors.append(
            Error(
                "USE_TZ is False",
                hint="Orchestrix stores timezone-aware UTC timestamps: set USE_TZ = True.",
                id="orchestrix.E005",
            )
        )
    return errors


def _check_settings() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    try:
        user = orchestrix_settings.user_settings
    except ImproperlyConfigured as error:
        return [Error(str(error), id="orchestrix.E006")]
    for key in orchestrix_settings.unknown_keys():
        errors.append(
            Error(
                f"ORCHESTRIX has an unknown key {key!r}",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="orchestrix.E003",
            )
        )
    if errors:
        return errors
    for name in sorted(orchestrix_settings.import_strings):
        try:
            getattr(orchestrix_settings, name)
        except ImproperlyConfigured as error:
            errors.append(Error(str(error), id="orchestrix.E004"))
    modules = user.get("EVENT_MODULES", [])
    if not isinstance(modules, list | tuple) or not all(isinstance(m, str) for m in modules):
        errors.append(_bad_type("EVENT_MODULES", "a list of module paths", modules))
    # A mistyped alias would otherwise only fail at the first save, in production.
    database = user.get("DATABASE", DEFAULTS["DATABASE"])
    if not isinstance(database, str) or database not in settings.DATABASES:
        aliases = ", ".join(repr(alias) for alias in settings.DATABASES)
        errors.append(_bad_type("DATABASE", f"an alias of DATABASES ({aliases})", database))
    for name in ("INSERT_BATCH_SIZE", "READ_CHUNK_SIZE", "MAX_READ_ALL_LIMIT"):
        value = user.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(_bad_type(name, "a positive integer", value))
    poll_interval = user.get("POLL_INTERVAL", DEFAULTS["POLL_INTERVAL"])
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, int | float)
        or poll_interval <= 0
    ):
        errors.append(_bad_type("POLL_INTERVAL", "a positive number of seconds", poll_interval))
    return errors


def _check_event_modules() -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for module in orchestrix_settings.EVENT_MODULES:
        try:
            importlib.import_module(module)
        except ImportError as error:
            errors.append(
                Error(
                    f"ORCHESTRIX['EVENT_MODULES']: cannot import {module!r}: {error}",
                    id="orchestrix.E004",
                )
            )
    return errors


def _bad_type(setting: str, wanted: str, value: object) -> Error:
    return Error(
        f"ORCHESTRIX[{setting!r}] must be {wanted}, got {value!r}",
        id="orchestrix.E006",
    )


@register("orchestrix")
def check_modules(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``orchestrix.E007``: every ``MODULES`` entry can be registered with the bus.

    ``AppConfig.ready()`` skips the entries that can't (a start-up crash would
    hide every other problem); this check is where they are reported.
    """
    from orchestrix_django.bus import module_problems

    try:
        problems = module_problems()
    except ImproperlyConfigured:
        return []  # ORCHESTRIX is not a dict: E006 says so
    return [
        Error(
            problem,
            hint="Each MODULES entry is the dotted path of an object with a "
            "register(bus, store) method (the Module protocol), or of a class "
            "whose instances have one and that takes no constructor arguments.",
            id="orchestrix.E007",
        )
        for problem in problems
    ]
