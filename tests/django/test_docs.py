"""The docs' Django examples run as written, and what the docs say about Django is real.

* the blocks marked ``django`` and ``settings`` (see :mod:`tests.docs_examples`)
  run page by page against the test database; a page's settings blocks are
  checked (every ``ORCHESTRIX`` key exists, every importable dotted path
  imports, every routed task exists) and their ``ORCHESTRIX`` applies to the
  page's later blocks; models an example declares get their tables;
* the settings reference the docs build generates covers every setting;
* every management command the docs mention exists, with every ``--flag``
  they give it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import re
import shlex
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.core.management import get_commands, load_command_class
from django.db import connection, models
from django.test import override_settings

from orchestrix_django import bus as bus_module
from orchestrix_django.settings import DEFAULTS, IMPORT_STRINGS
from tests.docs_examples import (
    DOCS_DIR,
    Block,
    blocks_of,
    isolated_event_registry,
    page_modules,
    pages,
    restored_observability,
    run_blocks,
)

#: The app the examples' models join (their module is put inside its package).
EXAMPLES_APP = "tests.django.testapp"

#: Settings whose values are dotted paths of modules rather than of objects.
MODULE_PATHS = ("EVENT_MODULES",)


def _django_pages() -> list[str]:
    return [
        page
        for page in pages()
        if any(block.marker in ("django", "settings") for block in blocks_of(page))
    ]


# ---------------------------------------------------------------- running a page


def _importable_root(path: str) -> bool:
    """Whether the top-level package of ``path`` exists here (the docs' own are fictional)."""
    root = path.split(".", 1)[0]
    return root in sys.modules or importlib.util.find_spec(root) is not None


def _orchestrix_task_names() -> set[str]:
    from orchestrix_django import tasks

    return {
        task.name
        for task in (
            tasks.advance_projection,
            tasks.catch_up_projections,
            tasks.run_saga_task,
            tasks.sweep_sagas,
        )
    }


def check_settings(block: Block, namespace: dict[str, Any]) -> None:
    """What a settings block sets must exist: keys, importable paths, task names."""
    where = block.where
    orchestrix = namespace.get("ORCHESTRIX")
    if orchestrix is not None:
        assert isinstance(orchestrix, dict), f"{where}: ORCHESTRIX is not a dict"
        unknown = sorted(set(orchestrix) - set(DEFAULTS))
        assert not unknown, f"{where}: ORCHESTRIX keys that do not exist: {unknown}"
        for key, value in orchestrix.items():
            if key not in IMPORT_STRINGS and key not in MODULE_PATHS and key != "MODULES":
                continue
            for path in value if isinstance(value, list | tuple) else [value]:
                if not isinstance(path, str) or not _importable_root(path):
                    continue
                if key in MODULE_PATHS:
                    importlib.import_module(path)
                else:
                    module, _, name = path.rpartition(".")
                    assert hasattr(importlib.import_module(module), name), f"{where}: {path}"
    installed = namespace.get("INSTALLED_APPS")
    if installed is not None:
        assert "orchestrix_django" in installed, f"{where}: INSTALLED_APPS lacks the app"
    routes = namespace.get("CELERY_TASK_ROUTES")
    if routes is not None:
        known = _orchestrix_task_names()
        unknown = sorted(n for n in routes if n.startswith("orchestrix.") and n not in known)
        assert not unknown, f"{where}: CELERY_TASK_ROUTES routes unknown tasks {unknown}"


class _Page:
    """The state of one page's run: its settings, its models' tables."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.stack = stack
        self.orchestrix: dict[str, Any] | None = None
        self.models: list[type[models.Model]] = []

    def before(self, module: types.ModuleType, block: Block) -> None:
        """Run a settings block on its own, check it, and apply its ORCHESTRIX."""
        if block.marker != "settings":
            return
        namespace: dict[str, Any] = {"__name__": "docs_settings"}
        exec(compile("\n" * block.line + block.code, str(DOCS_DIR / block.page), "exec"), namespace)
        check_settings(block, namespace)
        if "ORCHESTRIX" in namespace:
            self.orchestrix = {**(self.orchestrix or {}), **namespace["ORCHESTRIX"]}
            self.stack.enter_context(override_settings(ORCHESTRIX=dict(self.orchestrix)))

    def after(self, module: types.ModuleType, block: Block) -> None:
        """Create the tables of the models the block declared."""
        if block.marker != "django":
            return
        for value in list(vars(module).values()):
            if (
                isinstance(value, type)
                and issubclass(value, models.Model)
                and value.__module__ == module.__name__
                and not value._meta.abstract
                and value not in self.models
            ):
                with connection.schema_editor() as editor:
                    editor.create_model(value)
                self.models.append(value)

    def drop_models(self) -> None:
        """Drop the examples' tables and forget their models."""
        for model in reversed(self.models):
            with connection.schema_editor() as editor:
                editor.delete_model(model)
            apps.all_models[model._meta.app_label].pop(model._meta.model_name, None)
        if self.models:
            apps.clear_cache()


@contextlib.contextmanager
def _restored_celery_app() -> Iterator[None]:
    """Make the suite's Celery app current again after an example created its own."""
    from celery import _state

    current = _state.get_current_app()
    try:
        yield
    finally:
        current.set_current()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", _django_pages())
def test_django_examples_run(page: str, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [block for block in blocks_of(page) if block.marker in ("django", "settings")]
    stem = re.sub(r"\W", "_", Path(page).stem)
    # A fresh process-wide bus for the page's subscribers; the suite's comes back after.
    monkeypatch.setattr(bus_module, "_bus", None)
    with contextlib.ExitStack() as stack:
        stack.enter_context(isolated_event_registry())
        stack.enter_context(restored_observability())
        stack.enter_context(_restored_celery_app())
        state = _Page(stack)
        stack.callback(state.drop_models)
        module = run_blocks(
            blocks,
            f"{EXAMPLES_APP}.docs_{stem}",
            page_modules(page),
            before=state.before,
            after=state.after,
        )
        _check_page(page, module)


def _check_page(page: str, module: types.ModuleType) -> None:
    """What some pages' examples must have made, beyond running without an error."""
    if page == "celery.md":
        from orchestrix_django.celery import CATCH_UP_ENTRY, SWEEP_ENTRY

        app = module.app
        app.finalize()
        assert {CATCH_UP_ENTRY, SWEEP_ENTRY} <= set(app.conf.beat_schedule)


# ---------------------------------------------------------------- the settings reference


def _hooks() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("orchestrix_docs_hooks", DOCS_DIR / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Registered first: its dataclasses look their module up while being made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_settings_reference_covers_every_setting_with_its_comment() -> None:
    hooks = _hooks()
    settings = hooks.read_settings()
    assert [setting.name for setting in settings] == list(DEFAULTS)
    for setting in settings:
        assert setting.default == DEFAULTS[setting.name], setting.name
        assert setting.description, setting.name
        assert setting.dotted_path == (setting.name in IMPORT_STRINGS), setting.name
    rendered = hooks.render(settings)
    for name in DEFAULTS:
        assert f"| `{name}`" in rendered
    assert "every projection" not in rendered  # a sanity check of the parse: no stray text
    pages_asking = [
        page for page in pages() if hooks.SETTINGS_PLACEHOLDER in (DOCS_DIR / page).read_text()
    ]
    assert pages_asking == ["django.md"]
    markdown = hooks.on_page_markdown(
        (DOCS_DIR / "django.md").read_text(), page=None, config=None, files=None
    )
    assert hooks.SETTINGS_PLACEHOLDER not in markdown
    assert "| `API_REBUILD_SECONDS` |" in markdown


# ---------------------------------------------------------------- commands and their flags

#: Words of the form ``orchestrix_…`` in the docs that are not management commands.
NOT_COMMANDS = frozenset(
    {
        "orchestrix_django",
        "orchestrix_settings",
        "orchestrix_append",  # the PostgreSQL function
        "orchestrix_event",  # tables
        "orchestrix_stream",
        "orchestrix_snapshot_record",
        "orchestrix_projection_state",
        "orchestrix_saga_state",
        "orchestrix_dead_letter",
        "orchestrix_append_lock",
        "orchestrix_active_projection",
        "orchestrix_bench",
        "orchestrix_example",
        "orchestrix_ids",
        "orchestrix_correlation_id",
        "orchestrix_causation_id",
        "orchestrix_trace_id",
        "orchestrix_event_id",
        "orchestrix_saga_id",
        "orchestrix_refuse_event_mutation",  # the append-only guard's PostgreSQL objects
        "orchestrix_guard_event_triggers",
        "orchestrix_event_guard",
        "orchestrix_event_permit",
        "orchestrix_event_no_update",
        "orchestrix_event_no_delete",
        "orchestrix_event_no_truncate",
    }
)

#: Prometheus metric names (``orchestrix.events.stored`` -> ``orchestrix_events_stored_total``).
_METRIC = re.compile(
    r"^orchestrix_(events|snapshots|aggregates|handlers|projections|sagas|faults)_"
)

#: Commands of the example project (not installed in the test settings).
EXAMPLE_COMMANDS = {
    "orchestrix_demo": Path("example_project/demo/management/commands/orchestrix_demo.py"),
}

_WORD = re.compile(r"\borchestrix_[a-z_]+\b")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_SHELL = ("console", "bash", "sh", "shell", "text", "")


def _command_lines() -> list[tuple[str, str]]:
    """(page, text) of every shell line and inline code span of the docs."""
    found: list[tuple[str, str]] = []
    for page in pages():
        text = (DOCS_DIR / page).read_text(encoding="utf-8")
        for block in blocks_of(page):
            if block.language in _SHELL:
                found += [(page, line.lstrip("$ ")) for line in block.code.splitlines()]
        prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
        found += [(page, span) for span in _INLINE_CODE.findall(prose)]
    return found


def _options_of(name: str) -> set[str]:
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    return set(parser._option_string_actions)


def test_every_command_the_docs_mention_exists() -> None:
    ours = {name for name, app in get_commands().items() if app == "orchestrix_django"}
    # Django's commands that the app replaces (flush) have a section of their own.
    replaced = {name for name in ours if not name.startswith("orchestrix_")}
    commands_page = (DOCS_DIR / "commands.md").read_text(encoding="utf-8")
    assert all(f"\n## {name}\n" in commands_page for name in replaced), replaced
    installed = ours - replaced
    mentioned: dict[str, str] = {}
    for page in pages():
        for word in _WORD.findall((DOCS_DIR / page).read_text(encoding="utf-8")):
            mentioned.setdefault(word, page)
    unknown = {
        word: page
        for word, page in mentioned.items()
        if word not in installed
        and word not in NOT_COMMANDS
        and word not in EXAMPLE_COMMANDS
        and not _METRIC.match(word)
    }
    assert not unknown, f"neither a command nor a known name: {unknown}"
    root = DOCS_DIR.parent
    for name, path in EXAMPLE_COMMANDS.items():
        assert name not in mentioned or (root / path).is_file(), name
    assert installed <= set(mentioned), (
        f"commands the docs never mention: {installed - set(mentioned)}"
    )


def test_every_flag_the_docs_give_a_command_exists() -> None:
    installed = {name for name, app in get_commands().items() if app == "orchestrix_django"}
    checked = 0
    problems = []
    for page, line in _command_lines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        for index, word in enumerate(words):
            # `manage.py orchestrix_x --flag`, or a line or span that starts with the command.
            if word not in installed or (index and not words[index - 1].endswith("manage.py")):
                continue
            options = _options_of(word)
            for argument in words[index + 1 :]:
                if argument in ("|", "&&", ";", ">", "2>", "&"):
                    break
                if argument.startswith("-") and argument != "-":
                    flag = argument.split("=", 1)[0]
                    checked += 1
                    if flag not in options:
                        problems.append(f"docs/{page}: {word} has no option {flag} ({line})")
    assert checked > 10, "too few flags found: is the parsing broken?"
    assert not problems, "\n".join(problems)
