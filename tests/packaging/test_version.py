"""Every installed command says which segedge it is: `--version` from the distribution's metadata.

The commands are read from pyproject.toml's [project.scripts], so a new command without the
`version_option` line fails here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import tomllib

from segedge.runtime.about import installed_commands

REPO = Path(__file__).resolve().parents[2]
SCRIPTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def entry(prog: str) -> Callable[[list[str]], None]:
    module, func = SCRIPTS[prog].split(":")
    return getattr(importlib.import_module(module), func)  # type: ignore[no-any-return]


@pytest.mark.parametrize("prog", sorted(SCRIPTS))
def test_every_command_prints_its_version_and_lists_the_option(
        prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    entry(prog)(["--version"])  # returns normally: exit 0
    out = capsys.readouterr()
    assert (out.out, out.err) == (f"{prog} {metadata.version('segedge')}\n", "")
    entry(prog)(["--help"])
    assert "--version" in capsys.readouterr().out


def test_version_needs_no_other_argument(capsys: pytest.CaptureFixture[str]) -> None:
    """segrun's MODEL and SOURCE are required; --version still answers alone (it is eager)."""
    entry("segrun")(["--version", "no-such-model.onnx"])
    assert capsys.readouterr().out == f"segrun {metadata.version('segedge')}\n"


def test_segedge_lists_every_other_command(capsys: pytest.CaptureFixture[str]) -> None:
    entry("segedge")([])
    first, second = capsys.readouterr().out.splitlines()
    assert first.startswith(f"segedge {metadata.version('segedge')} (")
    assert second.startswith("commands: " + ", ".join(installed_commands()) + " (")
    assert set(installed_commands()) >= set(SCRIPTS) - {"segedge"}
