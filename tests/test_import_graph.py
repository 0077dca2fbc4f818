"""The import graph of both packages has no cycle, and the Django app's dependencies stay few.

Every import counts: module level, function level, ``TYPE_CHECKING`` blocks and
``importlib.import_module`` with a literal name. An import of ``a.b.c`` is an
arrow to the module ``a.b.c`` (not to the package ``a.b`` that Python loads on
the way), so a package's ``__init__`` may gather its submodules' public names
without closing a cycle.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrix", "orchestrix_django")

# What orchestrix_django may import besides the standard library and the two packages.
DJANGO_APP_DEPENDENCIES = {
    "asgiref",
    "celery",
    "cryptography",
    "django",
    "drf_spectacular",
    "opentelemetry",
    "prometheus_client",
    "rest_framework",
}


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` under ``root``."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(module: str, path: Path, known: Iterable[str] = ()) -> Iterator[str]:
    """Every absolute name ``module`` imports.

    ``from x import y`` gives ``x.y`` when that is one of the ``known`` modules, else ``x``.
    """
    known = set(known)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")  # relative to a package known at run time
        ):
            yield node.args[0].value


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of ``modules`` it imports (the longest known prefix of each name)."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for name in imported_names(module, path, modules):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_in_either_package() -> None:
    modules = module_files(REPO_ROOT, PACKAGES)
    assert len(modules) > 60, sorted(modules)  # the scan really saw both packages
    graph = import_graph(modules)
    assert sum(len(targets) for targets in graph.values()) > 200
    found = cycles(graph)
    assert not found, "import cycles (function-level imports count):\n" + "\n".join(
        " <-> ".join(cycle) for cycle in found
    )


def test_the_django_app_imports_only_its_declared_dependencies() -> None:
    allowed = set(sys.stdlib_module_names) | set(PACKAGES) | DJANGO_APP_DEPENDENCIES
    violations = sorted(
        f"{path.relative_to(REPO_ROOT)}: imports {name}"
        for module, path in module_files(REPO_ROOT, ["orchestrix_django"]).items()
        for name in imported_names(module, path)
        if name.split(".")[0] not in allowed
    )
    assert not violations, "\n".join(violations)


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(
            "def later():\n    from pkg import first\n",
            [["pkg.first", "pkg.second"]],
            id="a function-level import closes a cycle",
        ),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import first\n",
            [["pkg.first", "pkg.second"]],
            id="a TYPE_CHECKING import closes a cycle",
        ),
        pytest.param(
            "import importlib\nimportlib.import_module('pkg.first')\n",
            [["pkg.first", "pkg.second"]],
            id="import_module with a literal name closes a cycle",
        ),
        pytest.param("import os\n", [], id="no arrow back: no cycle"),
    ],
)
def test_the_scan_finds_every_kind_of_cycle(
    tmp_path: Path, second: str, expected: list[list[str]]
) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "first.py").write_text(textwrap.dedent("from pkg.second import thing\n"))
    (package / "second.py").write_text(second + "thing = 1\n")
    assert cycles(import_graph(module_files(tmp_path, ["pkg"]))) == expected


# Modules allowed past MAX_LINES: one concept needs the length (named in docs/architecture.md).
LONG_MODULES: dict[str, str] = {
    "orchestrix.core.eventsourcing.projection": "ProjectionEngine: one class, its batch loop, "
    "retries, failure modes and dead-letter retry over one checkpoint",
}
MAX_LINES = 600
MAX_TOP_LEVEL_MODULES = 12


def test_the_django_app_shows_its_architecture_in_packages() -> None:
    top_level = sorted(path.name for path in (REPO_ROOT / "orchestrix_django").glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level


def test_every_product_module_holds_one_concept_of_a_readable_length() -> None:
    too_long = sorted(
        f"{module}: {lines} lines"
        for module, path in module_files(REPO_ROOT, PACKAGES).items()
        if ".migrations." not in module
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
        and module not in LONG_MODULES
    )
    assert not too_long, "split these by concept:\n" + "\n".join(too_long)
