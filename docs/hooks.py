"""MkDocs hooks of the Orchestrix docs (registered in ``mkdocs.yml`` under ``hooks:``).

The settings reference is generated at build time from the source of
``orchestrix_django/settings.py``: every key of ``DEFAULTS``, its default and the
comment lines above it. A page asks for it with the line
``<!-- orchestrix: settings-reference -->``; since it is made on each build,
it can never be stale. Only the standard library is used (the source is read
with ``ast`` and ``tokenize``, not imported), so building the docs needs no
Django.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS_PLACEHOLDER", "Setting", "on_page_markdown", "read_settings", "render"]

#: The line a page puts where the settings reference goes.
SETTINGS_PLACEHOLDER = "<!-- orchestrix: settings-reference -->"

CONF_PATH = Path(__file__).resolve().parents[1] / "orchestrix_django" / "settings.py"

#: A comment line that opens a group of settings: ``# -- the optional REST API --``.
_SECTION = re.compile(r"^--\s*(?P<title>.+?)\s*--$")
#: reStructuredText literals (````x````) become Markdown code (```x```).
_RST_LITERAL = re.compile(r"``(.+?)``")


@dataclass(frozen=True)
class Setting:
    """One key of ``DEFAULTS``: its default, what its comment says, and its group."""

    name: str
    default: Any
    description: str
    section: str
    dotted_path: bool


def read_settings(path: Path = CONF_PATH) -> list[Setting]:
    """The settings of ``DEFAULTS`` in ``path``, in source order."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    comments = _comments_by_line(source)
    defaults = _assigned_value(tree, "DEFAULTS")
    if not isinstance(defaults, ast.Dict):
        raise ValueError(f"{path}: DEFAULTS is not a dict literal")
    import_strings = set(ast.literal_eval(_set_literal(_assigned_value(tree, "IMPORT_STRINGS"))))
    settings: list[Setting] = []
    section = "General"
    for key, value in zip(defaults.keys, defaults.values, strict=True):
        if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
            raise ValueError(f"{path}:{value.lineno}: a DEFAULTS key that is not a string")
        lines = _comment_block_above(comments, key.lineno)
        text: list[str] = []
        for line in lines:
            heading = _SECTION.match(line)
            if heading is not None:
                section = heading["title"]
            else:
                text.append(line)
        if not text:
            raise ValueError(f"{path}:{key.lineno}: setting {key.value} has no comment")
        settings.append(
            Setting(
                name=key.value,
                default=ast.literal_eval(value),
                description=_RST_LITERAL.sub(r"`\1`", " ".join(text)),
                section=section,
                dotted_path=key.value in import_strings,
            )
        )
    return settings


def _comments_by_line(source: str) -> dict[int, str]:
    """Line number -> text of each line that holds nothing but a comment."""
    found: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and not token.line[: token.start[1]].strip():
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


def _comment_block_above(comments: dict[int, str], line: int) -> list[str]:
    """The comment lines directly above ``line``, top to bottom."""
    block: list[str] = []
    number = line - 1
    while number in comments:
        block.insert(0, comments[number])
        number -= 1
    return block


def _assigned_value(tree: ast.Module, name: str) -> ast.expr:
    """The value of the module-level assignment to ``name``."""
    for node in tree.body:
        if isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name) and node.target.id == name and node.value:
                return node.value
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return node.value
    raise ValueError(f"{CONF_PATH} assigns no {name}")


def _set_literal(node: ast.expr) -> ast.expr:
    """``frozenset({...})`` -> the set literal inside it."""
    if isinstance(node, ast.Call) and node.args:
        return node.args[0]
    return node


def render(settings: list[Setting]) -> str:
    """The settings reference as Markdown: one table per group of settings."""
    out: list[str] = []
    section = None
    for setting in settings:
        if setting.section != section:
            section = setting.section
            title = _RST_LITERAL.sub(r"`\1`", section[0].upper() + section[1:])
            out += ["", f"### {title}", ""]
            out += ["| Setting | Default | What it is |", "|---|---|---|"]
        default = f"`{setting.default!r}`"
        kind = " *(dotted path)*" if setting.dotted_path else ""
        description = setting.description.replace("|", "\\|")
        out.append(f"| `{setting.name}`{kind} | {default} | {description} |")
    return "\n".join(out).strip() + "\n"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the settings reference where a page asks for it."""
    if SETTINGS_PLACEHOLDER not in markdown:
        return markdown
    return markdown.replace(SETTINGS_PLACEHOLDER, render(read_settings()))
