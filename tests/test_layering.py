"""The core package depends on the standard library only.

``orchestrix/`` must stay usable without Django, Celery or any other
third-party package. Two independent checks prove it:

* importing every module of the package in a fresh interpreter pulls in none
  of the framework's optional dependencies;
* every import statement under ``orchestrix/`` (including ``TYPE_CHECKING``
  blocks and function-local imports) names either ``orchestrix`` itself or a
  standard-library module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CORE_DIR = REPO_ROOT / "orchestrix"

FORBIDDEN = ("django", "celery", "rest_framework", "kombu", "psycopg", "orchestrix_django")

IMPORT_EVERYTHING = textwrap.dedent(
    """
    import importlib
    import pkgutil
    import sys

    sys.path.insert(0, {root!r})
    import orchestrix

    assert orchestrix.__file__.startswith({root!r}), orchestrix.__file__

    def fail(name):
        raise ImportError(f"cannot import package {{name}}")

    imported = ["orchestrix"]
    for info in pkgutil.walk_packages(orchestrix.__path__, "orchestrix.", onerror=fail):
        importlib.import_module(info.name)
        imported.append(info.name)

    loaded = sorted(
        name for name in sys.modules
        if name.split(".")[0] in {forbidden!r}
    )
    assert not loaded, f"the core imported third-party modules: {{loaded}}"
    print("\\n".join(imported))
    """
)


def test_importing_every_core_module_pulls_in_no_framework() -> None:
    code = IMPORT_EVERYTHING.format(root=str(REPO_ROOT), forbidden=FORBIDDEN)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    imported = set(result.stdout.split())
    # The walk really covered the package: these modules exist from the start.
    assert {
        "orchestrix.core.common.validation",
        "orchestrix.core.common.logging",
        "orchestrix.core.common.module",
        "orchestrix.core.messaging.command_handler",
        "orchestrix.core.eventsourcing.event_store",
        "orchestrix.infrastructure.memory.observability",
    } <= imported
    on_disk = {_module_name(path) for path in CORE_DIR.rglob("*.py")}
    assert on_disk <= imported, f"modules the walk did not import: {sorted(on_disk - imported)}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``tree``; relative ones map to orchestrix."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # `from . import x` stays inside the package
                found.append((node.lineno, "orchestrix"))
            else:
                assert node.module is not None
                found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and _called_name(node.func) in {"import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            # importlib.import_module("django...") with a literal name.
            name = node.args[0].value
            found.append((node.lineno, "orchestrix" if name.startswith(".") else name))
    return found


def _called_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def test_core_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"orchestrix", "__future__"}
    files = sorted(CORE_DIR.rglob("*.py"))
    assert len(files) >= 10, files
    violations: list[str] = []
    import_count = 0
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, module in _imported_modules(tree):
            import_count += 1
            if module.split(".")[0] not in allowed:
                violations.append(f"{path.relative_to(REPO_ROOT)}:{line}: imports {module}")
    assert import_count > len(files)  # the scan really saw the imports
    assert not violations, "the core may import only the standard library:\n" + "\n".join(
        violations
    )


def test_the_scan_catches_third_party_imports() -> None:
    sample = textwrap.dedent(
        """
        from __future__ import annotations
        import os.path
        from typing import TYPE_CHECKING
        from . import sibling
        from orchestrix.core import x
        if TYPE_CHECKING:
            from django.db import models
        def later():
            import celery
            importlib.import_module("rest_framework.views")
        """
    )
    modules = sorted(name for _, name in _imported_modules(ast.parse(sample)))
    assert modules == sorted(
        [
            "__future__",
            "os.path",
            "typing",
            "orchestrix",
            "orchestrix.core",
            "django.db",
            "celery",
            "rest_framework.views",
        ]
    )
    allowed = set(sys.stdlib_module_names) | {"orchestrix"}
    assert sorted(m for m in modules if m.split(".")[0] not in allowed) == [
        "celery",
        "django.db",
        "rest_framework.views",
    ]
