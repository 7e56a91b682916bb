"""benchmarks/int8_budget.py writes honest figures: the load, frames used of those asked,
each step, a missed target as MISSED, no field it did not record (never "None"), the
command line that measured them, and one RESULTS.md section replaced in place.  Its
calibration frames are a required flag, never searched for.  (No export runs here: the
measurement itself is replaced by what it returns.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from segedge.benchmarks import int8_budget, int8_budget_report


def _result(load: list[float], frames: int, seconds: float) -> dict[str, Any]:
    return {
        "model": "ddrnet23_slim", "size": [512, 1024], "calib_count": 300, "weights": "random",
        "seconds": seconds, "memory": {"peak_rss_mb": 2661.3}, "load": load, "cores": 2,
        "cpu": "Test CPU", "date": "2026-12-05 15:20 UTC", "agreement": 99.1,
        "budget": {"met": True}, "error": None,
        "calibration": {"method": "percentile", "frames": frames, "chunk_frames": 1,
                        "activation_mb_per_frame": 291.9,
                        **({"stopped": f"time bound: ranges from {frames} of 300 frames"}
                           if frames < 300 else {})},
        "int8_resources": {"peak_rss_mb": 2661.3, "steps": [
            {"step": "calibration", "units": "frame", "done": frames, "total": 300,
             "seconds": 361.3, "estimate_s": 940.7, "bound_s": 359.2,
             "stopped_by_bound": frames < 300},
            {"step": "calibration search", "seconds": 50.9, "bound_s": 106.1,
             "candidates": 1}]},
        "profiles": [{"model": "demo", "frames": 300, "load_start": 0.5, "load_end": 0.6,
                      "per_frame_s": {"ort HistogramCalibrater": {"frames": 4, "median": 1.8},
                                      "stream exact": {"frames": 4, "median": 0.45},
                                      "stream sampled": {"frames": 4, "median": 0.2}},
                      "exact_vs_ort": {"max_pct": 0.049},
                      "all_frames": {"sample_per_tensor_frame": 111849,
                                     "per_frame_s": {"network": 0.07, "exact": 0.19,
                                                     "sampled": 0.03},
                                     "sampled_vs_exact": {"tensors": 41, "median_pct": 0.1,
                                                          "p95_pct": 0.6, "max_pct": 0.83,
                                                          "over_1pct": 0}}}],
    }


def test_a_loaded_partial_run_says_so(tmp_path: Path) -> None:
    out, results = tmp_path / "INT8_BUDGET.md", tmp_path / "RESULTS.md"
    results.write_text("# segedge benchmarks\n\nother sections stay\n")
    int8_budget_report.write(_result([10.2, 6.7], 26, 1000.0), out, results)
    text = out.read_text()
    assert "load average 10.2 at the start, 6.7 at the end (ABOVE the core count" in text
    assert "provisional, re-run on a quiet machine" in text
    assert "calibration frames used: **26 of 300 asked** (time bound: ranges from 26" in text
    assert "1000 s (target < 15 min: MISSED)" in text
    assert "  - calibration: 361.3 s, 26 frame(s) of 300, 13.90 s a frame" in text
    assert "HistogramCalibrater 1.8 s (before)" in text and "max 0.83 %, 0 over 1 %" in text
    assert json.loads(out.with_suffix(".json").read_text())["calibration"]["frames"] == 26
    # a quiet, complete run replaces the one section; the rest of RESULTS.md stays
    int8_budget_report.write(_result([0.4, 0.5], 300, 600.0), out, results)
    md = results.read_text()
    assert md.startswith("# segedge benchmarks\n\nother sections stay\n")
    assert md.count(int8_budget_report.BEGIN) == 1 and md.count(int8_budget_report.END) == 1
    assert "**300 of 300 asked**" in md and "26 of 300" not in md
    assert "600 s (target < 15 min: met)" in md and "ABOVE" not in md


def _streamed(result: dict[str, Any]) -> dict[str, Any]:
    """What a streamed percentile calibration records: no passes, so no pass size, and a
    keep-in-float search whose trial count is not known in advance."""
    result["calibration"] = {"method": "percentile", "frames": 32}
    result["int8_resources"]["steps"].append(
        {"step": "keep-in-float search", "units": "trial", "done": 16, "total": None,
         "seconds": 86.71, "estimate_s": None, "bound_s": 191.1, "stopped_by_bound": False})
    result["runtimes"] = {"onnxruntime": 99.0007, "openvino": 99.0078}
    return result


def test_fields_not_recorded_are_left_out_not_printed_as_none(tmp_path: Path) -> None:
    out = tmp_path / "INT8_BUDGET.md"
    int8_budget_report.write(_streamed(_result([0.5, 1.7], 300, 522.3)), out, None)
    text = out.read_text()
    assert "None" not in text, text
    assert "- calibration frames used: **32 of 300 asked**; percentile\n" in text
    assert ("  - keep-in-float search: 86.71 s, 16 trial(s), 5.42 s a trial, bound 191.1 s\n"
            in text)
    assert ("- INT8 agreement with FP32 (report frames): 99.1, on onnxruntime 99.0007, on "
            "openvino 99.0078; budget {'met': True}") in text
    # results measured before the command line was recorded say so, never a guess
    assert "reproduce: command line not recorded; JSON: INT8_BUDGET.json." in text


class _Measured:
    """Stands in for the export and the profile: records what main() asked of them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Path]] = []

    def measure(self, model: str, calib: Path, *args: Any) -> dict[str, Any]:
        self.calls.append(("measure", calib))
        result = _result([0.4, 0.5], 300, 600.0)
        return {k: result[k] for k in ("model", "size", "calib_count", "weights", "seconds",
                                       "memory", "int8_resources", "agreement", "budget",
                                       "calibration", "error")}

    def profile(self, model: str, checkpoint: Path | None, calib: Path,
                *args: Any) -> dict[str, Any]:
        self.calls.append(("profile", calib))
        return dict(_result([0.4, 0.5], 300, 600.0)["profiles"][0], model=model)


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> _Measured:
    fake = _Measured()
    monkeypatch.setattr(int8_budget, "measure", fake.measure)
    monkeypatch.setattr(int8_budget, "profile", fake.profile)
    return fake


def test_the_command_line_as_given_is_recorded_as_the_reproduce_line(
        tmp_path: Path, measured: _Measured, monkeypatch: pytest.MonkeyPatch) -> None:
    calib = tmp_path / "calib frames"  # a space: the recorded line must still run
    calib.mkdir()
    out, results = tmp_path / "BUDGET.md", tmp_path / "RESULTS.md"
    results.write_text("# benchmarks\n")
    argv = ["--calib", str(calib), "--checkpoint", "ckpt/ddrnet.pt", "--num-classes", "11",
            "--profile-models", "demo", "--out", str(out), "--results", str(results)]
    monkeypatch.setattr(sys, "argv", ["/somewhere/int8_budget.py", *argv])
    assert int8_budget.main() == 0  # sys.argv, as a shell gave it
    command = ("python -m segedge.benchmarks.int8_budget --calib "
               f"'{calib}' --checkpoint ckpt/ddrnet.pt --num-classes 11 --profile-models demo "
               f"--out {out} --results {results}")
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["command"] == command and saved["calib"] == str(calib)
    assert f"; reproduce: `{command}`; JSON: BUDGET.json." in out.read_text()
    assert f"reproduce: `{command}` (details: BUDGET.md)" in results.read_text()
    assert f"`--calib-count 300` frames from `{calib}`" in out.read_text()
    assert measured.calls == [("measure", calib), ("profile", calib)]


def test_no_calibration_frames_flag_is_one_line_and_nothing_is_searched(
        tmp_path: Path, measured: _Measured, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "BUDGET.md"
    assert int8_budget.main(["--out", str(out), "--results", ""]) == 2
    err = capsys.readouterr().err
    assert err == ("int8_budget: expected --calib DIR (the calibration frames, e.g. "
                   "../shared/data/camvid/train), got none\n")
    assert measured.calls == [] and not out.exists()


def test_measure_records_each_runtimes_agreement(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The precision report's per-runtime figures reach the results (OpenVINO's too)."""
    from segedge.export import pipeline

    report = {"precision_report": {
        "argmax_agreement": 99.0007, "budget": {"met": True},
        "calibration": {"method": "percentile", "frames": 32, "searched": ["..."]},
        "runtimes": {"onnxruntime": {"argmax_agreement": 99.0007},
                     "openvino": {"error": "no CPU plugin"}}}}
    monkeypatch.setattr(pipeline, "export", lambda cfg: report)
    got = int8_budget.measure("demo", tmp_path, 8, (64, 64), None, 60.0)
    assert got["runtimes"] == {"onnxruntime": 99.0007, "openvino": "cannot load: no CPU plugin"}
    assert got["calibration"] == {"method": "percentile", "frames": 32}
    assert got["agreement"] == 99.0007 and got["error"] is None
