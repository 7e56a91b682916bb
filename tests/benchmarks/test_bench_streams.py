"""`segbench --streams N`: several streams in one run against one stream's model alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segedge.benchmarks.bench_streams import RUNS, StreamsPlan, summarize
from segedge.benchmarks.cli import main
from segedge.benchmarks.e2e import usable_cores
from segedge.runtime.errors import InputError


def test_cli_measures_every_run_and_writes_both_files(
        workdir: Path, demo_labels: object, clip: tuple[Path, int], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    video, frames = clip
    out_json, out_md = tmp_path / "s.json", tmp_path / "s.md"
    main(["demo", "--streams", "2", "--video", str(video), "--imgsz", "64", "96",
          "--e2e-frames", "6", "--e2e-repeats", "1", "--workdir", str(workdir), "--no-isolate",
          "-q", "--json", str(out_json), "--markdown", str(out_md)])
    data = json.loads(out_json.read_text())
    s = data["streams"]
    assert data["environment"]["cpu"]["model"]  # the file names the CPU it was measured on
    assert set(s["fps_median"]) == set(RUNS) and all(v > 0 for v in s["fps_median"].values())
    assert s["frames_total"] == 2 * 6 and s["streams"] == 2 and s["exit_codes"] == [0]
    assert s["batch"]["limit"] == 2 and s["batch"]["artifact_batch"] == 2
    hist = {int(k): v for k, v in s["batch"]["histogram"].items()}
    assert sum(k * v for k, v in hist.items()) == 12
    assert s["aggregate_vs_model_only"] == pytest.approx(
        s["fps_median"]["streams"] / s["fps_median"]["model-only"], rel=1e-3)
    md = out_md.read_text()
    assert data["environment"]["cpu"]["model"] in md and "| streams-no-output |" in md
    printed = capsys.readouterr().out
    assert "2 streams of clip.mp4" in printed and "of single-stream model-only" in printed


def test_summary_takes_medians_and_ratios() -> None:
    runs = {k: [{"fps": f, "cpu_ms_per_frame": 100.0, "frames": 8}
                for f in (1.0, 3.0, 2.0)] for k in RUNS}
    for r, f in zip(runs["streams"], (1.8, 2.7, 0.9), strict=True):
        r["fps"] = f
    plan = StreamsPlan(model="m", video=__file__, threads=2, repeats=3)
    s = summarize(plan, runs, "why", "onnxruntime", [None] * 15)
    assert s["fps_median"]["model-only"] == 2.0 and s["fps_median"]["streams"] == 1.8
    assert s["aggregate_vs_model_only"] == 0.9 and s["meets_target"]
    assert s["per_repeat"] == [1.8, 0.9, 0.45]
    assert s["best_run"] == "streams-unbatched" and s["best_vs_model_only"] == 1.0


@pytest.mark.parametrize(("kw", "flag"), [({"streams": 0}, "--streams"),
                                          ({"repeats": 0}, "--repeats"),
                                          ({"frames": 0}, "--e2e-frames"),
                                          ({"video": "/nonexistent.mp4"}, "--video")])
def test_plan_validates_itself(kw: dict[str, object], flag: str) -> None:
    args: dict[str, object] = {"model": "m", "video": __file__, "threads": 2, **kw}
    with pytest.raises(InputError, match=flag):
        StreamsPlan(**args)  # type: ignore[arg-type]


def test_cli_without_the_clip_is_one_line(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--streams", "4", "--data", str(tmp_path), "--workdir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("segbench: error: --data: expected a folder holding")


def test_the_ceiling_takes_the_runs_own_cpu_not_the_model_loading() -> None:
    """A process's CPU per frame includes compiling the model; the run's own figure
    (RunStats.cpu_ms_per_frame) is what the cores must spread, when it is reported."""
    runs = {k: [{"fps": 20.0, "cpu_ms_per_frame": 400.0, "frames": 8} for _ in range(3)]
            for k in RUNS}
    plan = StreamsPlan(model="m", video=__file__, threads=2, repeats=3)
    loading = summarize(plan, runs, "why", "onnxruntime", [None] * 21)
    for k in ("streams", "streams-unbatched"):
        for r, cpu in zip(runs[k], (160.0, 150.0, 140.0), strict=True):
            r["run_cpu_ms_per_frame"] = cpu
    own = summarize(plan, runs, "why", "onnxruntime", [None] * 21)
    model_wall, cores = 50.0, usable_cores()  # 20 FPS
    assert own["ceiling_vs_model_only"] == round(min(1.0, model_wall / (150.0 / cores)), 3)
    assert loading["ceiling_vs_model_only"] == round(min(1.0, model_wall / (400.0 / cores)),
                                                     3)
    assert own["ceiling_vs_model_only"] != loading["ceiling_vs_model_only"]
