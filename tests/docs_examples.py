"""The code examples of ``docs/*.md``: how they are found, marked and run.

Shared by ``tests/core/test_docs.py`` (the framework-free examples, in the core
test process) and ``tests/django/test_docs.py`` (the Django ones, against the
test database); it imports nothing but the standard library and the core.

Every ```` ```python ```` block of the docs carries a marker, an HTML comment
on the last non-blank line before its fence (invisible in the built site)::

    <!-- test: core -->        run by the core tests
    <!-- test: django -->      run by the Django tests, with a database
    <!-- test: settings -->    Django settings: run alone as plain assignments, then
                               checked (every ORCHESTRIX key exists, ...); the page's
                               later django blocks run with its ORCHESTRIX
    <!-- test: skip REASON --> not run; the reason is required

A block without a marker, or with another one, fails the tests: no example is
left out silently. A page's core blocks run in order in one module, and so
do its django blocks, so a block may use what an earlier one defined. The
page-level comment ``<!-- test-modules: bank bank.events -->`` makes those
module names aliases of the page's module while it runs, so that
``from bank.events import AccountOpened`` finds what an earlier block defined
(and ``ORCHESTRIX["PROJECTIONS"] = ["bank.projections.balances"]`` imports it).
"""

from __future__ import annotations

import contextlib
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrix.core.common import observability
from orchestrix.core.messaging.message import default_registry

__all__ = [
    "DOCS_DIR",
    "KINDS",
    "Block",
    "blocks_of",
    "isolated_event_registry",
    "marker_problems",
    "page_modules",
    "pages",
    "restored_observability",
    "run_blocks",
    "stray_markers",
]

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"

#: The markers a python block may carry.
KINDS = ("core", "django", "settings", "skip")

#: The info strings of the blocks that must be marked.
PYTHON_LANGUAGES = frozenset({"python", "py", "python3"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})\s*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*test:\s*(?P<kind>\S+)(?P<argument>.*?)\s*-->\s*$")
_ANY_MARKER = re.compile(r"<!--\s*test:")
_MODULES = re.compile(r"<!--\s*test-modules:(?P<names>[^>]*?)-->")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a docs page."""

    page: str  # the file name, relative to docs/
    line: int  # the line of its opening fence (1-based)
    language: str  # the first word of the info string ("" when none)
    marker: str | None  # the marker's kind, None without a marker
    argument: str  # what follows the kind (the reason of a skip)
    code: str  # the block's text, dedented

    @property
    def where(self) -> str:
        """``docs/page.md:line``, for messages."""
        return f"docs/{self.page}:{self.line}"

    @property
    def is_python(self) -> bool:
        """Whether the block is Python (and so must be marked)."""
        return self.language in PYTHON_LANGUAGES


def pages() -> list[str]:
    """The Markdown pages of docs/, sorted."""
    return sorted(path.name for path in DOCS_DIR.glob("*.md"))


def blocks_of(page: str) -> list[Block]:
    """Every fenced code block of ``page``, in order, with its marker."""
    lines = (DOCS_DIR / page).read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not re.match(rf"^{re.escape(indent)}{fence}`*\s*$", lines[end]):
            line = lines[end]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            end += 1
        kind, argument = _marker_before(lines, index)
        blocks.append(
            Block(
                page=page,
                line=index + 1,
                language=info.split()[0].lower() if info else "",
                marker=kind,
                argument=argument,
                code="\n".join(body) + "\n",
            )
        )
        index = end + 1
    return blocks


def _marker_before(lines: list[str], fence_index: int) -> tuple[str | None, str]:
    """The marker on the last non-blank line before the fence, if that line is one."""
    previous = fence_index - 1
    while previous >= 0 and not lines[previous].strip():
        previous -= 1
    if previous < 0:
        return None, ""
    found = _MARKER.match(lines[previous])
    if found is None:
        return None, ""
    return found["kind"], found["argument"].strip()


def marker_problems(blocks: Iterable[Block]) -> list[str]:
    """What is wrong with the markers of ``blocks`` (empty when every block is fine)."""
    problems = []
    for block in blocks:
        if block.is_python and block.marker is None:
            problems.append(
                f"{block.where}: a python block without a marker "
                f"(put <!-- test: {'|'.join(KINDS)} --> on the line before it)"
            )
        elif block.marker is not None and block.marker not in KINDS:
            problems.append(f"{block.where}: unknown marker {block.marker!r} (use {KINDS})")
        elif block.marker is not None and not block.is_python:
            problems.append(
                f"{block.where}: a {block.language or 'plain'} block has a test marker; "
                "only python blocks are run"
            )
        elif block.marker == "skip" and not block.argument:
            problems.append(f"{block.where}: a skipped block must say why (test: skip REASON)")
        elif block.marker != "skip" and block.argument:
            problems.append(f"{block.where}: the marker {block.marker!r} takes no argument")
    return problems


def stray_markers(page: str) -> list[str]:
    """Marker comments that precede no code block (a typo in a fence, say)."""
    lines = (DOCS_DIR / page).read_text(encoding="utf-8").splitlines()
    used = {block.line for block in blocks_of(page) if block.marker is not None}
    problems = []
    for number, line in enumerate(lines, start=1):
        if not _ANY_MARKER.search(line):
            continue
        following = number  # the index of the next line
        while following < len(lines) and not lines[following].strip():
            following += 1
        if following + 1 not in used:
            problems.append(f"docs/{page}:{number}: a test marker that precedes no code block")
    return problems


def page_modules(page: str) -> list[str]:
    """The module names ``<!-- test-modules: ... -->`` of ``page`` declares."""
    text = (DOCS_DIR / page).read_text(encoding="utf-8")
    return [name for found in _MODULES.finditer(text) for name in found["names"].split()]


def run_blocks(
    blocks: Iterable[Block],
    module_name: str,
    aliases: Iterable[str] = (),
    *,
    before: Callable[[types.ModuleType, Block], None] | None = None,
    after: Callable[[types.ModuleType, Block], None] | None = None,
) -> types.ModuleType:
    """Run ``blocks`` in order in one new module, registered as ``module_name``
    (and as each of ``aliases``) in ``sys.modules`` while they run.

    Line numbers in tracebacks are those of the Markdown file. ``before`` and
    ``after`` are called around each block. Returns the module.
    """
    module = types.ModuleType(module_name, f"The examples of a docs page ({module_name}).")
    names = [module_name, *aliases]
    clashes = [name for name in names if name in sys.modules]
    if clashes:
        raise RuntimeError(f"{', '.join(clashes)} already imported: choose other example names")
    for name in names:
        sys.modules[name] = module
    try:
        for block in blocks:
            if before is not None:
                before(module, block)
            # Padded, so that a traceback names the line of the .md file.
            source = "\n" * block.line + block.code
            code = compile(source, str(DOCS_DIR / block.page), "exec")
            exec(code, module.__dict__)
            if after is not None:
                after(module, block)
    finally:
        for name in names:
            sys.modules.pop(name, None)
    return module


@contextlib.contextmanager
def isolated_event_registry() -> Iterator[None]:
    """Run with an empty default event registry, and put the previous one back after.

    The examples define event classes with everyday names (``AccountOpened``)
    that the test suites define too; in one registry the two would be a
    conflict (and every read of that type would refuse to decode). The
    registry has no public way to set its contents aside, hence its fields.
    """
    registry = default_registry
    with registry._lock:
        saved = (registry._classes, registry._latest, registry._conflicts)
        registry._classes, registry._latest, registry._conflicts = {}, {}, {}
    try:
        yield
    finally:
        with registry._lock:
            registry._classes, registry._latest, registry._conflicts = saved


@contextlib.contextmanager
def restored_observability() -> Iterator[None]:
    """Put the process-wide observability hooks back after an example replaced them."""
    saved = observability.get_observability()
    try:
        yield
    finally:
        observability._current = saved
