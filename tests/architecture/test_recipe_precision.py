"""ARCHITECTURE.md's precision-mode recipe, followed literally by a test.

A toy mode ("toyprec": the verified FP32 graph re-labelled, with a doc string its
lowering writes) is its ``register_precision`` line (its facts, runtime/precisions), ONE
file of a temporary package and the ONE ``register_mode`` line the recipe names.  It must
then be listed by ``segexport --help`` (``--precision`` choices) and in the error for an
unknown mode, be accepted by ``segexport``, have its lowering run by the pipeline (the
pipeline asks only the mode), name itself in the artifact's metadata, the report and the
summary, pass the metadata's validation when the artifact is read back, and be typed by
the TensorRT engine build from its spec.  Without its spec ``register_mode`` refuses it,
in one line saying where to register.  Unregistered, it is gone.  Nothing in segedge is
edited for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import pytest

from segedge.export.cli import main
from segedge.export.onnx.tools import read_metadata
from segedge.export.precision import modes
from segedge.runtime import precisions
from segedge.runtime.errors import InputError
from segedge.runtime.precisions import PrecisionSpec
from tests.architecture.toy_package import toy_package
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture

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
    with toy_package(tmp_path, monkeypatch, PKG, {"toy_mode": TOY_MODE}):
        # The recipe's registration lines, as ARCHITECTURE.md writes them: its facts, its mode.
        precisions.register_precision(TOY_SPEC)
        modes.register_mode("toyprec", f"{PKG}.toy_mode:ToyPrecision")
        yield "toyprec"
        if "toyprec" in modes.MODES:
            modes.MODES.unregister("toyprec")
        precisions.unregister_precision("toyprec")


# A float precision of its own: TensorRT builds it strongly typed, or weakly with FP16 flags.
TOY_SPEC = PrecisionSpec("toyprec", "f16", 16, "float16", tensorrt_flags=("FP16",))


def test_a_mode_without_its_precision_is_refused_in_one_line() -> None:
    with pytest.raises(InputError) as err:
        modes.register_mode("toyprec", f"{PKG}.toy_mode:ToyPrecision")
    assert str(err.value) == (
        "precision mode 'toyprec': expected a precision registered first with "
        "segedge.runtime.precisions.register_precision(PrecisionSpec('toyprec', ...)) as an "
        "ONNX of its own (artifact=True), got none")
    assert "toyprec" not in modes.MODES and "toyprec" not in modes.names()
    with pytest.raises(InputError, match=r"got a runtime hint \(artifact=False\)$"):
        modes.register_mode("bf16", f"{PKG}.toy_mode:ToyPrecision")  # a hint, not an ONNX


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
    assert modes.get(toy).calibrated is False and modes.get(toy).tensorrt_flags() == ("FP16",)


def test_the_toy_precision_passes_metadata_and_engine_typing(
        toy: str, tmp_path: Path, fake_gpu: Callable[..., FakeGpu]) -> None:  # noqa: F811
    """Read back, the metadata accepts it (validated against runtime/precisions); a plan is
    typed from its spec: strongly typed from its own ONNX, FP16 flags from an fp32 one."""
    from segedge.export.tensorrt.build import TypingPlan, build_engine, plan_typing
    from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata
    from tests.runtime.onnx_fixtures import make_logits_model

    path = make_logits_model(tmp_path / "toy.onnx")
    model = onnx.load(str(path))
    meta = read_metadata(model)
    assert meta is not None
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    entry.value = meta.with_changes(precision=toy).to_json()
    onnx.save(model, str(path))
    again = read_metadata(onnx.load(str(path)))
    assert again is not None and again.precision == toy
    assert ArtifactMetadata.from_json(entry.value, str(path)).precision == toy
    fake_gpu(generation=10)
    built = build_engine(path, tmp_path / "toy.plan")
    assert built.sidecar.precision == toy and built.sidecar.strongly_typed is True
    weak = dict(strongly_typed_available=True, weak_flags_available=True, dla=False,
                prefer_strong=False)
    assert plan_typing("fp32", toy, **weak) == TypingPlan(False, ("FP16",), toy)  # type: ignore[arg-type]


def test_an_unregistered_toy_is_gone(toy: str, capsys: pytest.CaptureFixture[str]) -> None:
    modes.MODES.unregister(toy)
    precisions.unregister_precision(toy)
    main(["--help"])
    assert _precision_choices(capsys.readouterr().out) == "fp32|fp16|int8"
    assert precisions.find(toy) is None and toy not in precisions.precision_names()
    precisions.register_precision(TOY_SPEC)  # the fixture unregisters it
