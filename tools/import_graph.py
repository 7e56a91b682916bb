"""Print segedge's import graph from the installed package, and check its layering rules.

Graph tools that read the source tree (pydeps, import-linter run on folders, IDE
diagrams) see no imports between segedge's folders: ``runtime/`` is imported as
``segedge.runtime`` (setup.py maps the three top folders onto one namespace), so
no import statement names a folder.  This script asks Python where each
``segedge.*`` package really lives (importlib), parses every module there with
``ast`` (nothing is imported or run) and prints one line per module:

    segedge.runtime.sinks.base -> segedge.runtime.errors, segedge.runtime.paths, ...

Imports inside functions count (a lazy ``import torch`` still loads torch when it
runs) and are marked ``(lazy)`` with ``--lazy``; imports under ``if TYPE_CHECKING:``
never run and are left out.  ``--external`` adds the third-party top-level names
(numpy, torch, ...); ``--dot`` prints Graphviz instead (``| dot -Tsvg > g.svg``).

``--check`` applies the layering rules of ARCHITECTURE.md and exits 1 listing each
violation (0: none):

* ``segedge.runtime`` never imports torch/torchvision, ``segedge.export`` or
  ``segedge.benchmarks`` (lazily or not);
* ``segedge.export`` never imports ``segedge.benchmarks`` (it may import runtime);
* ``segedge.benchmarks`` may import both.

Usage: ``python tools/import_graph.py [--check] [--external] [--lazy] [--dot] [PREFIX]``
(PREFIX, e.g. ``segedge.runtime.sinks``, limits the printed modules).  Standard library
only, so it runs wherever segedge is installed.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("segedge.runtime", "segedge.export", "segedge.benchmarks")


@dataclass(frozen=True)
class Rule:
    """Modules under ``layer`` must not import anything under one of ``forbidden``."""

    layer: str
    forbidden: tuple[str, ...]
    why: str


RULES = (
    Rule("segedge.runtime", ("torch", "torchvision", "segedge.export", "segedge.benchmarks"),
         "runtime/ is the torch-free floor: it imports neither torch nor export/ nor benchmarks/"),
    Rule("segedge.export", ("segedge.benchmarks",),
         "export/ may import runtime/, never benchmarks/"),
)


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: dict[str, bool] = field(default_factory=dict)  # imported name -> lazy only


def package_files(package: str) -> dict[str, tuple[Path, bool]]:
    """Every module of an installed package: dotted name -> (file, is a package)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"import_graph: expected {package} to be installed, got no such package")
    found: dict[str, tuple[Path, bool]] = {}
    for root in map(Path, spec.submodule_search_locations):
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if any(not p.isidentifier() for p in parts):
                continue
            # a module only counts where every folder above it is a package
            if any(not (root.joinpath(*rel.parts[:i]) / "__init__.py").is_file()
                   for i in range(1, len(rel.parts))):
                continue
            found[".".join([package, *parts])] = (path, path.name == "__init__.py")
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def scan(module: Module, known: set[str]) -> None:
    """Fill ``module.imports`` from its source: names it imports, and whether only lazily."""
    tree = ast.parse(module.path.read_text(encoding="utf-8"), str(module.path))

    def add(name: str, lazy: bool) -> None:
        module.imports[name] = module.imports.get(name, True) and lazy

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.orelse:
                visit(stmt, lazy)
            return  # typing-only imports never run
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, lazy)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in known else base, lazy)
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)


def build(packages: tuple[str, ...] = PACKAGES) -> dict[str, Module]:
    """The graph: every module of ``packages`` with what it imports."""
    files: dict[str, tuple[Path, bool]] = {}
    for package in packages:
        files.update(package_files(package))
    modules = {name: Module(name, path, pkg) for name, (path, pkg) in files.items()}
    for module in modules.values():
        scan(module, set(modules))
    return modules


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(modules: dict[str, Module], rules: tuple[Rule, ...] = RULES) -> list[str]:
    """One line per import that breaks a rule: 'module imports name (lazy): why'."""
    out = []
    for module in sorted(modules.values(), key=lambda m: m.name):
        for rule in rules:
            if not _under(module.name, rule.layer):
                continue
            for name, lazy in sorted(module.imports.items()):
                if any(_under(name, f) for f in rule.forbidden):
                    out.append(f"{module.name} imports {name}{' (lazily)' if lazy else ''}: "
                               f"{rule.why}")
    return out


def edges(module: Module, external: bool) -> list[tuple[str, bool]]:
    """What ``module`` imports: segedge modules, and top-level third-party names if asked."""
    out: dict[str, bool] = {}
    for name, lazy in module.imports.items():
        if _under(name, "segedge"):
            out[name] = out.get(name, True) and lazy
        elif external:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names:
                out[top] = out.get(top, True) and lazy
    return sorted(out.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", nargs="?", default="segedge",
                        help="only modules under this dotted name (default: all)")
    parser.add_argument("--check", action="store_true", help="check the layering rules")
    parser.add_argument("--external", action="store_true", help="show third-party imports too")
    parser.add_argument("--lazy", action="store_true", help="mark imports made inside functions")
    parser.add_argument("--dot", action="store_true", help="print Graphviz dot")
    args = parser.parse_args(argv)
    modules = build()
    if args.check:
        found = violations(modules)
        for line in found:
            print(line)
        print(f"import_graph: {len(modules)} modules, {len(found)} layering violation(s)",
              file=sys.stderr)
        return 1 if found else 0
    shown = [m for name, m in sorted(modules.items()) if _under(name, args.prefix)]
    if args.dot:
        print("digraph segedge {\n  rankdir=LR; node [shape=box, fontsize=10];")
        for module in shown:
            for name, lazy in edges(module, args.external):
                style = " [style=dashed]" if lazy else ""
                print(f'  "{module.name}" -> "{name}"{style};')
        print("}")
        return 0
    for module in shown:
        names = [f"{n} (lazy)" if lazy and args.lazy else n
                 for n, lazy in edges(module, args.external)]
        print(f"{module.name} -> {', '.join(names) if names else '(nothing)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
