"""benchmarks/int8_budget.py writes honest figures: the load, frames used of those asked,
each step, a missed target as MISSED, and one RESULTS.md section replaced in place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from segedge.benchmarks import int8_budget


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
    int8_budget.write(_result([10.2, 6.7], 26, 1000.0), out, results)
    text = out.read_text()
    assert "load average 10.2 at the start, 6.7 at the end (ABOVE the core count" in text
    assert "provisional, re-run on a quiet machine" in text
    assert "calibration frames used: **26 of 300 asked** (time bound: ranges from 26" in text
    assert "1000 s (target < 15 min: MISSED)" in text
    assert "  - calibration: 361.3 s, 26 frame(s) of 300, 13.90 s a frame" in text
    assert "HistogramCalibrater 1.8 s (before)" in text and "max 0.83 %, 0 over 1 %" in text
    assert json.loads(out.with_suffix(".json").read_text())["calibration"]["frames"] == 26
    # a quiet, complete run replaces the one section; the rest of RESULTS.md stays
    int8_budget.write(_result([0.4, 0.5], 300, 600.0), out, results)
    md = results.read_text()
    assert md.startswith("# segedge benchmarks\n\nother sections stay\n")
    assert md.count(int8_budget.BEGIN) == 1 and md.count(int8_budget.END) == 1
    assert "**300 of 300 asked**" in md and "26 of 300" not in md
    assert "600 s (target < 15 min: met)" in md and "ABOVE" not in md
