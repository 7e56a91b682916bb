"""ARCHITECTURE.md's precision-mode recipe, followed literally by a test.

A toy mode ("toyprec": the verified FP32 graph re-labelled, with a doc string its
lowering writes) is ONE file of a temporary package plus the ONE ``register_mode``
line the recipe names.  It must then be listed by ``segexport --help`` (``--precision``
choices) and in the error for an unknown mode, be accepted by ``segexport``, have its
lowering run by the pipeline (the pipeline asks only the mode), and name itself in
the artifact's metadata, the report and the summary.  Unregistered, it is gone.
Nothing in segedge is edited for it.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from segedge.export.cli import main
from segedge.export.onnx.tools import read_metadata
from segedge.export.precision import modes

PKG = "segedge_toyprecision"  # a package name nothing else uses

TOY_MODE = '''
"""toyprec: the verified FP32 graph, re-labelled; its lowering leaves a mark in the graph."""
from typing import Any

import onnx

from segedge.export.onnx import tools as onnx_tools
from segedge.export.precision.modes.base import Lowered, LowerRequest, PrecisionMode

MARK = "lowered by the toyprec mode"


class ToyPrecision(PrecisionMode):
    name = "toyprec"
    suffix = "_toyprec"
    implies_engine = False
    flag_help = "The toy precision mode of the architecture test."

    def lower(self, req: LowerRequest) -> Lowered:
        model = onnx.load(str(req.fp32))
        model.graph.doc_string = MARK
        meta = req.meta.with_changes(precision=self.name,
                                     extra={**req.meta.extra, "toyprec": {"nodes":
                                                                          len(model.graph.node)}})
        onnx_tools.set_metadata(model, meta)
        path = req.workdir / "toyprec.onnx"
        onnx.save(model, str(path))
        return Lowered(path, meta, {"precision": self.name, "nodes": len(model.graph.node),
                                    "size": list(req.size)})

    def report_lines(self, section: dict[str, Any]) -> list[str]:
        return [f"toyprec: {section['nodes']} nodes kept as they were"]
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The toy package on sys.path and the recipe's one registration line; undone after."""
    package = tmp_path / "plugins" / PKG
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "toy_mode.py").write_text(textwrap.dedent(TOY_MODE))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    # The recipe's registration line, as ARCHITECTURE.md writes it:
    modes.register_mode("toyprec", f"{PKG}.toy_mode:ToyPrecision")
    yield "toyprec"
    modes.MODES.unregister("toyprec")
    sys.modules.pop(f"{PKG}.toy_mode", None)
    sys.modules.pop(PKG, None)


def _precision_choices(help_text: str) -> str:
    line = next(ln for ln in help_text.splitlines() if ln.strip().startswith("--precision"))
    return line.split("[", 1)[1].split("]", 1)[0]


def test_the_toy_mode_is_listed_and_named_in_errors(toy: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert modes.names() == ("fp32", "fp16", "int8", "toyprec")
    assert modes.get(toy).suffix == "_toyprec" and modes.get(toy) is modes.get(toy)
    main(["--help"])  # returns on success
    assert _precision_choices(capsys.readouterr().out) == "fp32|fp16|int8|toyprec"
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--precision", "int4"])
    assert exit_info.value.code == 2
    assert "'int4' is not one of 'fp32', 'fp16', 'int8', 'toyprec'" in capsys.readouterr().err
    from segedge.export.config import PrecisionOptions
    from segedge.runtime.errors import InputError

    with pytest.raises(InputError, match=r"^precision: expected fp32 or fp16 or int8 or "
                                         r"toyprec, got 'int4'$"):
        PrecisionOptions(mode="int4")
    with pytest.raises(InputError, match=r"^--calib: expected --int8 as well, got precision "
                                         r"toyprec$"):  # the base mode's validation holds
        PrecisionOptions(mode=toy, calib="frames/")


def test_segexport_runs_the_toy_lowering_and_the_artifact_names_it(
        toy: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo_toy.onnx"
    main(["demo", "--precision", toy, "--imgsz", "64", "96", "--no-check-bf16", "-o",
          str(out)])  # returns on success, exits non-zero on failure
    err = capsys.readouterr().err
    model = onnx.load(str(out))
    assert model.graph.doc_string == "lowered by the toyprec mode"  # its lowering ran
    meta = read_metadata(model)
    assert meta is not None and meta.precision == "toyprec"
    assert meta.extra["toyprec"] == {"nodes": len(model.graph.node)}
    report = json.loads(out.with_suffix(".report.json").read_text())
    assert report["precision"] == "toyprec"
    assert report["precision_report"] == {"precision": "toyprec",
                                          "nodes": len(model.graph.node), "size": [64, 96]}
    assert f"toyprec: {len(model.graph.node)} nodes kept as they were" in err.splitlines()
    assert report["engine"] is None  # implies_engine False: no plan unless asked


def test_an_unregistered_toy_is_gone(toy: str, capsys: pytest.CaptureFixture[str]) -> None:
    modes.MODES.unregister(toy)
    main(["--help"])
    assert _precision_choices(capsys.readouterr().out) == "fp32|fp16|int8"
    modes.register_mode(toy, f"{PKG}.toy_mode:ToyPrecision")  # the fixture unregisters it
