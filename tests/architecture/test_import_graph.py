"""tools/import_graph.py: the import graph read from the installed package, and its rules.

The layering rule (runtime never imports torch, export or benchmarks; export never
imports benchmarks) must hold on the real tree, and the checker must see a break,
including a lazy one inside a function and excluding a TYPE_CHECKING-only one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.import_graph import Module, build, scan, violations

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "import_graph.py"


def test_the_layering_rules_hold_on_the_installed_package(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(TOOL), "--check"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)  # outside the checkout
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().endswith("modules, 0 layering violation(s)")


def test_the_graph_names_segedge_modules_not_folders() -> None:
    modules = build()
    assert {"segedge.runtime.registry", "segedge.runtime.sinks.base",
            "segedge.export.pipeline", "segedge.benchmarks.cli"} <= set(modules)
    sinks = modules["segedge.runtime.sinks.base"].imports
    assert sinks["segedge.runtime.registry"] is False  # a top-level import
    assert sinks["segedge.runtime.sinks.window"] is True  # only inside a function
    assert "segedge.runtime.draw" not in modules["segedge.runtime.tasks.base"].imports  # typing


def test_a_break_is_found_lazy_or_not_and_typing_only_imports_are_not(tmp_path: Path) -> None:
    source = tmp_path / "bad.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import errors\n"
        "if TYPE_CHECKING:\n"
        "    import torch\n"
        "def f():\n"
        "    from segedge.export.config import ExportConfig\n"
        "    import torch.nn\n")
    bad = Module("segedge.runtime.bad", source, is_package=False)
    scan(bad, {"segedge.runtime.errors"})
    assert bad.imports == {"typing": False, "segedge.runtime.errors": False,
                           "segedge.export.config": True, "torch.nn": True}
    found = violations({bad.name: bad})
    assert [line.split(":")[0] for line in found] == [
        "segedge.runtime.bad imports segedge.export.config (lazily)",
        "segedge.runtime.bad imports torch.nn (lazily)"]
    fine = Module("segedge.benchmarks.fine", source, is_package=False)
    scan(fine, set())
    assert violations({fine.name: fine}) == []  # benchmarks may import both
