"""The real TensorRT Python API as tensorrt-stubs describes it: {class: {member: signatures}}.

tensorrt-stubs is generated from the pybind11 module and is not quite valid
Python (a default before a non-default parameter, parameters named ``in``), so
lines ``ast`` rejects are repaired (defaults dropped, keyword names suffixed)
before parsing; only names and parameter names are read, never types.
Install it with ``pip install --no-deps tensorrt-stubs`` (it pins the tensorrt wheel).
"""

from __future__ import annotations

import ast
import importlib.metadata
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

_DEFAULT = re.compile(r"\s*=\s*[^,()\[\]]+(?=[,)])")
_KEYWORD_PARAM = re.compile(r"\b(" + "|".join(keyword.kwlist) + r")(\s*:)")


@dataclass(frozen=True)
class StubApi:
    version: str
    module_names: frozenset[str]
    # class -> member -> parameter-name lists (one per overload), or None for a non-callable
    classes: dict[str, dict[str, list[list[str]] | None]]
    bases: dict[str, tuple[str, ...]]

    def members(self, cls: str) -> dict[str, list[list[str]] | None]:
        """Members of ``cls`` including those of its stub base classes."""
        out: dict[str, list[list[str]] | None] = {}
        for base in self.bases.get(cls, ()):
            out.update(self.members(base))
        out.update(self.classes.get(cls, {}))
        return out


def _parse(text: str) -> ast.Module:
    lines = text.splitlines()
    for _ in range(200):
        try:
            return ast.parse("\n".join(lines))
        except SyntaxError as err:
            i = (err.lineno or 1) - 1
            fixed = _KEYWORD_PARAM.sub(r"\1_\2", _DEFAULT.sub("", lines[i]))
            if fixed == lines[i]:
                raise
            lines[i] = fixed
    raise SyntaxError("tensorrt-stubs: too many lines to repair")


def _class_members(node: ast.ClassDef) -> dict[str, list[list[str]] | None]:
    members: dict[str, list[list[str]] | None] = {}
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            decorators = {ast.unparse(d) for d in item.decorator_list}
            if "property" in decorators or any(d.endswith(".setter") for d in decorators):
                members.setdefault(item.name, None)
                continue
            params = [a.arg.rstrip("_") if keyword.iskeyword(a.arg.rstrip("_")) else a.arg
                      for a in item.args.args[1:]]
            existing = members.get(item.name)
            members[item.name] = (existing or []) + [params]
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members.setdefault(item.target.id, None)
        elif isinstance(item, ast.Assign):
            for target in item.targets:
                if isinstance(target, ast.Name):
                    members.setdefault(target.id, None)
        elif isinstance(item, ast.ClassDef):
            members.setdefault(item.name, None)
    return members


def load() -> StubApi | None:
    """The stub API, or None where tensorrt-stubs is not installed."""
    try:
        dist = importlib.metadata.distribution("tensorrt-stubs")
    except importlib.metadata.PackageNotFoundError:
        return None
    bindings = Path(str(dist.locate_file("tensorrt_bindings/tensorrt.pyi")))
    package = Path(str(dist.locate_file("tensorrt/__init__.pyi")))
    tree = _parse(bindings.read_text())
    classes = {n.name: _class_members(n) for n in tree.body if isinstance(n, ast.ClassDef)}
    bases = {n.name: tuple(ast.unparse(b) for b in n.bases) for n in tree.body
             if isinstance(n, ast.ClassDef)}
    names: set[str] = set(classes)
    for node in _parse(package.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, (ast.AnnAssign, ast.Assign)):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.FunctionDef):
            names.add(node.name)
    return StubApi(dist.version, frozenset(names), classes, bases)
