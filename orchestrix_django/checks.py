"""Django system checks: configuration mistakes reported at start-up, with ids.

Every check id (``orchestrix.E001`` to ``orchestrix.W022``), what it reports and how
to fix it is listed in docs/django.md ("Installation").
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from importlib.util import find_spec
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

from orchestrix.core.eventsourcing.versioning import UpcasterRegistry
from orchestrix.core.messaging.message import EventRegistry
from orchestrix_django.settings import API_IMPORT_STRINGS, DEFAULTS, orchestrix_settings
from orchestrix_django.storage.append_only import guard_problems

__all__ = ["check_append_only_guard", "check_celery_serializers", "check_configuration"]

#: What Celery and kombu call the pickle serializer: by name and by content type.
PICKLE = frozenset({"pickle", "application/x-python-serialize"})


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
    # Without Django REST framework nothing uses (or could import) the API's classes.
    api_installed = find_spec("rest_framework") is not None
    for name in sorted(orchestrix_settings.import_strings):
        if name in API_IMPORT_STRINGS and not api_installed:
            continue
        try:
            getattr(orchestrix_settings, name)
        except ImproperlyConfigured as error:
            errors.append(Error(str(error), id="orchestrix.E004"))
    for name in sorted(API_IMPORT_STRINGS):
        value = user.get(name, DEFAULTS[name])
        if not isinstance(value, list | tuple):
            errors.append(_bad_type(name, "a list of dotted paths of DRF classes", value))
    modules = user.get("EVENT_MODULES", [])
    if not isinstance(modules, list | tuple) or not all(isinstance(m, str) for m in modules):
        errors.append(_bad_type("EVENT_MODULES", "a list of module paths", modules))
    # A mistyped alias would otherwise only fail at the first save, in production.
    database = user.get("DATABASE", DEFAULTS["DATABASE"])
    if not isinstance(database, str) or database not in settings.DATABASES:
        aliases = ", ".join(repr(alias) for alias in settings.DATABASES)
        errors.append(_bad_type("DATABASE", f"an alias of DATABASES ({aliases})", database))
    for name in (
        "INSERT_BATCH_SIZE",
        "READ_CHUNK_SIZE",
        "MAX_READ_ALL_LIMIT",
        "PROJECTION_BATCH_SIZE",
        "API_PAGE_SIZE",
        "API_MAX_PAGE_SIZE",
    ):
        value = user.get(name, DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            errors.append(_bad_type(name, "a positive integer", value))
    page = user.get("API_PAGE_SIZE", DEFAULTS["API_PAGE_SIZE"])
    most = user.get("API_MAX_PAGE_SIZE", DEFAULTS["API_MAX_PAGE_SIZE"])
    if _positive_int(page) and _positive_int(most) and page > most:
        errors.append(_bad_type("API_PAGE_SIZE", f"at most API_MAX_PAGE_SIZE ({most})", page))
    rebuild_seconds = user.get("API_REBUILD_SECONDS", DEFAULTS["API_REBUILD_SECONDS"])
    if (
        isinstance(rebuild_seconds, bool)
        or not isinstance(rebuild_seconds, int | float)
        or not 0 <= rebuild_seconds < float("inf")
    ):
        errors.append(_bad_type("API_REBUILD_SECONDS", "a number of seconds >= 0", rebuild_seconds))
    poll_interval = user.get("POLL_INTERVAL", DEFAULTS["POLL_INTERVAL"])
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, int | float)
        or poll_interval <= 0
    ):
        errors.append(_bad_type("POLL_INTERVAL", "a positive number of seconds", poll_interval))
    stalled_after = user.get("STALLED_AFTER", DEFAULTS["STALLED_AFTER"])
    if stalled_after is not None and (
        isinstance(stalled_after, bool)
        or not isinstance(stalled_after, int | float)
        or not 0 < stalled_after < float("inf")
    ):
        errors.append(
            _bad_type("STALLED_AFTER", "None or a positive number of seconds", stalled_after)
        )
    return errors


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _positive_seconds(value: object) -> bool:
    """A number of seconds > 0 (a bool is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _user_settings() -> dict[str, Any] | None:
    """The project's ``ORCHESTRIX`` dict, or None when it is not a dict (E006 says so)."""
    try:
        return orchestrix_settings.user_settings
    except ImproperlyConfigured:
        return None


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


@register("orchestrix")
def check_projections(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``orchestrix.E008``: ``PROJECTIONS`` lists DjangoProjection objects with distinct ids."""
    from orchestrix_django.projections.definition import DjangoProjection

    try:
        configured = orchestrix_settings.PROJECTIONS
    except (ImproperlyConfigured, AttributeError):
        return []  # reported as E003/E004/E006 by check_configuration
    if not isinstance(configured, list | tuple):
        return [_bad_type("PROJECTIONS", "a list of DjangoProjection paths", configured)]
    errors: list[CheckMessage] = []
    seen: set[str] = set()
    for entry in configured:
        if not isinstance(entry, DjangoProjection):
            errors.append(
                Error(
                    f"ORCHESTRIX['PROJECTIONS'] lists {entry!r}, which is not a DjangoProjection",
                    hint="List the dotted paths of module-level DjangoProjection objects.",
                    id="orchestrix.E008",
                )
            )
        elif entry.projection_id in seen:
            errors.append(
                Error(
                    f"two projections in ORCHESTRIX['PROJECTIONS'] are called "
                    f"{entry.projection_id!r}",
                    hint="Each projection keeps its checkpoint under its id: give each its own.",
                    id="orchestrix.E008",
                )
            )
        else:
            seen.add(entry.projection_id)
    return errors


@register("orchestrix")
def check_wake_up(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``orchestrix.E009`` / ``W009``: the settings of the Celery wake-ups."""
    from django.core.checks import Warning as CheckWarning

    user = _user_settings()
    if user is None:
        return []
    errors: list[CheckMessage] = []

    def wrong(setting: str, wanted: str, value: object) -> None:
        errors.append(
            Error(f"ORCHESTRIX[{setting!r}] must be {wanted}, got {value!r}", id="orchestrix.E009")
        )

    mode = user.get("WAKE_UP", DEFAULTS["WAKE_UP"])
    if mode not in ("none", "celery"):
        wrong("WAKE_UP", '"none" or "celery"', mode)
    elif mode == "celery" and find_spec("celery") is None:
        errors.append(
            Error(
                'ORCHESTRIX["WAKE_UP"] is "celery" but Celery is not installed',
                hint="pip install 'orchestrix[celery]', or set WAKE_UP to \"none\".",
                id="orchestrix.E009",
            )
        )
    for name in ("CATCH_UP_INTERVAL", "WAKE_UP_TTL"):
        value = user.get(name, DEFAULTS[name])
        if not _positive_seconds(value):
            wrong(name, "a positive number of seconds", value)
    alias = user.get("WAKE_UP_CACHE", DEFAULTS["WAKE_UP_CACHE"])
    caches = getattr(settings, "CACHES", {})
    if not isinstance(alias, str) or alias not in caches:
        known = ", ".join(repr(a) for a in caches) or "none"
        wrong("WAKE_UP_CACHE", f"an alias of CACHES ({known})", alias)
    elif mode == "celery" and caches[alias].get("BACKEND", "").endswith("locmem.LocMemCache"):
        errors.append(
            CheckWarning(
                f"the wake-up cache {alias!r} is not shared between processes",
                hint="A worker could not clear the pending-wake-up marker a web process set, "
                "so wake-ups would wait for WAKE_UP_TTL. Use Redis, Memcached or the "
                "database cache.",
                id="orchestrix.W009",
            )
        )
    return errors


@register("orchestrix")
def check_sagas(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``orchestrix.E010``: ``SAGAS`` lists sagas the workers can run, with distinct types."""
    from orchestrix.core.execution.saga import Saga
    from orchestrix_django.sagas.definition import DjangoSaga

    user = _user_settings()
    if user is None:
        return []
    errors: list[CheckMessage] = []

    def wrong(message: str, hint: str | None = None) -> None:
        errors.append(Error(message, hint=hint, id="orchestrix.E010"))

    for name in ("SAGA_SWEEP_INTERVAL", "SAGA_RESUME_AFTER"):
        value = user.get(name, DEFAULTS[name])
        if not _positive_seconds(value):
            wrong(f"ORCHESTRIX[{name!r}] must be a positive number of seconds, got {value!r}")
    try:
        configured = orchestrix_settings.SAGAS
    except (ImproperlyConfigured, AttributeError):
        return errors  # reported as E003/E004 by check_configuration
    if not isinstance(configured, list | tuple):
        return [*errors, _bad_type("SAGAS", "a list of DjangoSaga paths", configured)]
    seen: set[str] = set()
    for entry in configured:
        if not isinstance(entry, Saga):
            wrong(
                f"ORCHESTRIX['SAGAS'] lists {entry!r}, which is not a saga",
                "List the dotted paths of module-level DjangoSaga objects.",
            )
            continue
        try:
            saga = DjangoSaga.from_saga(entry)
        except TypeError as error:
            wrong(str(error), "Use DjangoSaga, or state_store=DjangoSagaStateStore().")
            continue
        if saga.saga_type in seen:
            wrong(
                f"two sagas in ORCHESTRIX['SAGAS'] have the type {saga.saga_type!r}",
                "The type names a saga's stored state: give each saga its own.",
            )
        seen.add(saga.saga_type)
    return errors


@register("orchestrix")
def check_celery_serializers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``orchestrix.E011``: the Celery app runs no pickle.

    A worker that accepts pickle runs whatever code anyone who can write to
    its broker sends it. Orchestrix's tasks are sent as JSON whatever the
    settings, but the workers that run them also take every message their
    ``accept_content`` allows. So with ``ORCHESTRIX["WAKE_UP"] = "celery"``
    (the setting under which Orchestrix sends tasks: projection wake-ups and
    sagas) the app must neither accept pickle (``accept_content``,
    ``result_accept_content``) nor send it (``task_serializer``,
    ``result_serializer``, ``event_serializer``).

    The app checked is Celery's current app: the project's own, which
    ``proj/__init__.py`` imports (a ``Celery()`` becomes the current app when it
    is created), so that the web processes send their tasks through it. With
    ``WAKE_UP = "none"`` Orchestrix sends no task and checks nothing.
    """
    try:
        user = orchestrix_settings.user_settings
    except ImproperlyConfigured:
        return []  # ORCHESTRIX is not a dict: E006 says so
    if user.get("WAKE_UP", DEFAULTS["WAKE_UP"]) != "celery" or find_spec("celery") is None:
        return []  # not Orchestrix's business, or E009 reports the missing Celery
    from celery.app import app_or_default

    app = app_or_default()
    conf = app.conf
    errors: list[CheckMessage] = []
    for name in ("accept_content", "result_accept_content"):
        accepted = conf.get(name) or ()
        if isinstance(accepted, str):
            accepted = (accepted,)
        if any(str(kind).lower() in PICKLE for kind in accepted):
            errors.append(_pickle_error(app, name, list(accepted)))
    for name in ("task_serializer", "result_serializer", "event_serializer"):
        serializer = conf.get(name)
        if str(serializer).lower() in PICKLE:
            errors.append(_pickle_error(app, name, serializer))
    return errors


def _pickle_error(app: Any, name: str, value: object) -> Error:
    return Error(
        f"the Celery app {app.main!r} has {name} = {value!r}: pickle lets anyone who can "
        "write to the broker run code in the workers",
        hint=f"Use JSON only: {name} = "
        + ('["json"]' if name.endswith("accept_content") else '"json"')
        + f" (CELERY_{name.upper()} with config_from_object(..., namespace='CELERY')). "
        "Orchestrix's tasks pass ids only, in JSON.",
        id="orchestrix.E011",
    )


@register("orchestrix")
def check_personal_data(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``orchestrix.E012`` / ``W012``: the encryption of personal data (see personal_data)."""
    from django.core.checks import Warning as CheckWarning

    from orchestrix_django.storage.personal_fields import personal_fields
    from orchestrix_django.storage.subject_keys import parse_master_key

    try:
        user = orchestrix_settings.user_settings
        registry = orchestrix_settings.EVENT_REGISTRY
    except (ImproperlyConfigured, AttributeError):
        return []  # reported by check_configuration
    errors: list[CheckMessage] = []
    enabled = user.get("ENCRYPT_PERSONAL_DATA", DEFAULTS["ENCRYPT_PERSONAL_DATA"])
    if not isinstance(enabled, bool):
        errors.append(
            Error(
                f"ORCHESTRIX['ENCRYPT_PERSONAL_DATA'] must be True or False, got {enabled!r}",
                id="orchestrix.E012",
            )
        )
    elif enabled and find_spec("cryptography") is None:
        errors.append(
            Error(
                "ORCHESTRIX['ENCRYPT_PERSONAL_DATA'] is on and the cryptography package is "
                "not installed",
                hint="pip install 'orchestrix[encryption]'",
                id="orchestrix.E012",
            )
        )
    master = user.get("ENCRYPTION_MASTER_KEY", DEFAULTS["ENCRYPTION_MASTER_KEY"])
    try:
        parse_master_key(master)
    except ImproperlyConfigured as error:
        errors.append(Error(str(error), id="orchestrix.E012"))
    if enabled is True and master is None:
        errors.append(
            CheckWarning(
                "ORCHESTRIX['ENCRYPT_PERSONAL_DATA'] is on without an ENCRYPTION_MASTER_KEY: "
                "the subjects' keys are stored unwrapped next to the data they encrypt",
                hint="A copy of the database (a dump, a backup) then reveals the personal "
                "data. Set ENCRYPTION_MASTER_KEY from the environment or a secrets manager.",
                id="orchestrix.W012",
            )
        )
    if isinstance(registry, EventRegistry):
        for event_class in registry:
            try:
                personal_fields(event_class)
            except TypeError as error:
                errors.append(
                    Error(
                        str(error),
                        hint="See orchestrix_django.storage.personal_data: personal_data names the "
                        "personal fields, data_subject the field with the subject's id.",
                        id="orchestrix.E012",
                    )
                )
    return errors


@register("orchestrix", deploy=True)
def check_workers(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``orchestrix.W020`` / ``W021``: every queue the Orchestrix tasks go to has a worker.

    Only with ``ORCHESTRIX["WAKE_UP"] = "celery"``, and only in ``manage.py
    check --deploy`` (the deploy checks): asking the workers means waiting
    :data:`~orchestrix_django.queues.DEFAULT_TIMEOUT` for their answers, too
    long for every ``manage.py`` command, and the answer is about the running
    system, not the code. Warnings, not errors: a deploy may start the
    workers after this check, and an unreachable broker (W021) never makes the
    check itself fail or hang (one connection attempt, no retries).
    ``orchestrix_status --check`` reports the same and exits 1 on it.
    """
    from django.core.checks import Warning as CheckWarning

    try:
        user = orchestrix_settings.user_settings
    except ImproperlyConfigured:
        return []  # ORCHESTRIX is not a dict: E006 says so
    if user.get("WAKE_UP", DEFAULTS["WAKE_UP"]) != "celery" or find_spec("celery") is None:
        return []  # no Celery workers to check, or E009 reports the missing Celery
    from orchestrix_django.queues import inspect_queues

    try:
        report = inspect_queues()
    except (ImproperlyConfigured, TypeError, ValueError):
        return []  # PROJECTIONS or SAGAS are wrong: E008 and E010 say so
    if report.broker_error is not None:
        return [
            CheckWarning(
                report.problems()[0],
                hint="Start the broker, or fix CELERY_BROKER_URL; until then the "
                "projections only move with orchestrix_run.",
                id="orchestrix.W021",
            )
        ]
    return [
        CheckWarning(
            f"{', '.join(tasks)} {'is' if len(tasks) == 1 else 'are'} routed to queue "
            f"{queue!r}, which no running Celery worker consumes",
            hint=f"Start a worker for it: {report.worker_command()} (or drop the route "
            "from CELERY_TASK_ROUTES). Until then its tasks wait in the broker.",
            id="orchestrix.W020",
        )
        for queue, tasks in sorted(report.unconsumed.items())
    ]


#: The migration that installs the database guard of stored events.
_GUARD_MIGRATION = ("orchestrix_django", "0006_event_guard_on_every_database")


@register(Tags.database)
def check_append_only_guard(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """``orchestrix.W022``: on each migrated database, the append-only triggers are in place.

    A database check (Django runs it for ``check --database`` and ``migrate``):
    it reads the schema. It is tagged ``database`` only, not ``orchestrix``:
    from Django 6, ``run_checks(tags=...)`` runs a selected database check
    against every alias, also where no database may be queried. Where the user
    that migrated may not create triggers (MariaDB/MySQL with binary logging and
    without SUPER), ``migrate`` succeeds and this warning says how to install them.
    """
    warnings: list[CheckMessage] = []
    for using in databases or ():
        recorder = MigrationRecorder(connections[using])
        if not recorder.has_table() or _GUARD_MIGRATION not in recorder.applied_migrations():
            continue
        problems = guard_problems(using)
        if problems:
            warnings.append(
                Warning(
                    f"stored events on database {using!r} are kept append-only by the ORM "
                    f"only: {'; '.join(problems)}",
                    hint="Raw SQL and other clients can change history. Install the triggers "
                    "with `python manage.py orchestrix_append_only --install` as a database "
                    "user who may create triggers (on MariaDB/MySQL with binary logging: "
                    "SUPER, or log_bin_trust_function_creators = 1), or give a DBA the SQL "
                    "of `python manage.py orchestrix_append_only --sql`. Meanwhile grant the "
                    "application only SELECT and INSERT on orchestrix_event.",
                    id="orchestrix.W022",
                )
            )
    return warnings
