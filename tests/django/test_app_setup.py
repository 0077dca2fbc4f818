"""Installing the app: migrations match the models, ``migrate`` is all it takes, the
primary-key type is pinned, and the ``ORCHESTRIX`` settings object behaves like DRF's.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, models
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings
from django.test.utils import isolate_apps

from orchestrix.core.messaging.message import default_registry
from orchestrix_django.models import (
    AppendLock,
    DeadLetterRecord,
    EventRecord,
    ProjectionStateRecord,
    SagaStateRecord,
    SnapshotRecord,
    StreamRecord,
)
from orchestrix_django.settings import DEFAULTS, orchestrix_settings
from orchestrix_django.storage.append_only import guard_problems
from orchestrix_django.storage.events import DjangoEventStore
from tests.django import check_fixtures
from tests.django.testapp.events import AccountOpened

MODELS: list[type[models.Model]] = [
    EventRecord,
    StreamRecord,
    SnapshotRecord,
    AppendLock,
    ProjectionStateRecord,
    SagaStateRecord,
    DeadLetterRecord,
]


def orchestrix_tables() -> set[str]:
    tables = set(connection.introspection.table_names())
    return {m._meta.db_table for m in MODELS} & tables


def append_only_trigger_installed() -> bool:
    """Whether the triggers that keep events append-only are all there, enabled."""
    return EventRecord._meta.db_table in connection.introspection.table_names() and not (
        guard_problems(connection.alias)
    )


# -- migrations ------------------------------------------------------------------


@pytest.mark.django_db
def test_the_migrations_match_the_models() -> None:
    out = io.StringIO()
    # Raises SystemExit(1) when a model change has no migration.
    call_command(
        "makemigrations", "orchestrix_django", check=True, dry_run=True, stdout=out, stderr=out
    )
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db
def test_migrate_alone_installs_the_app() -> None:
    """INSTALLED_APPS + ``migrate``: every table is there and the append lock row exists."""
    loader = MigrationLoader(connection)
    ours = {name for app, name in loader.graph.nodes if app == "orchestrix_django"}
    applied = {name for app, name in loader.applied_migrations if app == "orchestrix_django"}
    assert ours
    assert applied == ours
    assert orchestrix_tables() == {m._meta.db_table for m in MODELS}
    assert AppendLock.objects.filter(pk=1).exists()
    assert append_only_trigger_installed()


@pytest.mark.django_db(transaction=True)
def test_the_append_lock_row_comes_back_after_a_flush() -> None:
    """``flush`` (what transactional tests do between tests) must not break appends."""
    call_command("flush", interactive=False, verbosity=0)
    assert AppendLock.objects.filter(pk=1).exists()
    opened = AccountOpened(account_id="after-flush", owner="Ada", initial_deposit=1.0)
    DjangoEventStore().save("after-flush", [opened])
    assert EventRecord.objects.filter(stream_id="after-flush").count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_migrations_can_be_unapplied_and_reapplied() -> None:
    """Also: while our tables are absent, migrating another app still works (every
    ``migrate`` sends ``post_migrate`` to every app, ours included)."""
    try:
        call_command("migrate", "orchestrix_django", "zero", verbosity=0)
        assert orchestrix_tables() == set()
        assert not append_only_trigger_installed()
        call_command("migrate", "contenttypes", verbosity=0)
        assert orchestrix_tables() == set()
    finally:
        call_command("migrate", "orchestrix_django", verbosity=0)
        # The test app's migrations that depend on ours were unapplied with them.
        call_command("migrate", "testapp", verbosity=0)
    assert orchestrix_tables() == {m._meta.db_table for m in MODELS}
    assert AppendLock.objects.filter(pk=1).exists()
    assert append_only_trigger_installed()


# -- the pinned primary-key type ---------------------------------------------------


def test_default_auto_field_is_pinned_by_the_app() -> None:
    config = apps.get_app_config("orchestrix_django")
    with override_settings(DEFAULT_AUTO_FIELD="django.db.models.AutoField"):
        assert config.default_auto_field == "django.db.models.BigAutoField"
        assert config._is_default_auto_field_overridden


def test_a_project_auto_field_setting_does_not_change_the_apps_models() -> None:
    """A model of the app without an explicit key gets a BigAutoField, whatever the
    project's ``DEFAULT_AUTO_FIELD`` (so no migration ever appears for the user)."""
    with (
        override_settings(DEFAULT_AUTO_FIELD="django.db.models.AutoField"),
        isolate_apps("orchestrix_django"),
    ):

        class Probe(models.Model):
            class Meta:
                app_label = "orchestrix_django"

        assert type(Probe._meta.pk) is models.BigAutoField
    # The real models set their keys explicitly, so they can never drift either.
    assert all(not m._meta.pk.auto_created for m in MODELS)


# -- the settings object -------------------------------------------------------------


def test_defaults_apply_to_keys_the_project_does_not_set() -> None:
    with override_settings(ORCHESTRIX={}):
        for name, default in DEFAULTS.items():
            if name in orchestrix_settings.import_strings:
                continue
            assert getattr(orchestrix_settings, name) == default, name
        assert orchestrix_settings.EVENT_REGISTRY is default_registry
        assert orchestrix_settings.UPCASTERS is None
        assert orchestrix_settings.OBSERVABILITY is None


def test_project_values_override_defaults_and_reload_on_change() -> None:
    with override_settings(ORCHESTRIX={"INSERT_BATCH_SIZE": 7, "DATABASE": "other"}):
        assert orchestrix_settings.INSERT_BATCH_SIZE == 7
        assert orchestrix_settings.DATABASE == "other"
        assert orchestrix_settings.READ_CHUNK_SIZE == 2000  # the default
        # A store made before the change sees it (nothing is read at construction).
        with override_settings(ORCHESTRIX={"INSERT_BATCH_SIZE": 9}):
            assert orchestrix_settings.INSERT_BATCH_SIZE == 9
            assert orchestrix_settings.DATABASE == "default"
        assert orchestrix_settings.INSERT_BATCH_SIZE == 7
    assert orchestrix_settings.INSERT_BATCH_SIZE == 500  # the default again


def test_a_store_follows_the_current_settings() -> None:
    store = DjangoEventStore()
    with override_settings(ORCHESTRIX={"DATABASE": "reports"}):
        assert store.using == "reports"
    assert store.using == "default"
    assert DjangoEventStore(using="reports").using == "reports"


def test_an_unknown_setting_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="INSERT_BATCH_SIZ"):
        orchestrix_settings.INSERT_BATCH_SIZ  # noqa: B018
    # Also when the project sets it: a typo is never silently honoured.
    with (
        override_settings(ORCHESTRIX={"INSERT_BATCH_SIZ": 3}),
        pytest.raises(AttributeError),
    ):
        orchestrix_settings.INSERT_BATCH_SIZ  # noqa: B018


def test_import_strings_are_imported() -> None:
    fixtures = "tests.django.check_fixtures"
    observability: Any = object()
    with override_settings(
        ORCHESTRIX={
            "EVENT_REGISTRY": f"{fixtures}.versioned_registry",
            "UPCASTERS": f"{fixtures}.complete_upcasters",
            # An object instead of a dotted path is taken as it is.
            "OBSERVABILITY": observability,
        }
    ):
        assert orchestrix_settings.EVENT_REGISTRY is check_fixtures.versioned_registry
        assert orchestrix_settings.UPCASTERS is check_fixtures.complete_upcasters
        assert orchestrix_settings.OBSERVABILITY is observability


def test_a_bad_import_string_names_the_setting() -> None:
    with (
        override_settings(ORCHESTRIX={"UPCASTERS": "tests.django.check_fixtures.nothing"}),
        pytest.raises(ImproperlyConfigured, match=r"ORCHESTRIX\['UPCASTERS'\].*nothing"),
    ):
        orchestrix_settings.UPCASTERS  # noqa: B018


def test_orchestrix_must_be_a_dict() -> None:
    with (
        override_settings(ORCHESTRIX="tests.settings"),
        pytest.raises(ImproperlyConfigured, match="must be a dict"),
    ):
        orchestrix_settings.DATABASE  # noqa: B018
