"""The docs' framework-free examples run as written, and the docs keep their promises.

* every python block of ``docs/*.md`` is marked (see :mod:`tests.docs_examples`);
* the blocks marked ``core`` run, page by page, in this (Django-free) process;
* the core API reference page imports every name of the reference from its path;
* every test that a page names as the proof of something exists.

The Django examples run in ``tests/django/test_docs.py``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.core.test_reference_examples import DOCUMENTED_IMPORTS
from tests.docs_examples import (
    DOCS_DIR,
    blocks_of,
    isolated_event_registry,
    marker_problems,
    page_modules,
    pages,
    restored_observability,
    run_blocks,
    stray_markers,
)

REPO_ROOT = DOCS_DIR.parent

#: ``tests/...py::test_name``, as the pages cite the tests that prove a guarantee.
TEST_REFERENCE = re.compile(r"(?P<path>tests/[\w/]+\.py)::(?P<name>test_\w+)")


def _pages_with(kind: str) -> list[str]:
    return [page for page in pages() if any(b.marker == kind for b in blocks_of(page))]


def test_the_docs_have_pages_and_examples() -> None:
    assert {"index.md", "getting-started.md", "core-api.md", "guarantees.md"} <= set(pages())
    assert _pages_with("core"), "no page has an example for the core tests"


def test_every_python_block_is_marked() -> None:
    problems = [problem for page in pages() for problem in marker_problems(blocks_of(page))]
    problems += [problem for page in pages() for problem in stray_markers(page)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", _pages_with("core"))
def test_core_examples_run(page: str) -> None:
    blocks = [block for block in blocks_of(page) if block.marker == "core"]
    module_name = "orchestrix_docs_" + re.sub(r"\W", "_", Path(page).stem)
    with isolated_event_registry(), restored_observability():
        run_blocks(blocks, module_name, page_modules(page))


def _imported_names(page: str) -> set[tuple[str, str]]:
    """``(module, name)`` of every ``from module import name`` in the page's run examples."""
    found: set[tuple[str, str]] = set()
    for block in blocks_of(page):
        if block.marker not in ("core", "django"):
            continue
        for node in ast.walk(ast.parse(block.code)):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.update((node.module, alias.name) for alias in node.names)
    return found


def _prose(page: str) -> str:
    """The page without its fenced code blocks."""
    text = (DOCS_DIR / page).read_text(encoding="utf-8")
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def test_the_core_api_page_covers_every_name_of_the_reference() -> None:
    # DOCUMENTED_IMPORTS lists every name of the core API reference with its path.
    wanted = {(module, name) for module, names in DOCUMENTED_IMPORTS.items() for name in names}
    imported = _imported_names("core-api.md")
    missing = sorted(f"from {module} import {name}" for module, name in wanted - imported)
    assert not missing, "core-api.md has no run example importing:\n" + "\n".join(missing)
    prose = _prose("core-api.md")
    undescribed = sorted({name for _, name in wanted if not re.search(rf"`{name}\b", prose)})
    assert not undescribed, f"core-api.md never describes (in `Name...`) {undescribed}"
    for module in DOCUMENTED_IMPORTS:
        assert f"`{module}`" in prose, f"core-api.md never names the module {module}"


def test_every_test_named_as_a_proof_exists() -> None:
    cited = [
        (page, found["path"], found["name"])
        for page in pages()
        for found in TEST_REFERENCE.finditer((DOCS_DIR / page).read_text(encoding="utf-8"))
    ]
    assert cited, "no page names a test"
    missing = []
    for page, path, name in cited:
        source = REPO_ROOT / path
        defined = set()
        if source.is_file():
            tree = ast.parse(source.read_text(encoding="utf-8"))
            defined = {
                node.name
                for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            }
        if name not in defined:
            missing.append(f"docs/{page} names {path}::{name}, which does not exist")
    assert not missing, "\n".join(missing)
