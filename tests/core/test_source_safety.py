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
  assigned from such a call in the same function, or text written in the
  source: a literal, a module constant bound once to a literal (or a tuple of
  them), a loop variable over a literal tuple of such text, ``str.format`` or
  ``str.replace`` of such text with such text, or ``len()`` (an int). A name
  counts only when *every* binding of it in its scope is one of these, so a
  later assignment, a parameter or an import of the same name disqualifies it.
  Anything else must be on :data:`ALLOWED` with the reason it is safe.

(Celery's pickle is refused at start-up by the system check
``orchestrix.E011``: see tests/django/test_security_checks.py.)
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable
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
#: (path, function, the formatted value as written) -> reason.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("orchestrix_django/storage/append_only.py", "_pg_guard_sql", "expected"): (
        "hashlib.md5(...).hexdigest() of the trigger function's source: only the "
        "characters 0-9a-f, compared with md5(prosrc) in the event trigger"
    ),
}
#: Methods of ``str`` whose result, on source text with source text arguments, is source text.
_TEXT_METHODS = frozenset({"format", "replace"})


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
        self.quoted_names: set[str] = set()  # bound only to quoted names or source text
        self.source_names: set[str] = set()  # bound only to source text
        self.constants: dict[str, ast.expr] = {}  # module constants: name -> literal
        self.bound_outside: set[str] = set()  # names bound in the enclosing scopes
        self.len_is_builtin = True
        self.sql_constants: set[str] = set()
        self.allowed_used: set[tuple[str, str, str]] = set()
        self.checked = 0  # formatted SQL statements whose values were checked

    def flag(self, node: ast.AST, what: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), what))

    # -- scopes: which names hold quoted identifiers

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer = (
            self.function,
            self.quoted_names,
            self.source_names,
            self.bound_outside,
            self.constants,
        )
        self.function = node.name
        bindings = _bindings(node, nested=True)
        # A local of a constant's name hides the constant.
        self.constants = {n: v for n, v in self.constants.items() if n not in bindings}
        self.enter_scope(node, bindings)
        self.generic_visit(node)
        (
            self.function,
            self.quoted_names,
            self.source_names,
            self.bound_outside,
            self.constants,
        ) = outer

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def enter_scope(self, scope: ast.AST, bindings: dict[str, list[ast.AST]]) -> None:
        """Work out which names of a scope are bound only to source text, or to quoted names.

        A name bound in the scope counts when every binding of it is a plain
        assignment (or a loop over a literal tuple) of such a value, and the
        enclosing scopes bind it to such a value too, or not at all (a
        comprehension's variable does not leak out of it).
        """
        values = _bound_values(scope, bindings, self.constants)
        bound_outside = self.bound_outside
        for attribute, accepts in (
            ("source_names", self.is_source_text),
            ("quoted_names", self.is_quoted_or_list_of_them),
        ):
            outer: set[str] = getattr(self, attribute)
            candidates = {n for n in values if n not in bound_outside or n in outer}
            known = outer - set(bindings)
            setattr(self, attribute, known)
            _fixed_point(values, candidates, accepts, known)
        self.bound_outside = bound_outside | set(bindings)

    def visit_Module(self, node: ast.Module) -> None:
        bindings = _bindings(node, nested=False)
        declared_global = {
            name for n in ast.walk(node) if isinstance(n, ast.Global) for name in n.names
        }
        for name in declared_global:  # rebound from inside a function: not a constant
            bindings.setdefault(name, []).append(node)
        self.len_is_builtin = "len" not in _bindings(node, nested=True)
        self.constants = {
            statement.targets[0].id: statement.value
            for statement in node.body
            if isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and len(bindings.get(statement.targets[0].id, [])) == 1
            and isinstance(statement.value, ast.Constant | ast.Tuple)
        }
        self.enter_scope(node, bindings)
        self.constants = {n: v for n, v in self.constants.items() if n in self.source_names}
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

    def is_source_text(self, value: ast.expr) -> bool:
        """Text (or a number) written in the source, or made of such text only."""
        if isinstance(value, ast.Constant):
            return True
        if isinstance(value, ast.Name):
            return value.id in self.source_names
        if isinstance(value, ast.Tuple):
            return all(self.is_source_text(e) for e in value.elts)
        if isinstance(value, ast.IfExp):
            return self.is_source_text(value.body) and self.is_source_text(value.orelse)
        if isinstance(value, ast.JoinedStr):
            return all(
                self.is_source_text(v.value)
                for v in value.values
                if isinstance(v, ast.FormattedValue)
            )
        if isinstance(value, ast.Call):
            arguments = [*value.args, *(k.value for k in value.keywords)]
            if isinstance(value.func, ast.Name) and value.func.id == "len":
                return self.len_is_builtin  # an int, whatever it measures
            return (
                isinstance(value.func, ast.Attribute)
                and value.func.attr in _TEXT_METHODS
                and self.is_source_text(value.func.value)
                and all(self.is_source_text(a) for a in arguments)
            )
        return False

    def is_quoted(self, value: ast.expr) -> bool:
        if self.is_source_text(value):
            return True
        if isinstance(value, ast.IfExp):  # a if condition else b: either one
            return self.is_quoted(value.body) and self.is_quoted(value.orelse)
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

    def is_quoted_or_list_of_them(self, value: ast.expr) -> bool:
        return self.is_quoted(value) or self.is_quoted_iterable(value)

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


def _bindings(scope: ast.AST, *, nested: bool) -> dict[str, list[ast.AST]]:
    """Every node binding a name in ``scope``: assignment targets, loop variables,
    parameters, imports, definitions, ``except ... as``, ``global``, patterns.

    ``nested``: with the scopes inside (a function's comprehensions and inner
    functions), counting more bindings than Python would, never fewer.
    """
    found: dict[str, list[ast.AST]] = {}
    stack: list[ast.AST] = [scope]
    while stack:
        node = stack.pop()
        names: list[str] = []
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names = [node.id]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and not isinstance(node.ctx, ast.Load)
        ):
            names = [node.value.id]  # items[0] = ...: changes what the name holds
        elif isinstance(node, ast.arg):
            names = [node.arg]
        elif isinstance(node, ast.alias):
            names = [(node.asname or node.name).split(".")[0]]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name] if node is not scope else []
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar):
            names = [node.name] if node.name else []
        elif isinstance(node, ast.MatchMapping):
            names = [node.rest] if node.rest else []
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names = list(node.names)
        for name in names:
            found.setdefault(name, []).append(node)
        inner = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda)
        if nested or node is scope or not inner:
            stack.extend(ast.iter_child_nodes(node))
        else:  # an inner scope at module level: its decorators and defaults only
            stack.extend(getattr(node, "decorator_list", []))
    return found


def _bound_values(
    scope: ast.AST, bindings: dict[str, list[ast.AST]], constants: dict[str, ast.expr]
) -> dict[str, list[ast.expr]]:
    """For each name of ``bindings`` whose every binding is a plain assignment or a
    loop over a literal tuple: the values it may hold. Other names are left out."""
    targets: dict[int, list[ast.expr]] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            if isinstance(node.targets[0], ast.Name | ast.Subscript):
                targets[id(node.targets[0])] = [node.value]
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            for target, values in _loop_values(node.target, node.iter, constants):
                targets[id(target)] = values
    return {
        name: [value for node in nodes for value in targets[id(node)]]
        for name, nodes in bindings.items()
        if all(id(node) in targets for node in nodes)
    }


def _fixed_point(
    values: dict[str, list[ast.expr]],
    candidates: set[str],
    accepts: Callable[[ast.expr], bool],
    known: set[str],
) -> set[str]:
    """The candidates all of whose values ``accepts`` takes, given the names found
    so far (added to ``known``, the set ``accepts`` consults, as they are found)."""
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name in sorted(candidates - found):
            if all(accepts(value) for value in values[name]):
                found.add(name)
                known.add(name)
                changed = True
    return found


def _loop_values(
    target: ast.expr, iterable: ast.expr, constants: dict[str, ast.expr]
) -> list[tuple[ast.Name, list[ast.expr]]]:
    """A loop over a literal tuple (or a module constant of one): each target's values."""
    if isinstance(iterable, ast.Name) and iterable.id in constants:
        iterable = constants[iterable.id]
    if not isinstance(iterable, ast.Tuple | ast.List):
        return []
    if isinstance(target, ast.Name):
        return [(target, list(iterable.elts))]
    if isinstance(target, ast.Tuple) and all(isinstance(t, ast.Name) for t in target.elts):
        rows = iterable.elts
        width = len(target.elts)
        if not all(isinstance(r, ast.Tuple) and len(r.elts) == width for r in rows):
            return []
        return [
            (t, [r.elts[i] for r in rows if isinstance(r, ast.Tuple)])
            for i, t in enumerate(target.elts)
            if isinstance(t, ast.Name)
        ]
    return []


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


def test_the_scan_takes_text_written_in_the_source_and_nothing_bound_otherwise() -> None:
    sample = textwrap.dedent(
        """
        import hashlib
        from somewhere import IMPORTED

        TABLE = "t"
        ACTIONS = ("UPDATE", "DELETE")
        MESSAGE = "{action} refused"
        REBOUND = "t"
        SHADOWED = "t"
        LEAKED = input()

        def safe(cursor, connection):
            quote = connection.ops.quote_name
            cursor.execute(f"SELECT 1 FROM {quote(TABLE)}")
            for action, name in (("UPDATE", "a"), ("DELETE", TABLE)):
                cursor.execute(f"CREATE TRIGGER {quote(name)} BEFORE {action} ON x")
            for action in ACTIONS:
                cursor.execute(f"SELECT '{MESSAGE.format(action=action)}' FROM x")
            names = ", ".join(f"'{a}'" for a in ACTIONS)
            cursor.execute(f"SELECT 1 FROM x WHERE a IN ({names}) LIMIT {len(ACTIONS)}")
            holder = "''" if connection.vendor == "sqlite" else quote(TABLE)
            holder = quote(TABLE)
            cursor.execute(f"SELECT 1 FROM x WHERE holder = {holder}")

        def rebind():
            global REBOUND
            REBOUND = input()

        def shadow(cursor, ACTIONS):
            for action in ACTIONS:
                cursor.execute(f"DELETE FROM z WHERE a = '{action}'")

        def unsafe(cursor, connection, value, SHADOWED):
            quote = connection.ops.quote_name
            cursor.execute(f"SELECT 1 FROM {REBOUND}")
            cursor.execute(f"SELECT 1 FROM {SHADOWED}")
            cursor.execute(f"SELECT 1 FROM {IMPORTED}")
            name = quote(TABLE)
            name = value
            cursor.execute(f"SELECT 1 FROM {name}")
            for action in (value, "DELETE"):
                cursor.execute(f"DELETE FROM x WHERE a = '{action}'")
            for action in value:
                cursor.execute(f"DELETE FROM y WHERE a = '{action}'")
            cursor.execute(f"SELECT '{value.format(TABLE)}' FROM x")
            cursor.execute(f"SELECT '{MESSAGE.format(action=value)}' FROM x")
            cursor.execute(f"SELECT '{hashlib.md5(value).hexdigest()}' FROM x")
            columns = [quote(c) for c in ACTIONS]
            columns[0] = value
            cursor.execute(f"SELECT {', '.join(columns)} FROM x")
            [LEAKED for LEAKED in ACTIONS]  # the comprehension's own LEAKED
            cursor.execute(f"SELECT {LEAKED} FROM x")  # the module's
        """
    )
    found = [str(f) for f in scan(sample, "sample.py").findings]
    assert not [f for f in found if " in safe()" in f], found
    flagged = [
        "'REBOUND'",
        "'SHADOWED'",
        "'IMPORTED'",
        "'name'",
        "'action' into SQL with an f-string in unsafe() (\"DELETE FROM x",
        "'action' into SQL with an f-string in unsafe() (\"DELETE FROM y",
        "'value.format(TABLE)'",
        "'MESSAGE.format(action=value)'",
        "'hashlib.md5(value).hexdigest()'",
        "\"', '.join(columns)\"",
        "'LEAKED'",
    ]
    for what in flagged:
        assert any(what in f and " in unsafe()" in f for f in found), (what, found)
    assert any("'action' into SQL with an f-string in shadow()" in f for f in found), found
    assert len(found) == len(flagged) + 1, found


def test_a_len_that_is_not_the_builtin_is_not_taken_for_a_number() -> None:
    sample = textwrap.dedent(
        """
        def len(value):
            return value

        def unsafe(cursor, value):
            cursor.execute(f"SELECT 1 FROM x LIMIT {len(value)}")
        """
    )
    found = [str(f) for f in scan(sample, "sample.py").findings]
    assert len(found) == 1 and "'len(value)'" in found[0], found
