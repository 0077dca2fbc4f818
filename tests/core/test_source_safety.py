"""The source never deserialises code, evaluates text, or builds SQL from values.

An AST scan of ``orchestrix/``, ``orchestrix_django/`` and ``example_project/``:

* no import of ``pickle``, ``marshal``, ``shelve`` (or their third-party
  cousins ``dill``, ``cloudpickle``, ``jsonpickle``), no ``yaml.load``;
* no call of ``eval``, ``exec`` or ``compile`` (``re.compile`` is a method),
  no ``os.system``/``os.popen``, no ``shell=True``;
* SQL is built from constants, with values as query parameters. Where a
  statement is formatted (an f-string, ``%`` or ``str.format`` on text that
  reads as SQL), every value put into it must be an identifier quoted by the
  database (``connection.ops.quote_name``), directly or through a variable
  assigned from such a call in the same function; anything else must be on
  :data:`ALLOWED` with the reason it is safe.

(Celery's pickle is refused at start-up by the system check
``orchestrix.E011``: see tests/django/test_security_checks.py.)
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("orchestrix", "orchestrix_django", "example_project")

FORBIDDEN_MODULES = frozenset({"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"})
FORBIDDEN_MODULES |= {"jsonpickle", "_pickle"}
FORBIDDEN_CALLS = frozenset({"eval", "exec", "compile", "__import__"})

#: Text that reads as SQL: a statement keyword followed by more SQL.
SQL = re.compile(
    r"\b(SELECT|INSERT\s+INTO|UPDATE|DELETE\s+FROM|CREATE|DROP|ALTER|WITH\s+RECURSIVE|"
    r"FROM|WHERE|VALUES|SET|ORDER\s+BY|LIMIT)\b"
)
#: Calls that quote an identifier for the database.
QUOTING = frozenset({"quote_name", "quote"})

#: Formatted SQL the rule above can't prove safe, each with why it is:
#: (path, function, the formatted value as written) -> reason. None so far:
#: every formatted statement of the code base passes the rule.
ALLOWED: dict[tuple[str, str, str], str] = {}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def python_files() -> list[Path]:
    files = [p for d in SCANNED for p in sorted((REPO_ROOT / d).rglob("*.py"))]
    assert len(files) > 40, files  # the scan sees the code base
    return files


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self.function = "<module>"
        self.quoted_names: set[str] = set()
        self.sql_constants: set[str] = set()
        self.allowed_used: set[tuple[str, str, str]] = set()
        self.checked = 0  # formatted SQL statements whose values were checked

    def flag(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    # -- scopes: which names hold quoted identifiers

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = (self.function, self.quoted_names)
        self.function = node.name
        self.quoted_names = set(outer[1]) | _names_assigned_from_quoting(node)
        self.generic_visit(node)
        self.function, self.quoted_names = outer

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Module(self, node: ast.Module) -> None:
        self.quoted_names = _names_assigned_from_quoting(node, top_level_only=True)
        self.sql_constants = {
            target.id
            for statement in node.body
            if isinstance(statement, ast.Assign)
            for target in statement.targets
            if isinstance(target, ast.Name) and _is_sql_text(statement.value)
        }
        self.generic_visit(node)

    def is_sql(self, node: ast.expr) -> bool:
        """Text that reads as SQL, a module constant of it, or a variable named for it."""
        if isinstance(node, ast.Name):
            lowered = node.id.lower()
            return node.id in self.sql_constants or "sql" in lowered or "query" in lowered
        return _is_sql_text(node)

    # -- pickle and friends

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                self.flag(node, f"imports {alias.name}")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
            self.flag(node, f"imports from {node.module}")
        self.generic_visit(node)

    # -- calls

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
            self.flag(node, f"calls {func.id}()")
        if isinstance(func, ast.Attribute) and _dotted(func) in {
            "builtins.eval",
            "builtins.exec",
            "os.system",
            "os.popen",
            "yaml.load",
            "yaml.unsafe_load",
        }:
            self.flag(node, f"calls {_dotted(func)}()")
        for keyword in node.keywords:
            if (
                keyword.arg == "shell"
                and isinstance(keyword.value, ast.Constant)
                and keyword.value.value is True
            ):
                self.flag(node, "runs a command through the shell (shell=True)")
        if isinstance(func, ast.Attribute) and func.attr == "format" and self.is_sql(func.value):
            values = [*node.args, *(k.value for k in node.keywords)]
            self.check_values(node, "str.format", values, _text(func.value) or _dotted(func.value))
        if isinstance(func, ast.Attribute) and func.attr == "extra":
            self.flag(node, "calls QuerySet.extra(): use expressions, or RawSQL with params")
        elif (
            (_name(func) == "RawSQL" or (isinstance(func, ast.Attribute) and func.attr == "raw"))
            and node.args
            and not isinstance(node.args[0], ast.Constant | ast.Name)
        ):
            self.flag(node, f"passes built SQL to {_name(func)}()")
        self.generic_visit(node)

    # -- formatted SQL

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        text = "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
        if SQL.search(text):
            values = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
            self.check_values(node, "an f-string", values, text)
        self.generic_visit(node)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Mod) and self.is_sql(node.left):
            self.flag(node, f"formats SQL with % ({_text(node.left)[:60]!r})")
        self.generic_visit(node)

    def check_values(self, node: ast.AST, how: str, values: list[ast.expr], text: str) -> None:
        self.checked += 1
        for value in values:
            if self.is_quoted(value):
                continue
            entry = (self.path, self.function, ast.unparse(value))
            if entry in ALLOWED:
                self.allowed_used.add(entry)
                continue
            self.flag(
                node,
                f"puts {ast.unparse(value)!r} into SQL with {how} in {self.function}() "
                f"({text.strip()[:60]!r}): pass values as query parameters, quote "
                "identifiers with connection.ops.quote_name",
            )

    def is_quoted(self, value: ast.expr) -> bool:
        if isinstance(value, ast.Constant):
            return True  # text written in the source
        if isinstance(value, ast.Name):
            return value.id in self.quoted_names
        if isinstance(value, ast.Call):
            if _name(value.func) in QUOTING:
                return True
            # ", ".join(quoted names): a join of quoted names, or a Name of them
            if _name(value.func) == "join" and value.args:
                return self.is_quoted_iterable(value.args[0])
        if isinstance(value, ast.Subscript):
            return self.is_quoted(value.value)
        if isinstance(value, ast.JoinedStr):  # f"{quote(name)} = %s"
            return all(
                self.is_quoted(v.value) for v in value.values if isinstance(v, ast.FormattedValue)
            )
        if isinstance(value, ast.DictComp):  # **{name: quote(name) for name in ...}
            return self.is_quoted(value.value)
        return False

    def is_quoted_iterable(self, value: ast.expr) -> bool:
        if isinstance(value, ast.Name):
            return value.id in self.quoted_names
        if isinstance(value, ast.ListComp | ast.GeneratorExp):
            return self.is_quoted(value.elt)
        if isinstance(value, ast.List | ast.Tuple):
            return all(self.is_quoted(e) for e in value.elts)
        return False


def _is_sql_text(node: ast.expr) -> bool:
    return bool(SQL.search(_text(node)))


def _text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return ""  # a constant's text is checked where it is formatted
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _text(node.left) + _text(node.right)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
    return ""


def _names_assigned_from_quoting(scope: ast.AST, *, top_level_only: bool = False) -> set[str]:
    """Names assigned (in ``scope``) a quoted identifier, or a list/join of them."""
    nodes = scope.body if top_level_only and isinstance(scope, ast.Module) else ast.walk(scope)
    quoted: set[str] = set()
    changed = True
    assignments = [
        n
        for n in nodes
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
    ]
    while changed:  # names built from names already known to be quoted
        changed = False
        for assignment in assignments:
            target = assignment.targets[0]
            assert isinstance(target, ast.Name)
            if target.id in quoted:
                continue
            probe = _Scanner("")
            probe.quoted_names = quoted
            value = assignment.value
            if (probe.is_quoted(value) and not isinstance(value, ast.Constant)) or (
                probe.is_quoted_iterable(value)
            ):
                quoted.add(target.id)
                changed = True
    return quoted


def scan(source: str, path: str) -> _Scanner:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner


def test_the_source_has_no_pickle_no_eval_and_no_sql_built_from_values() -> None:
    findings: list[Finding] = []
    used: set[tuple[str, str, str]] = set()
    checked = 0
    for file in python_files():
        path = file.relative_to(REPO_ROOT).as_posix()
        scanner = scan(file.read_text(encoding="utf-8"), path)
        findings += scanner.findings
        used |= scanner.allowed_used
        checked += scanner.checked
    # The store, the projection state store and the admin's pagination format
    # SQL with quoted names (7 statements): the scan really looked at them.
    assert checked >= 6, checked
    assert not findings, "unsafe code:\n" + "\n".join(map(str, findings))
    assert used == set(ALLOWED), f"allow-list entries no longer needed: {set(ALLOWED) - used}"


def test_the_scan_finds_what_it_looks_for() -> None:
    sample = textwrap.dedent(
        """
        import pickle
        from marshal import loads
        import os, subprocess, yaml

        def unsafe(cursor, connection, name, user_input):
            eval("1 + 1")
            exec(user_input)
            os.system("ls")
            subprocess.run("ls", shell=True)
            yaml.load(user_input)
            cursor.execute(f"SELECT * FROM t WHERE name = '{name}'")
            cursor.execute("DELETE FROM t WHERE id = %s" % user_input)
            cursor.execute("SELECT {} FROM t".format(user_input))
            Model.objects.extra(where=[user_input])

        UPDATE_QUERY = "UPDATE {table} SET {assignments}"

        def unsafe2(cursor, user_input):
            cursor.execute(UPDATE_QUERY.format(table="t", assignments=user_input))

        def safe(cursor, connection, model, value):
            quote = connection.ops.quote_name
            table = quote(model._meta.db_table)
            columns = ", ".join(quote(c) for c in ("a", "b"))
            cursor.execute(f"SELECT {columns} FROM {table} WHERE a = %s", [value])
            cursor.execute(f"UPDATE {connection.ops.quote_name('t')} SET a = 1")
            assignments = ", ".join(f"{quote(name)} = %s" for name in ("a", "b"))
            cursor.execute(UPDATE_QUERY.format(table=table, assignments=assignments), [1, 2])
            cursor.execute(select_sql.format(**{n: quote(n) for n in ("a", "b")}))
            pattern = re.compile("x")
            note = f"the value {value} is fine: this is not SQL"
        """
    )
    found = [str(f) for f in scan(sample, "sample.py").findings]
    expected = [
        "imports pickle",
        "imports from marshal",
        "calls eval()",
        "calls exec()",
        "calls os.system()",
        "shell=True",
        "calls yaml.load()",
        "puts 'name' into SQL with an f-string in unsafe()",
        "formats SQL with %",
        "puts 'user_input' into SQL with str.format in unsafe()",
        "calls QuerySet.extra()",
        "puts 'user_input' into SQL with str.format in unsafe2()",
    ]
    for what in expected:
        assert any(what in f for f in found), (what, found)
    assert not [f for f in found if "safe()" in f and "unsafe()" not in f], found
    assert len(found) == len(expected), found
