"""INT8 keeps compute layers whole (a layer's input activation and weight go to float
together) and an "INT8" graph with every layer in float is a miss, not an artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest

from segedge.export.config import ExportConfig
from segedge.export.pipeline import export
from segedge.export.precision import int8 as q8
from segedge.export.precision import points
from segedge.export.precision.graph import compute_nodes
from segedge.export.precision.modes import int8_steps
from segedge.export.precision.modes.int8 import INT8
from segedge.export.precision.sensitivity import Budget, Measure, SearchResult
from tests.export.precision_helpers import missed_int8_exports, noise_ranges

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto,
                                                                  onnx.ModelProto]:
    work = tmp_path_factory.mktemp("layers")
    fp32 = work / "tiny.onnx"
    export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96), output=fp32,
                        emit="both", quiet=True))
    pre, ranges = noise_ranges(fp32, work)
    full = q8.Quantizer.open(pre, ranges, "tensorrt", "minmax").quantize(work / "q.onnx")
    return onnx.load(str(full)), onnx.load(str(pre))


def test_a_layer_unit_holds_its_activation_and_its_weight(
        quantized: tuple[onnx.ModelProto, onnx.ModelProto]) -> None:
    qmodel, pre = quantized
    found = points.find(qmodel, pre)
    layers = compute_nodes(qmodel)
    units = points.units(found, layers)
    int8 = q8.int8_layers(qmodel)
    assert len(int8) >= 2 and set(int8) <= set(layers)
    assert sorted(p for u in units for p in u.points) == sorted(p.name for p in found)
    kinds = {p.name: p.kind for p in found}
    by_layer = {layer: u for u in units for layer in u.layers}
    for layer in int8:  # every INT8 layer: one unit with both an activation and a weight
        unit = by_layer[layer]
        assert unit.kind == "layer" and unit.name == unit.layers[0]
        assert {kinds[p] for p in unit.points} == {"activation", "weight"}
    target = by_layer[int8[0]]
    kept = points.keep_float(qmodel, pre, target.points)
    assert not set(target.layers) & set(q8.int8_layers(kept))  # whole layers in float
    assert not set(target.layers) & set(q8.quantized_layers(kept))
    assert set(q8.int8_layers(kept)) == set(int8) - set(target.layers)  # the rest INT8
    every = points.keep_float(qmodel, pre, [p for u in units for p in u.points])
    assert q8.int8_layers(every) == [] and len(compute_nodes(every)) == len(layers)


def _all_kept(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
    """A search that met the budget only by keeping every unit in float (what a budget
    only FP32 meets ends with)."""
    qmodel, pre = onnx.load(str(full)), onnx.load(str(run.pre))
    found = points.find(qmodel, pre)
    units = points.units(found, compute_nodes(qmodel))
    path = run.req.workdir / "int8_all_kept.onnx"
    onnx.save(points.keep_float(qmodel, pre, [p.name for p in found]), str(path))
    m = Measure(100.0)
    return SearchResult(path, tuple(u.name for u in units), m, True,
                        tuple((u.name, 1.0) for u in units),
                        ({"kept_fp32": [], **Measure(90.0).to_dict()},
                         {"kept_fp32": [u.name for u in units], **m.to_dict()})), found


def test_every_layer_in_float_is_a_miss_not_an_int8_artifact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(int8_steps, "fallback_step", _all_kept)
    for keep, out, error in missed_int8_exports(tmp_path, 100.0):
        message = str(error)
        assert getattr(error, "exit_code", None) == 3 and "\n" not in message
        assert "nothing could be quantized within the budget" in message
        assert "with at least one compute layer in INT8, got 0 of " in message
        assert not out.exists()
        missed = out.with_name(f"m{int(keep)}_int8.missed-budget.onnx")
        assert missed.is_file() == keep
        assert (f"closest kept as {missed}" in message) == keep


def test_the_summary_says_how_many_layers_run_int8() -> None:
    kept = [f"node_Conv_{i}" for i in range(11)]
    section: dict[str, Any] = {
        "frames": 50, "argmax_agreement": 99.1, "cpu_latency_ms": {"fp32": 2.0, "int8": 1.0},
        "budget": {"rule": "argmax agreement >= 99.0%", "met": True, "user_set": True},
        "kept_fp32": kept, "layers": {"int8": 12, "total": 23}}
    lines = INT8().report_lines(section)
    line = next(x for x in lines if x.startswith("kept in fp32"))
    assert line == ("kept in fp32 to meet the budget (argmax agreement >= 99.0%): 12 of 23 "
                    "layers INT8; " + ", ".join(kept[:8]) + " and 3 more")
    section["kept_fp32"] = []
    assert not any(x.startswith("kept in fp32") for x in INT8().report_lines(section))
