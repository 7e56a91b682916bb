"""Issue 21: where INT8 is slower than FP32/bf16 on the CPU it targets, segexport says so
before the long search and stops (exit 3, one line, nothing written) unless the user
confirms with --int8-even-if-slower.

The speed measurement is replaced (runtimes.latency_ms: fixed figures, INT8 slower), so
the verdict is deterministic; the search steps after the probe are replaced too (the stop
must never reach them; with the flag they are reached and end quickly).
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
from tests.export.precision_helpers import TINY_MODEL

WARNING = "INT8 is not faster than fp32 on onnxruntime (30.0 ms vs fp32 10.0 ms)"
STOP = ("segexport: error: INT8 speed: expected INT8 faster than FP32/bf16 on the CPU it "
        f"targets (--int8-target cpu), got {WARNING}, measured before the INT8 search; "
        "stopped, no artifact written (--int8-even-if-slower quantizes anyway, reusing the "
        "calibration cache; FP32 or --fp16 may serve this CPU better)")


def _latency(path: Path, tensor: np.ndarray, meta: Any, runtime: str = runtimes.ORT,
             hint: str = "f32", budget_s: float = 2.0) -> float:
    """INT8 graphs (int8_full.onnx, int8.onnx) take 30 ms, the FP32 graph 10 ms."""
    assert runtime == runtimes.ORT and hint == "f32"
    return 30.0 if path.name.startswith("int8") else 10.0


def _no_search(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
    raise AssertionError("the search must not run after the speed stop")


def _met_at_once(run: Any, full: Path, budget: Budget) -> tuple[SearchResult, list[Any]]:
    """The fully quantized graph, taken as meeting the budget (no sensitivity pass)."""
    found = points.find(onnx.load(str(full)), onnx.load(str(run.pre)))
    return SearchResult(full, (), Measure(100.0), True, (), ()), found


@pytest.fixture
def calib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(runtimes, "latency_ms", _latency)
    monkeypatch.setattr(runtimes, "available", lambda: (runtimes.ORT,))
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


@pytest.mark.parametrize(("target", "stop", "stops"), [
    ("cpu", True, True), ("cpu", False, False), ("tensorrt", True, False)])
def test_only_a_cpu_target_that_was_not_confirmed_stops(
        monkeypatch: pytest.MonkeyPatch, target: str, stop: bool, stops: bool) -> None:
    """TensorRT's speed is not measured on this CPU: it warns and goes on; the Python API's
    default (int8_stop_if_slower False) goes on as well."""
    from segedge.export.config import PrecisionOptions
    from segedge.export.precision.modes import int8_speed

    assert PrecisionOptions().int8_stop_if_slower is False
    verdicts = [{"warning": WARNING}, {"warning": None}]
    monkeypatch.setattr(int8_speed, "speed_section", lambda *a, **k: verdicts.pop(0))
    run = SimpleNamespace(opts=SimpleNamespace(int8_target=target, int8_stop_if_slower=stop),
                          req=SimpleNamespace(fp32=Path("fp32.onnx"), meta=None,
                                              cfg=SimpleNamespace(quiet=True)),
                          calib=SimpleNamespace(tensors=[np.zeros(1, np.uint8)]))
    if stops:
        with pytest.raises(int8_speed.SlowerThanFloatError) as err:
            int8_speed.speed_first(run, Path("int8_full.onnx"))  # type: ignore[arg-type]
        assert err.value.exit_code == 3 and f"segexport: error: {err.value}" == STOP
    else:
        assert int8_speed.speed_first(run, Path("int8_full.onnx")) == WARNING  # type: ignore[arg-type]
    assert int8_speed.speed_first(run, Path("int8_full.onnx")) is None  # type: ignore[arg-type]
