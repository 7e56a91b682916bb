"""Issue 21: where INT8 is slower than FP32/bf16 on the CPU it targets, segexport says so
before the long search and stops (exit 3, one line, nothing written) unless the user
confirms with --int8-even-if-slower.

The speed measurement is replaced (runtimes.latencies: fixed figures, INT8 slower), so
the verdict is deterministic; the search steps after the probe are replaced too (the stop
must never reach them; with the flag they are reached and end quickly).  A stop needs
INT8 slower beyond noise (``int8_speed.slower``: a margin and outside the spread); the
report times each graph once; ``--int8-even-if-slower`` is refused where no stop applies.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import onnx
import pytest

from segedge.export.cli import main
from segedge.export.onnx.tools import read_metadata
from segedge.export.precision import points, runtimes
from segedge.export.precision.modes import int8_steps
from segedge.export.precision.sensitivity import Budget, Measure, SearchResult
from segedge.runtime.timing import Timing
from tests.export.precision_helpers import TINY_MODEL

WARNING = "INT8 is not faster than fp32 on onnxruntime (30.0 ms vs fp32 10.0 ms)"
STOP = ("segexport: error: INT8 speed: expected INT8 faster than FP32/bf16 on the CPU it "
        f"targets (--int8-target cpu), got {WARNING}, measured before the INT8 search; "
        "stopped, no artifact written (--int8-even-if-slower quantizes anyway, reusing the "
        "calibration cache; FP32 or --fp16 may serve this CPU better)")


TIMED: list[tuple[str, ...]] = []  # the labels of every runtimes.latencies call


def _latencies(graphs: Any, tensor: np.ndarray, meta: Any, runtime: str | None = None,
               budget_s: float = 2.0) -> dict[str, Timing]:
    """INT8 graphs (int8_full.onnx, int8.onnx) take 30 ms, the FP32 graph 10 ms, every call."""
    assert runtime in (None, runtimes.ORT) and {h for _, h in graphs.values()} == {"f32"}
    TIMED.append(tuple(graphs))
    return {label: Timing((30.0 if path.name.startswith("int8") else 10.0,) * 5)
            for label, (path, _) in graphs.items()}


def _no_search(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
    raise AssertionError("the search must not run after the speed stop")


def _met_at_once(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
    """The fully quantized graph, taken as meeting the budget (no sensitivity pass)."""
    found = points.find(onnx.load(str(full)), onnx.load(str(run.pre)))
    return SearchResult(full, (), Measure(100.0), True, (), ()), found


@pytest.fixture
def calib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(runtimes, "latencies", _latencies)
    monkeypatch.setattr(runtimes, "available", lambda: (runtimes.ORT,))
    TIMED.clear()
    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"f{i}.png"), rng.integers(0, 256, (64, 96, 3), np.uint8))
    return folder


def _args(calib: Path, out: Path, *extra: str) -> list[str]:
    return [f"{TINY_MODEL}:TinySeg", "--num-classes", "3", "--imgsz", "64", "96", "--int8",
            "--int8-target", "cpu", "--calib", str(calib), "--calib-count", "4",
            "--calib-method", "minmax", "--int8-min-agreement", "0", "--no-check-bf16",
            "-o", str(out), *extra]


def test_a_slower_int8_on_a_cpu_target_stops_before_the_search(
        calib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(int8_steps, "fallback_step", _no_search)
    out = tmp_path / "m_int8.onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(_args(calib, out, "-q"))
    assert exit_info.value.code == 3
    assert [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()] == [STOP]
    # no artifact, report or work folder: only the calibration cache a rerun reuses
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "m_int8.calib.json"]


def test_the_flag_lets_it_go_on_and_the_report_keeps_the_warning(
        calib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    reached: list[Path] = []

    def search(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
        reached.append(full)
        return _met_at_once(run, full, budget)

    monkeypatch.setattr(int8_steps, "fallback_step", search)
    out = tmp_path / "m_int8.onnx"
    main(_args(calib, out, "--int8-even-if-slower"))  # returns on success
    err = capsys.readouterr().err
    assert len(reached) == 1  # the search ran after the probe
    assert f"warning: {WARNING} (measured before the INT8 search)" in err.splitlines()
    meta = read_metadata(onnx.load(str(out)))
    assert meta is not None and meta.precision == "int8" and meta.extra["int8"]["target"] == "cpu"
    sec = json.loads(out.with_suffix(".report.json").read_text())["precision_report"]
    assert sec["speed_warning_before_search"] == WARNING
    assert sec["speed"]["warning"] == WARNING and sec["speed"]["backend"] == "onnxruntime"
    assert sec["speed"]["latency_ms"] == {"onnxruntime": {"fp32": 10.0, "int8": 30.0}}
    assert sec["speed"]["note"] == "target CPU: verdict on onnxruntime"
    # timed twice in all: the probe, and the report's CPU latency, which the speed section
    # reuses for the reference runtime instead of timing the same graphs again
    assert TIMED == [("fp32", "int8"), ("fp32", "int8")]
    assert sec["cpu_latency_ms"] == sec["speed"]["latency_ms"]["onnxruntime"]


@pytest.mark.parametrize(("target", "stop", "stops"), [
    ("cpu", True, True), ("cpu", False, False), ("tensorrt", True, False)])
def test_only_a_cpu_target_that_was_not_confirmed_stops(
        monkeypatch: pytest.MonkeyPatch, target: str, stop: bool, stops: bool) -> None:
    """TensorRT's speed is not measured on this CPU: it warns and goes on; the Python API's
    default (int8_stop_if_slower False) goes on as well."""
    from segedge.export.config import PrecisionOptions
    from segedge.export.precision.modes import int8_speed

    assert PrecisionOptions().int8_stop_if_slower is None  # not said: warn and go on
    verdicts = [{"warning": WARNING}, {"warning": None}]
    monkeypatch.setattr(int8_speed, "speed_section", lambda *a, **k: verdicts.pop(0))
    run = SimpleNamespace(opts=SimpleNamespace(int8_target=target, int8_stop_if_slower=stop),
                          req=SimpleNamespace(fp32=Path("fp32.onnx"), meta=None,
                                              cfg=SimpleNamespace(quiet=True)),
                          calib=SimpleNamespace(tensors=[np.zeros(1, np.uint8)]),
                          search_on=None, left_out={})
    if stops:
        with pytest.raises(int8_speed.SlowerThanFloatError) as err:
            int8_speed.speed_first(run, Path("int8_full.onnx"))  # type: ignore[arg-type]
        assert err.value.exit_code == 3 and f"segexport: error: {err.value}" == STOP
    else:
        assert int8_speed.speed_first(run, Path("int8_full.onnx")) == WARNING  # type: ignore[arg-type]
    assert int8_speed.speed_first(run, Path("int8_full.onnx")) is None  # type: ignore[arg-type]


def test_a_tensorrt_target_says_the_cpu_figures_are_for_reference(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The default target is TensorRT, often exported on a machine with no GPU: the warning
    says the search goes on and how a CPU deployment would stop instead (one line)."""
    from segedge.export.precision.modes import int8_speed

    monkeypatch.setattr(int8_speed, "speed_section", lambda *a, **k: {"warning": WARNING})
    for target, tail in (("tensorrt", "; the INT8 target is tensorrt, so these CPU figures "
                          "are for reference and the search goes on (for a CPU deployment, "
                          "--int8-target cpu stops here instead)"), ("cpu", "")):
        run = SimpleNamespace(opts=SimpleNamespace(int8_target=target,
                                                   int8_stop_if_slower=False),
                              req=SimpleNamespace(fp32=Path("fp32.onnx"), meta=None,
                                                  cfg=SimpleNamespace(quiet=False)),
                              calib=SimpleNamespace(tensors=[np.zeros(1, np.uint8)]),
                              search_on=None, left_out={})
        assert int8_speed.speed_first(run, Path("int8_full.onnx")) == WARNING  # type: ignore[arg-type]
        assert capsys.readouterr().err == (f"warning: {WARNING} (measured before the INT8 "
                                           f"search){tail}\n")


def _t(*ms: float) -> Timing:
    return Timing(tuple(ms))


@pytest.mark.parametrize(("int8", "other", "is_slower"), [
    (_t(10, 10, 10, 10, 10), _t(10, 10, 10, 10, 10), False),  # a tie is not slower
    (_t(10.4, 10.4, 10.4, 10.4), _t(10, 10, 10, 10), False),  # 4 %: within the margin
    (_t(9, 11, 13, 15, 17), _t(8, 10, 11, 12, 14), False),  # 18 % but the spreads overlap
    (_t(13, 13.5, 14, 14.5, 15), _t(10, 10.5, 11, 11.5, 12), True),  # beyond both
    (_t(10.6,), _t(10.0,), True),  # one figure each (reused report numbers): the margin
])
def test_int8_is_slower_only_beyond_the_margin_and_the_spread(
        int8: Timing, other: Timing, is_slower: bool) -> None:
    from segedge.export.precision.modes.int8_speed import MARGIN, slower

    assert MARGIN == 0.05
    assert slower(int8, other) is is_slower


def test_a_noisy_tie_does_not_stop_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """Interleaved rounds where INT8's median is 20 % higher but its calls overlap FP32's."""
    from segedge.export.precision.modes import int8_speed

    noisy = {"fp32": _t(8, 9, 10, 12, 14, 15), "int8": _t(9, 11, 12, 13, 15, 16)}
    monkeypatch.setattr(runtimes, "available", lambda: (runtimes.ORT,))
    monkeypatch.setattr(runtimes, "latencies", lambda graphs, *a, **k: {
        label: noisy[label] for label in graphs})
    run = SimpleNamespace(opts=SimpleNamespace(int8_target="cpu", int8_stop_if_slower=True),
                          req=SimpleNamespace(fp32=Path("fp32.onnx"), meta=None,
                                              cfg=SimpleNamespace(quiet=True)),
                          calib=SimpleNamespace(tensors=[np.zeros(1, np.uint8)]),
                          search_on=None, left_out={})
    assert int8_speed.speed_first(run, Path("int8_full.onnx")) is None  # type: ignore[arg-type]
    sec = int8_speed.speed_section(Path("fp32.onnx"), Path("int8.onnx"), np.zeros(1),
                                   None, "cpu")  # type: ignore[arg-type]
    assert sec["warning"] is None and sec["faster_than"] == []
    assert sec["latency_ms"] == {"onnxruntime": {"fp32": 11.0, "int8": 12.5}}


@pytest.mark.parametrize(("extra", "message"), [
    (("--fp16",), "--int8-even-if-slower: expected --int8 as well (it confirms a slower INT8), "
                  "got precision fp16"),
    (("--precision", "fp32"), "--int8-even-if-slower: expected --int8 as well (it confirms a "
                              "slower INT8), got precision fp32"),
    (("--int8", "--calib", "frames/", "--int8-target", "tensorrt"),
     "--int8-even-if-slower: expected --int8-target cpu (the INT8 speed stop is for a CPU "
     "target), got --int8-target tensorrt"),
])
def test_the_flag_is_refused_where_no_speed_stop_applies(
        extra: tuple[str, ...], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *extra, "--int8-even-if-slower", "-o", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()] == [
        f"segexport: error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_a_failed_keep_closest_copy_leaves_no_file(
        calib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The missed-budget copy goes through runtime/io's atomic writer: a copy that fails
    half-way leaves neither the final name nor a temporary beside it."""
    from segedge.export.precision.modes import int8_finish

    def missed(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
        found, pts = _met_at_once(run, full, budget)
        return SearchResult(full, (), Measure(100.0), False, (), ()), pts

    def broken_copy(src: Path, dst: Path) -> None:
        Path(dst).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(int8_steps, "fallback_step", missed)
    monkeypatch.setattr(int8_finish.shutil, "copyfile", broken_copy)
    out = tmp_path / "m_int8.onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(_args(calib, out, "-q", "--int8-even-if-slower", "--int8-keep-closest"))
    assert exit_info.value.code != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib", "m_int8.calib.json"]
