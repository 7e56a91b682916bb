"""No backend, precision or task name is compared outside the module that owns it.

A backend, a precision mode or a task is one file behind a registry (ARCHITECTURE.md,
"Registries"); code elsewhere asks the descriptor (``runtime/backends/base.descriptor``,
``runtime/precisions.precision``, the task's flags) instead of branching on the name, so a
new one is one file and nothing else needs editing.  This test reads the product source
(``export/``, ``runtime/``, ``benchmarks/``) with ``ast`` (nothing runs) and fails, naming
``file:line``, on any comparison of a string literal that is a registered name:

* ``==``, ``!=``, ``is``, ``is not``, ``in``, ``not in`` with a literal, or a tuple / list /
  set / dict literal holding one, on either side;
* ``match``/``case`` with such a literal;
* ``str.startswith`` / ``str.endswith`` with such a literal (a prefix test is a comparison);
* dict-key dispatch: a dict literal keyed mostly (more than half of its keys) by names of
  one kind, looked up by a computed key (``{...}[x]``, ``{...}.get(x)``, or a name bound to
  it and looked up that way): a per-name table.  A table of another vocabulary that merely
  holds one such word (Triton's tensor types with ``"int8"``, ONNX Runtime's ``--provider``
  values with ``"tensorrt"``) is not one.

A literal reaches a comparison directly or through an alias: a module-level constant bound
to it in any product file (``OPENVINO = "openvino"``, or a tuple target ``ORT, OPENVINO =
"onnxruntime", "openvino"``), used by name or as an attribute (``runtimes.OPENVINO``).

Reading a data field whose key happens to be a name (``section["fp32"]``) and passing a
name to a registry (``descriptor("openvino")``) are not comparisons and are left alone.
The names come from the registries themselves (a new backend is checked without editing
this file); each name's owners are its own files (``Kind.owner_patterns``: the backend's,
mode's or task's file and its ``<name>_*.py`` helpers, a backend's segbench rows, and
``runtime/precisions.py`` for every precision and hint name).
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("export", "runtime", "benchmarks")



@dataclass(frozen=True)
class Kind:
    """One family of registered names and where each name may be compared."""

    kind: str  # backend | precision | task
    names: frozenset[str]
    owner_patterns: tuple[str, ...]  # relative paths, ``{name}`` replaced by the name

    def owns(self, path: str, name: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p.format(name=name)) for p in self.owner_patterns)


def registered_kinds() -> list[Kind]:
    """Every registered name, read from the registries (never listed here by hand)."""
    from segedge.export.precision.modes import names as mode_names
    from segedge.export.tasks.base import task_names as export_tasks
    from segedge.runtime.backends.base import backend_names
    from segedge.runtime.precisions import precision_names
    from segedge.runtime.tasks.base import task_names as runtime_tasks

    return [
        # a backend's file, its helpers beside it (triton_client.py) and its segbench rows
        Kind("backend", frozenset(backend_names()),
             ("runtime/backends/{name}.py", "runtime/backends/{name}_*.py",
              "benchmarks/bench_{name}.py")),
        # The export modes and the runtime's inference hints (f32 / f16 / bf16): the
        # descriptors in runtime/precisions.py own all of them; a mode also owns its name.
        Kind("precision", frozenset(mode_names()) | frozenset(precision_names()),
             ("export/precision/modes/{name}.py", "export/precision/modes/{name}_*.py",
              "runtime/precisions.py")),
        Kind("task", frozenset(export_tasks()) | frozenset(runtime_tasks()),
             ("export/tasks/{name}.py", "export/tasks/{name}_*.py", "runtime/tasks/{name}.py",
              "runtime/tasks/{name}_*.py")),
    ]


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    kind: str
    name: str
    how: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} name {self.name!r} compared ({self.how})"


Aliases = dict[str, frozenset[str]]  # constant name -> the literals it is bound to


def _literals(node: ast.AST | None, aliases: Aliases | None = None) -> Iterator[str]:
    """The string literals a comparison operand stands for (itself, a literal container, or
    a module-level constant bound to a literal, by name or as a module attribute:
    ``OPENVINO``, ``runtimes.OPENVINO``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.Name) and aliases and node.id in aliases:
        yield from sorted(aliases[node.id])
    elif isinstance(node, ast.Attribute) and aliases and node.attr in aliases:
        yield from sorted(aliases[node.attr])
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for elt in node.elts:
            yield from _literals(elt, aliases)
    elif isinstance(node, ast.Dict):
        for key in node.keys:
            yield from _literals(key, aliases)


def _patterns(pattern: ast.AST) -> Iterator[str]:
    if isinstance(pattern, ast.MatchValue):
        yield from _literals(pattern.value)
    elif isinstance(pattern, ast.MatchOr):
        for p in pattern.patterns:
            yield from _patterns(p)
    elif isinstance(pattern, ast.MatchAs) and pattern.pattern is not None:
        yield from _patterns(pattern.pattern)
    elif isinstance(pattern, ast.MatchSequence):
        for p in pattern.patterns:
            yield from _patterns(p)
    elif isinstance(pattern, ast.MatchMapping):
        for key in pattern.keys:
            yield from _literals(key)
        for p in pattern.patterns:
            yield from _patterns(p)
    elif isinstance(pattern, ast.MatchClass):
        for p in (*pattern.patterns, *pattern.kwd_patterns):
            yield from _patterns(p)


def _bindings(target: ast.AST, value: ast.AST) -> Iterator[tuple[str, str]]:
    """(name, literal) for ``NAME = "x"`` and ``A, B = "x", "y"`` (nested alike)."""
    if isinstance(target, ast.Name) and isinstance(value, ast.Constant) \
            and isinstance(value.value, str):
        yield target.id, value.value
    elif isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts):
        for t, v in zip(target.elts, value.elts, strict=True):
            yield from _bindings(t, v)


def module_aliases(tree: ast.AST) -> Aliases:
    """The module-level constants bound to a string literal in one module."""
    found: dict[str, set[str]] = {}
    for node in getattr(tree, "body", ()):
        pairs: list[tuple[str, str]] = []
        if isinstance(node, ast.Assign):
            pairs = [p for t in node.targets for p in _bindings(t, node.value)]
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            pairs = list(_bindings(node.target, node.value))
        for name, text in pairs:
            found.setdefault(name, set()).add(text)
    return {k: frozenset(v) for k, v in found.items()}


def _merge(*tables: Aliases) -> Aliases:
    found: dict[str, set[str]] = {}
    for table in tables:
        for name, texts in table.items():
            found.setdefault(name, set()).update(texts)
    return {k: frozenset(v) for k, v in found.items()}


def _computed(key: ast.AST) -> bool:
    return not isinstance(key, ast.Constant)


DISPATCH = "dict-key dispatch"
_COMPARE_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.In: "in", ast.NotIn: "not in",
                ast.Is: "is", ast.IsNot: "is not"}
_PREFIX_METHODS = ("startswith", "endswith")


def _comparisons(tree: ast.AST, aliases: Aliases) -> Iterator[tuple[int, list[str], str]]:
    """(line, literals, how) for every comparison in ``tree``; ``how`` is 'dict-key dispatch'
    for a table's keys (judged together: see ``check_source``)."""
    tables: dict[str, ast.Dict] = {}  # names bound to a dict literal (any scope: conservative)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    tables[target.id] = node.value
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Dict)
              and isinstance(node.target, ast.Name)):
            tables[node.target.id] = node.value
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            how = " ".join(_COMPARE_OPS.get(type(op), type(op).__name__) for op in node.ops)
            if not any(type(op) in _COMPARE_OPS for op in node.ops):
                continue
            for operand in (node.left, *node.comparators):
                yield node.lineno, list(_literals(operand, aliases)), how
        elif isinstance(node, ast.match_case):
            yield node.pattern.lineno, list(_patterns(node.pattern)), "match case"
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in _PREFIX_METHODS and node.args):
            yield node.lineno, list(_literals(node.args[0], aliases)), node.func.attr
        elif isinstance(node, ast.Subscript) and _computed(node.slice):
            table = _table(node.value, tables)
            if table is not None:
                yield node.lineno, list(_literals(table)), DISPATCH
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and node.args and _computed(node.args[0])):
            table = _table(node.func.value, tables)
            if table is not None:
                yield node.lineno, list(_literals(table)), DISPATCH


def _table(node: ast.AST, tables: dict[str, ast.Dict]) -> ast.Dict | None:
    if isinstance(node, ast.Dict):
        return node
    if isinstance(node, ast.Name):
        return tables.get(node.id)
    return None


def check_source(source: str, path: str, kinds: Iterable[Kind],
                 aliases: Aliases | None = None) -> list[Violation]:
    """The comparisons in one module's ``source`` (``path`` relative to the repository);
    ``aliases``: constants bound in other modules (``check_tree`` gathers them all)."""
    tree = ast.parse(source, filename=path)
    found: list[Violation] = []
    seen: set[tuple[int, str]] = set()
    for line, texts, how in _comparisons(tree, _merge(aliases or {}, module_aliases(tree))):
        for kind in kinds:
            names = [t for t in texts if t in kind.names]
            if how == DISPATCH and 2 * len(names) <= len(texts):
                continue  # another vocabulary's table that holds one such word
            for text in names:
                if not kind.owns(path, text) and (line, text) not in seen:
                    seen.add((line, text))
                    found.append(Violation(path, line, kind.kind, text, how))
    return sorted(found, key=lambda v: (v.path, v.line, v.name))


def product_files(root: Path = REPO) -> list[Path]:
    return sorted(p for folder in PRODUCT for p in (root / folder).rglob("*.py"))


def check_tree(root: Path = REPO, kinds: list[Kind] | None = None) -> list[Violation]:
    kinds = registered_kinds() if kinds is None else kinds
    sources = {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
               for path in product_files(root)}
    aliases = _merge(*(module_aliases(ast.parse(text, filename=rel))
                       for rel, text in sources.items()))
    found: list[Violation] = []
    for rel, text in sources.items():
        found += check_source(text, rel, kinds, aliases)
    return found


def test_no_registered_name_is_compared_outside_its_own_module() -> None:
    left = check_tree()
    assert not left, "compare through the descriptor instead:\n" + "\n".join(map(str, left))


def test_the_names_come_from_the_registries() -> None:
    kinds = {k.kind: k.names for k in registered_kinds()}
    assert {"onnxruntime", "openvino", "tensorrt", "triton"} <= kinds["backend"]
    assert {"fp32", "fp16", "int8", "f32", "f16", "bf16"} <= kinds["precision"]
    assert {"semantic", "instance"} <= kinds["task"]
    assert product_files() and all(p.suffix == ".py" for p in product_files())


ELSEWHERE = {"TOYRT": frozenset({"toyrt"})}  # what check_tree gathers from other modules
TOY = [Kind("backend", frozenset({"toyrt"}), ("runtime/backends/{name}.py",
                                               "runtime/backends/{name}_*.py")),
       Kind("precision", frozenset({"int4", "fp32"}), ("export/precision/modes/{name}.py",)),
       Kind("task", frozenset({"depth"}), ("export/tasks/{name}.py",))]


@pytest.mark.parametrize(("snippet", "line", "names", "how"), [
    ("if backend == 'toyrt':\n    pass\n", 1, ("toyrt",), "=="),
    ("x = 1\nok = 'toyrt' != name\n", 2, ("toyrt",), "!="),
    ("ok = meta.precision in ('fp32', 'int4')\n", 1, ("fp32", "int4"), "in"),
    ("ok = p not in {'int4'}\n", 1, ("int4",), "not in"),
    ("ok = t in ['depth', 'x']\n", 1, ("depth",), "in"),
    ("match task:\n    case 'semantic':\n        pass\n    case 'x' | 'depth':\n        pass\n",
     4, ("depth",), "match case"),
    ("flags = {'int4': ('A',), 'fp32': ()}[mode]\n", 1, ("fp32", "int4"),
     "dict-key dispatch"),
    ("def f(b):\n    RUN = {'toyrt': 1}\n    return RUN.get(b)\n", 3, ("toyrt",),
     "dict-key dispatch"),
    ("MARK = {'int4': 'o', 'x': 's', 'fp32': '^'}\nm = MARK.get(p, 'o')\n", 2,
     ("fp32", "int4"), "dict-key dispatch"),  # two of its three keys are precision names
    ("if 'depth' in {'depth': 1}:\n    pass\n", 1, ("depth",), "in"),
    ("TOY = 'toyrt'\ndef f(b):\n    return b == TOY\n", 3, ("toyrt",), "=="),  # an alias
    ("A, TOY = 'x', 'toyrt'\nok = b == TOY\n", 2, ("toyrt",), "=="),  # a tuple target
    ("(A, (B, TOY)) = ('x', ('y', 'toyrt'))\nok = b != TOY\n", 2, ("toyrt",), "!="),
    ("import rts\nok = b == rts.TOYRT\n", 2, ("toyrt",), "=="),  # another module's alias
    ("ok = b in (rts.TOYRT, 'x')\n", 1, ("toyrt",), "in"),
    ("if name.startswith('toyrt'):\n    pass\n", 1, ("toyrt",), "startswith"),
    ("ok = p.endswith(('int4', '.onnx'))\n", 1, ("int4",), "endswith"),
    ("ok = name.startswith(rts.TOYRT)\n", 1, ("toyrt",), "startswith"),
])
def test_the_checker_finds_each_form_of_comparison(snippet: str, line: int,
                                                   names: tuple[str, ...], how: str) -> None:
    found = check_source(snippet, "runtime/segmenter.py", TOY, ELSEWHERE)
    assert [(v.line, v.name, v.how) for v in found] == [(line, n, how) for n in names]
    assert str(found[0]).startswith(f"runtime/segmenter.py:{line}: ")


def test_the_owner_may_compare_its_own_name_and_data_keys_are_not_comparisons() -> None:
    snippet = "if backend == 'toyrt':\n    pass\n"
    assert check_source(snippet, "runtime/backends/toyrt.py", TOY) == []
    assert check_source(snippet, "runtime/backends/other.py", TOY) != []
    assert check_source(snippet, "runtime/backends/toyrt_client.py", TOY) == []  # its helper
    benign = ("lat = section['int4']\n"  # reading a data field
              "d = descriptor('toyrt')\n"  # asking the registry
              "row = {'int4': 1.0, 'fp32': 2.0}\n"  # writing a data record
              "v = row['int4']\n"
              "ok = name == 'other'\n"
              "TYPES = {'float32': 1, 'uint8': 2, 'int4': 3}\n"  # another vocabulary's table
              "t = TYPES[dtype]\n"
              "ok = path.name.startswith('.onnx') or s.startswith(prefix)\n"
              "TOYRT = 'toyrt'\n"  # binding a constant is no comparison
              "d2 = descriptor(rts.TOYRT)\n")
    assert check_source(benign, "benchmarks/report.py", TOY, ELSEWHERE) == []


def test_a_tree_with_a_violation_fails_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "runtime" / "backends").mkdir(parents=True)
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "runtime" / "backends" / "toyrt.py").write_text("ok = b == 'toyrt'\n")
    (tmp_path / "benchmarks" / "rows.py").write_text("x = 1\n\nif p in ('int4',):\n    x = 2\n")
    # an alias bound by tuple unpacking in one module, compared as an attribute in another
    (tmp_path / "runtime" / "names.py").write_text("ORT, TOY = 'ort', 'toyrt'\n")
    (tmp_path / "runtime" / "use.py").write_text("from runtime import names\n"
                                                 "ok = b == names.TOY\n")
    found = check_tree(tmp_path, TOY)
    assert [str(v) for v in found] == [
        "benchmarks/rows.py:3: precision name 'int4' compared (in)",
        "runtime/use.py:2: backend name 'toyrt' compared (==)"]
