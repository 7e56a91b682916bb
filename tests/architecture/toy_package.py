"""A throw-away plug-in package for the recipe tests: the "one new file" each recipe adds.

Every recipe test (sources/sinks/tasks, precision modes, model sources) writes its toy
modules into a package nothing else uses, puts it on ``sys.path`` and forgets it
afterwards, so the next test imports nothing stale.  The registration lines stay in each
test: they are what ARCHITECTURE.md's recipes say to write.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def toy_package(root: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                modules: Mapping[str, str]) -> Iterator[Path]:
    """``root/plugins/<name>/`` holding ``modules`` (module name -> source), importable
    while the block runs; its modules are dropped from ``sys.modules`` after it."""
    package = root / "plugins" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for module, text in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root / "plugins"))
    try:
        yield package
    finally:
        for loaded in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
            del sys.modules[loaded]
