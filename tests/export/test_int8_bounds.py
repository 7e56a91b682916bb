"""INT8 bounds and fallback: quantization points converge to FP32, bounds interrupt inside
a step, ranges are computed once and cached in one file, progress reaches a log, the peak
memory is in the report, a miss is kept only under a name that says so."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from segedge.export.config import ExportConfig
from segedge.export.pipeline import export
from segedge.export.precision import calibration, points, steps
from segedge.export.precision import int8 as q8
from segedge.export.precision.sensitivity import Budget, Measure, keep_counts, rank_layers, search
from segedge.runtime.progress import LogTicker, progress_or_log
from tests.export.precision_helpers import missed_int8_exports, noise_ranges

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    work = tmp_path_factory.mktemp("bounds")
    fp32 = work / "tiny.onnx"
    export(ExportConfig(model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96), output=fp32,
                        emit="both", quiet=True))
    pre, ranges = noise_ranges(fp32, work)
    return fp32, pre, ranges


def _outputs(model: onnx.ModelProto | Path, x: np.ndarray) -> list[np.ndarray]:
    blob = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _frame(pre: Path) -> np.ndarray:
    shape = ort.InferenceSession(str(pre)).get_inputs()[0].shape
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, [d if isinstance(d, int) else 1 for d in shape], np.uint8)


@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_every_point_kept_is_the_fp32_graph(tiny: tuple[Path, Path, Path], target: str,
                                           tmp_path: Path) -> None:
    _, pre, ranges = tiny
    full = q8.Quantizer.open(pre, ranges, target, "minmax").quantize(  # type: ignore[arg-type]
        tmp_path / "q.onnx")
    qmodel, pmodel = onnx.load(str(full)), onnx.load(str(pre))
    found = points.find(qmodel, pmodel)
    kinds = {p.kind for p in found}
    assert kinds == {"activation", "weight"}  # activations are points, not only layers
    x = _frame(pre)
    want = _outputs(pre, x)
    quantized = _outputs(full, x)
    assert np.abs(quantized[0].astype(float) - want[0].astype(float)).max() > 1e-4
    every = points.keep_float(qmodel, pmodel, [p.name for p in found])
    onnx.checker.check_model(every)
    assert not [n for n in every.graph.node if n.op_type in ("QuantizeLinear",
                                                              "DequantizeLinear")]
    for got, ref in zip(_outputs(every, x), want, strict=True):
        np.testing.assert_allclose(got.astype(float), ref.astype(float), atol=1e-6)
    # one activation point kept: exactly its Q and DQ(s) go, the rest stays quantized
    act = next(p for p in found if p.kind == "activation")
    one = points.keep_float(qmodel, pmodel, [act.name])
    q_of = [n for n in one.graph.node if n.op_type == "QuantizeLinear"]
    assert len(q_of) == sum(n.op_type == "QuantizeLinear" for n in qmodel.graph.node) - 1
    assert act.name not in {n.input[0] for n in q_of}


def test_the_keep_search_converges_to_every_point() -> None:
    """A budget only FP32 meets: the search reaches 'all kept' (doubling, then bisection)."""
    names = [f"p{i}" for i in range(20)]
    harm = {n: 0.05 * (i + 1) for i, n in enumerate(names)}
    kept_of: dict[Path, tuple[str, ...]] = {}

    def excluding(kept: tuple[str, ...]) -> Path:
        path = Path("/k/" + str(len(kept)))
        kept_of[path] = kept
        return path

    def only(name: str) -> Path:
        return excluding(tuple(n for n in names if n != name))

    measured: list[int] = []

    def measure(path: Path) -> Measure:
        measured.append(len(kept_of[path]))
        return Measure(round(100.0 - sum(v for k, v in harm.items() if k not in kept_of[path]),
                             6))

    full = excluding(())
    found = search(full, measure(full), Budget(min_agreement=100.0), names, only, excluding,
                   measure, lambda p: measure(p).agreement)
    assert found.met and set(found.kept_fp32) == set(names) and found.measure.agreement == 100
    sizes = [len(t["kept_fp32"]) for t in found.trials]
    assert sizes == [0, *keep_counts(20), 18, 19]  # 1..8, 16, 20, then bisection 16..20
    # every unit in float is the FP32 graph: said, never measured
    assert 20 not in measured and found.trials[10]["note"] == (
        "every unit in float: the FP32 graph, not measured")
    assert keep_counts(20) == [1, 2, 3, 4, 5, 6, 7, 8, 16, 20]
    # a budget met at 12: bisection between the last miss (8) and the first hit (16)
    found = search(full, measure(full), Budget(min_agreement=round(100 - sum(
        sorted(harm.values())[:8]), 6)), names, only, excluding, measure,
        lambda p: measure(p).agreement)
    assert found.met and len(found.kept_fp32) == 12
    assert [len(t["kept_fp32"]) for t in found.trials][-3:] == [12, 10, 11]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_step_estimates_from_its_first_unit_and_stops_inside() -> None:
    clock, err = FakeClock(), io.StringIO()
    step = steps.Step("INT8 sensitivity", 10, "point", limit_s=5.0, stream=err, clock=clock)
    with step:
        for _ in range(10):
            clock.now += 2.0  # each unit takes 2 s
            step.tick()
        raise AssertionError("the bound must stop the step")  # pragma: no cover
    assert step.stopped and step.done == 3  # 6 s > 5 s: stopped after the third unit
    assert step.estimate_s == 20.0
    assert "INT8 sensitivity: about 20 s for 10 point(s) (first took 2.0 s, bound 5 s)" \
        in err.getvalue()
    assert step.info()["stopped_by_bound"] is True


def test_calibration_keeps_the_ranges_of_the_frames_before_the_bound(
        tiny: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, pre, _ = tiny
    x = _frame(pre)
    frames = [x] * 6
    calls = {"n": 0}

    def tick() -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise steps.BoundReached("calibration")

    got = q8.calibrate_bounded(pre, frames, _input(pre), "minmax",
                               tmp_path, tick, budget=1)  # 1 byte: one frame per pass
    assert got.chunk == 1 and got.frames == 2 and got.activation_mb >= 0
    assert len(got.data.data) > 0
    full = q8.calibrate_bounded(pre, frames, _input(pre), "minmax", tmp_path, budget=1 << 40)
    assert full.frames == 6 and full.chunk == q8.CHUNK


def _input(pre: Path) -> str:
    return str(ort.InferenceSession(str(pre)).get_inputs()[0].name)


def test_ranking_under_a_bound_keeps_what_it_measured() -> None:
    calls = {"n": 0}

    def tick() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise steps.BoundReached("INT8 sensitivity")

    scores = {"a": 99.0, "b": 97.0, "c": 90.0}
    ranked = rank_layers(["a", "b", "c"], lambda n: Path(n),
                         lambda p: scores[str(p)], tick)
    assert ranked == [("b", 3.0), ("a", 1.0), ("c", -1.0)]  # c never measured


def test_one_cache_file_holds_every_calibration(tmp_path: Path) -> None:
    ranges = tmp_path / "r.json"
    ranges.write_text(json.dumps({"t": [0.0, 1.0]}))
    cache = tmp_path / "m.calib.json"
    for key in ("k1", "k2", "k1"):
        calibration.save_cache(cache, key, ranges, {"method": "minmax"})
    blob = json.loads(cache.read_text())
    assert blob["schema"] == 2 and sorted(blob["entries"]) == ["k1", "k2"]
    assert calibration.load_cache(cache, "k2", tmp_path / "o.json")
    old = tmp_path / "old.calib.json"  # a schema-1 file still loads
    old.write_text(json.dumps({"schema": 1, "key": "k9", "ranges": {"t": [0, 2]}}))
    assert calibration.load_cache(old, "k9", tmp_path / "o2.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.calib.json", "o.json", "o2.json",
                                                          "old.calib.json", "r.json"]


def test_ranges_are_computed_once_per_run(tiny: tuple[Path, Path, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-channel off (same method, same frames) reuses the run's ranges: no second pass,
    no second cache file."""
    from segedge.export.evaluation.evaluate import LabelledFrames
    from segedge.export.precision.modes.int8_steps import Int8Run

    _, pre, _ = tiny
    passes: list[int] = []
    real = q8.calibrate_bounded

    def counted(*args: Any, **kw: Any) -> Any:
        passes.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(q8, "calibrate_bounded", counted)
    opts = SimpleNamespace(int8_target="tensorrt", calib_cache=None)
    req = SimpleNamespace(cfg=SimpleNamespace(precision=opts, quiet=True),
                          meta=SimpleNamespace(input=SimpleNamespace(name=_input(pre))),
                          workdir=tmp_path, out=tmp_path / "m_int8.onnx")
    frames = LabelledFrames([_frame(pre)] * 3, [None] * 3, None, "noise")  # type: ignore[list-item]
    run = Int8Run(req, pre, frames, None, [], None, 1e18)  # type: ignore[arg-type]
    first, info = run.ranges(frames, "minmax")
    again, info2 = run.ranges(frames, "minmax")
    assert first == again and len(passes) == 1 and info2["reused_in_run"]
    assert not info["cache_hit"] and Path(info["cache"]) == tmp_path / "m_int8.calib.json"
    assert [p.name for p in tmp_path.glob("*.calib*")] == ["m_int8.calib.json"]
    fresh = Int8Run(req, pre, frames, None, [], None, 1e18)  # type: ignore[arg-type]
    _, info3 = fresh.ranges(frames, "minmax")  # a new run: the one cache file answers
    assert info3["cache_hit"] and len(passes) == 1
    assert run.steps and run.steps[0]["step"] == "calibration"


def test_progress_reaches_a_log_one_line_a_minute() -> None:
    clock, out = FakeClock(), io.StringIO()
    log = LogTicker(10, "calibration", "frame", out, clock=clock)
    clock.now = 30.0
    log.update(2)
    assert out.getvalue() == ""  # less than a minute: nothing yet
    clock.now = 60.0
    log.update(1)
    assert out.getvalue() == "calibration: 3/10 frame, 0:01:00 elapsed, ETA 0:02:20\n"
    assert isinstance(progress_or_log(total=3, desc="x", stream=io.StringIO()), LogTicker)
    assert not isinstance(progress_or_log(total=3, quiet=True, stream=io.StringIO()),
                          LogTicker)


def test_peak_memory_is_measured_and_reported() -> None:
    from segedge.export.precision import modes
    from segedge.export.precision.memory import PeakRSS

    with PeakRSS(interval_s=0.01) as peak:
        block = np.ones(64 * 2**20, np.uint8)  # 64 MiB touched
        peak.sample()
        del block
    info = peak.info()
    assert info["peak_rss_mb"] is not None and info["start_rss_mb"] is not None
    assert float(info["peak_rss_mb"]) >= float(info["start_rss_mb"]) + 60  # type: ignore[arg-type]
    section = {"frames": 8, "argmax_agreement": 99.5,
               "cpu_latency_ms": {"fp32": 2.0, "int8": 1.0},
               "resources": {**info, "steps": []}}
    lines = modes.get("int8").report_lines(section)
    assert f"int8 peak memory {info['peak_rss_mb']:.0f} MB resident" in lines[-1]


def test_a_miss_is_kept_only_under_a_name_that_says_so() -> None:
    from segedge.export.precision.modes.int8_finish import missed_path

    assert missed_path(Path("out/road_int8.onnx")) == Path("out/road_int8.missed-budget.onnx")


def test_a_missed_budget_publishes_nothing_and_keeps_the_closest_only_when_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The search is stopped short (as its time bound would): the export is refused, the
    failed report carries the peak memory and the points tried, and the closest artifact
    exists only as <out>.missed-budget.onnx with --int8-keep-closest."""

    from segedge.export.precision.modes import int8_steps
    from segedge.export.precision.sensitivity import SearchResult

    def stopped(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
        found = points.find(onnx.load(str(full)), onnx.load(str(run.pre)))
        m = Measure(42.0)
        return SearchResult(full, (), m, False, tuple((p.name, -1.0) for p in found), (
            {"kept_fp32": [], **m.to_dict()}, {"stopped": "time bound"})), found

    monkeypatch.setattr(int8_steps, "fallback_step", stopped)
    from segedge.export import pipeline

    gated: list[Path] = []  # the reduced-precision gates: never for a graph that missed
    monkeypatch.setattr(pipeline, "reduced_precision_sections",
                        lambda cfg, task, path, *a: gated.append(path) or {})
    for keep, out, error in missed_int8_exports(tmp_path, 99.0):
        message = str(error)
        assert "on the selection frames with 0 of" in message
        assert "not measured, stopped by the time bound" in message
        missed = out.with_name(f"m{int(keep)}_int8.missed-budget.onnx")
        assert missed.is_file() == keep
        assert (f"closest kept as {missed}" in message) == keep
        failed = json.loads(out.with_suffix(".failed.report.json").read_text())
        sec = failed["precision_report"]
        assert sec["resources"]["peak_rss_mb"] > 0 and not sec["budget"]["met"]
        assert sec["points"]["total"] == len(sec["sensitivity"]) > 0
    assert sorted(p.name for p in tmp_path.glob("*calib*.json")) == [
        "m0_int8.calib.json", "m1_int8.calib.json"]
    assert gated == []


def test_a_step_used_only_for_its_tick_counts_from_its_construction() -> None:
    """The calibration search ticks a Step it never enters: its bound must run from when
    it was made, not from the monotonic clock's epoch (which stopped every candidate)."""
    now = [1000.0]
    step = steps.Step("calibration search", 4, "frame", limit_s=5.0, quiet=True,
                clock=lambda: now[0])
    now[0] += 1.0
    step.tick()  # 1 s of a 5 s bound: goes on
    assert step.done == 1 and step.elapsed == 1.0
    now[0] += 5.0
    with pytest.raises(steps.BoundReached):
        step.tick()
