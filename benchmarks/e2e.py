"""End-to-end mode: `segrun` on a video against the model alone and a plain loop.

Three measurements of the same network on the same file, interleaved and
repeated so that a load spike from elsewhere hits all of them alike:

* model-only: the backend `segrun --backend auto` picks here (resolved once,
  before the repeats, through the same cached verdict segrun reads), median
  latency on one frame with the same threads;
* segrun: the real pipeline, decode to encoded overlay video, frames / wall time;
* plain: the cv2 + numpy + ONNX Runtime loop in one Python thread with every
  library at its default threads (`plain_loop`).

Next to segrun (``--mode auto``: throughput for a file, several inference calls in
flight where the backend runs them) the same run in ``--mode latency`` (one call at a
time), and a live row: segrun on a live synthetic camera (``synthetic://?live=1`` at
the video's size, latency mode) giving capture-to-output p50/p90 against the
model-only time per frame.

Ratios are of the medians over repeats: segrun / model-only (how much of the
model's speed the pipeline keeps) and segrun / plain (what segedge buys).  The
physical ceiling of the first is shown too: the CPU time segrun spends per
frame, spread over the cores, against the model's own wall time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from segedge.benchmarks import isolate
from segedge.benchmarks.artifacts import ArtifactRequest, ArtifactStore
from segedge.benchmarks.cells import Record
from segedge.benchmarks.jobs import ModelJob, SkipCell
from segedge.benchmarks.measure import (
    LiveJob,
    SegrunJob,
    measure_live,
    measure_model,
    measure_plain_loop,
    measure_segrun,
)
from segedge.benchmarks.plain_loop import LoopJob
from segedge.benchmarks.stats import known_median, median, ratio
from segedge.runtime.errors import InputError

# Targets (issue 13: end to end), checked by this benchmark.
TARGET_VS_MODEL = 0.9
TARGET_VS_PLAIN = 1.5
TARGET_FPS = 25.0  # real time on the dash-cam clip
TARGET_LIVE_VS_MODEL = 1.5  # live capture-to-output p50 / model-only time (issue 22)
RUNS = ("model-only", "segrun", "segrun-latency", "plain-loop", "live")
STAGE_NAMES = {"read": "decode", "resize": "resize", "preprocess": "preprocess", "infer": "infer",
               "postprocess": "postprocess", "draw": "draw", "write": "encode"}
Tick = Callable[[str], None]
Settle = Callable[[], float | None]


@dataclass(frozen=True)
class E2EPlan:
    model: str  # zoo name
    video: str
    threads: int
    imgsz: tuple[int, int] | None = None  # None: the video's size rounded up to `multiple`
    frames: int | None = None  # None: the whole video
    repeats: int = 1
    iters: int = 30  # model-only timed iterations per repeat
    warmup: int = 3
    weights: str = "auto"
    checkpoint: str | None = None
    num_classes: int | None = None
    multiple: int = 32
    backend: str = "auto"  # segrun --backend
    live_frames: int = 90  # frames the live synthetic camera serves (at live_fps)
    live_fps: float = 30.0

    def size(self) -> tuple[int, int]:
        if self.imgsz is not None:
            return self.imgsz
        cap = cv2.VideoCapture(self.video)
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        cap.release()
        if h <= 0 or w <= 0:
            raise InputError("--video", "a readable video file", self.video)
        m = self.multiple
        return (-(-h // m) * m, -(-w // m) * m)

    def steps(self) -> int:
        return len(RUNS) * self.repeats


def _request(plan: E2EPlan, size: tuple[int, int], emit: str, fmt: str) -> ArtifactRequest:
    return ArtifactRequest(model=plan.model, precision="fp32", imgsz=size, emit=emit,
                           input_format=fmt, weights=plan.weights, checkpoint=plan.checkpoint,
                           num_classes=plan.num_classes)


def run_e2e(plan: E2EPlan, store: ArtifactStore, isolated: bool, tick: Tick,
            settle: Settle = lambda: None) -> tuple[list[Record], dict[str, Any]]:
    """Records (kind e2e) for the three measurements, and the summary with the ratios."""
    size = plan.size()
    seg_art = store.get(_request(plan, size, "labels", "uint8"))
    plain_art = store.get(_request(plan, size, "logits", "float"))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in RUNS}
    idle: list[float | None] = []
    chosen = resolve_backend(seg_art.path, plan.backend, plan.threads)
    with tempfile.TemporaryDirectory(prefix="segbench-e2e-") as tmp:
        for rep in range(plan.repeats):
            tick(f"{plan.model} model-only #{rep + 1}")
            idle.append(settle())
            runs["model-only"].append(isolate.call(measure_model, ModelJob(
                backend=chosen.bench_backend, precision=chosen.precision, model=plan.model,
                artifact=str(seg_art.path), imgsz=size, batch=1, iters=plan.iters,
                warmup=plan.warmup, threads=plan.threads, frame_source=plan.video), isolated))
            tick(f"{plan.model} segrun #{rep + 1}")
            idle.append(settle())
            runs["segrun"].append(isolate.call(measure_segrun, SegrunJob(
                artifact=str(seg_art.path), video=plan.video, output=f"{tmp}/segrun.mp4",
                threads=plan.threads, max_frames=plan.frames, backend=plan.backend), isolated))
            tick(f"{plan.model} segrun --mode latency #{rep + 1}")
            idle.append(settle())
            runs["segrun-latency"].append(isolate.call(measure_segrun, SegrunJob(
                artifact=str(seg_art.path), video=plan.video, output=f"{tmp}/latency.mp4",
                threads=plan.threads, max_frames=plan.frames, backend=plan.backend,
                mode="latency"), isolated))
            tick(f"{plan.model} plain loop #{rep + 1}")
            idle.append(settle())
            runs["plain-loop"].append(isolate.call(measure_plain_loop, LoopJob(
                artifact=str(plain_art.path), video=plan.video, output=f"{tmp}/plain.mp4",
                max_frames=plan.frames), isolated))
            tick(f"{plan.model} live source #{rep + 1}")
            idle.append(settle())
            runs["live"].append(isolate.call(measure_live, LiveJob(
                artifact=str(seg_art.path), size=(size[1], size[0]), fps=plan.live_fps,
                frames=plan.live_frames, threads=plan.threads, backend=plan.backend),
                isolated))
    fps = {k: [float(r["fps"]) for r in v] for k, v in runs.items()}
    med = {k: round(median(v), 3) for k, v in fps.items()}
    summary: dict[str, Any] = {
        "model": plan.model, "video": plan.video, "imgsz": list(size), "threads": plan.threads,
        "backend": chosen.bench_backend, "precision": chosen.precision,
        "backend_reason": chosen.reason,
        "segrun_backends": sorted({str(r.get("backend_reason", "")) for r in runs["segrun"]}),
        "plain_threads": runs["plain-loop"][-1].get("threads"),
        "frames": runs["segrun"][-1]["frames"], "repeats": plan.repeats,
        "fps_runs": fps, "fps_median": med,
        "segrun_vs_model_only": ratio(med["segrun"], med["model-only"]),
        "segrun_vs_plain": ratio(med["segrun"], med["plain-loop"]),
        "segrun_latency_vs_model_only": ratio(med["segrun-latency"], med["model-only"]),
        "throughput_vs_latency": ratio(med["segrun"], med["segrun-latency"]),
        "segrun_modes": {k: runs[k][-1].get("mode") for k in ("segrun", "segrun-latency")},
        "live": live_summary(runs["live"], med["model-only"]),
        "per_repeat": [{"segrun_vs_model_only": ratio(s, m), "segrun_vs_plain": ratio(s, p)}
                       for s, m, p in zip(fps["segrun"], fps["model-only"], fps["plain-loop"],
                                          strict=True)],
        "targets": {"segrun_vs_model_only": TARGET_VS_MODEL, "segrun_vs_plain": TARGET_VS_PLAIN,
                    "segrun_fps": TARGET_FPS, "live_p50_vs_model": TARGET_LIVE_VS_MODEL},
        "dropped": runs["segrun"][-1]["dropped"],
        "stages_mean_ms": {
            "segrun": _stage_means(runs["segrun"]),
            "plain-loop": _stage_means(runs["plain-loop"]),
        },
        "wall_per_frame_ms": {k: round(1000.0 / med[k], 3) if med[k] else None
                              for k in ("model-only", "segrun", "segrun-latency",
                                        "plain-loop")},
        "cpu_ms_per_frame": {
            "model-only": round(median([r["cpu_ms_per_iter"] for r in runs["model-only"]]), 1),
            "segrun": round(median([r["cpu_ms_per_frame"] for r in runs["segrun"]]), 1),
            "plain-loop": round(median([r["cpu_ms_per_frame"] for r in runs["plain-loop"]]), 1)},
        "load1": [r.get("load1") for r in runs["model-only"]],
        "idle_before": idle,
    }
    # the run's own CPU (RunStats.cpu_ms_per_frame), not the model's loading as well
    run_cpu = known_median([r.get("run_cpu_ms_per_frame") for r in runs["segrun"]])
    summary["segrun_run_cpu_ms_per_frame"] = round(run_cpu, 1) if run_cpu else None
    summary["ceiling_vs_model_only"] = ceiling(
        summary["wall_per_frame_ms"]["model-only"],
        summary["segrun_run_cpu_ms_per_frame"] or summary["cpu_ms_per_frame"]["segrun"],
        usable_cores())
    summary["meets_targets"] = bool(
        (summary["segrun_vs_model_only"] or 0) >= TARGET_VS_MODEL
        and (summary["segrun_vs_plain"] or 0) >= TARGET_VS_PLAIN
        and med["segrun"] >= TARGET_FPS)
    return _records(plan, size, runs, med, seg_art, plain_art, isolated), summary


@dataclass(frozen=True)
class ChosenBackend:
    """The runtime backend segrun will run, as a benchmark backend and precision."""

    bench_backend: str
    precision: str
    reason: str
    runtime_backend: str  # the runtime backend's own name (what segrun --backend takes)


def live_summary(live: list[dict[str, Any]], model_fps: float) -> dict[str, Any]:
    """The live row: medians over repeats of capture-to-output p50/p90, against the
    model-only time per frame (1 / its FPS) and the run's own inference p50."""
    p50 = [float(r["capture_to_output_ms"]["p50_ms"]) for r in live
           if r.get("capture_to_output_ms")]
    p90 = [float(r["capture_to_output_ms"]["p90_ms"]) for r in live
           if r.get("capture_to_output_ms")]
    model_ms = 1000.0 / model_fps if model_fps else None
    p50_ms = round(median(p50), 3) if p50 else None
    return {"p50_ms": p50_ms, "p90_ms": round(median(p90), 3) if p90 else None,
            "model_only_ms": round(model_ms, 3) if model_ms else None,
            "infer_p50_ms": round(median([float(r["infer_p50_ms"]) for r in live
                                          if r.get("infer_p50_ms")] or [0.0]), 3),
            "p50_vs_model": ratio(p50_ms, model_ms), "p50_runs": p50,
            "frames": [r.get("frames") for r in live], "mode": live[-1].get("mode"),
            "source": live[-1].get("source")}


def resolve_backend(artifact: Path, backend: str, threads: int) -> ChosenBackend:
    """Open the artifact as `segrun --backend BACKEND --threads N` would and name the result.

    For auto this runs (or reads from the cache) the same probe segrun's own process then
    finds cached, so model-only times the backend segrun really runs.
    """
    from segedge.benchmarks.bench_runtime import HINTS
    from segedge.runtime.backends.auto import open_auto
    from segedge.runtime.backends.base import BackendOptions, describe, open_backend

    options = BackendOptions(threads=threads)
    if backend == "auto":
        choice = open_auto(artifact, options)
        opened, why = choice.backend, choice.reason
    else:
        opened, why = open_backend(artifact, backend, options), f"--backend {backend}"
    try:  # the backend's descriptor names the segbench row that times what it runs
        entry = describe(opened)
        row = entry.bench_row(opened) if ".onnx" in entry.suffixes else None
        if row is None:
            raise SkipCell(f"end to end runs an .onnx; {backend} opened {opened.name}")
        ran = str(getattr(opened, "precision", "f32"))
        precision = next((p for p, hint in HINTS.items() if hint == ran), "fp32")
        return ChosenBackend(row, precision, why, opened.name)
    finally:
        opened.close()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ceiling(model_wall_ms: float | None, segrun_cpu_ms: float | None, cores: int
            ) -> float | None:
    """The best segrun / model-only ratio this CPU allows: ceiling.ceiling_fps (segrun's CPU
    time per frame spread perfectly over ``cores``, no faster than the model alone) against
    the model's own FPS, so at most 1."""
    from segedge.benchmarks.ceiling import ceiling_fps  # ceiling.py imports this module

    if not model_wall_ms or not segrun_cpu_ms or cores < 1:
        return None
    return round(ceiling_fps(model_wall_ms, segrun_cpu_ms, cores) / (1000.0 / model_wall_ms),
                 3)


def _stage_means(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Median over repeats of each stage's mean ms, under the issue's stage names."""
    out: dict[str, float] = {}
    for raw, name in STAGE_NAMES.items():
        values = [r["stages"][raw]["mean_ms"] for r in runs if raw in r.get("stages", {})]
        if values:
            out[name] = round(median(values), 3)
    return out


def _records(plan: E2EPlan, size: tuple[int, int], runs: dict[str, list[dict[str, Any]]],
             med: dict[str, float], seg_art: Any, plain_art: Any, isolated: bool
             ) -> list[Record]:
    records = []
    for name, results in runs.items():
        last = results[-1]
        if name in ("segrun", "segrun-latency"):
            tail = last["stages"]["latency"]  # capture -> written, per frame
        elif name == "live":
            tail = last["capture_to_output_ms"]  # capture timestamp -> written
        elif name == "plain-loop":
            tail = last["stages"]["total"]
        else:
            tail = last
        art = plain_art if name == "plain-loop" else seg_art
        records.append(Record(
            model=plan.model, backend=name, precision="fp32", imgsz=list(size), batch=1,
            kind="e2e", p50_ms=tail["p50_ms"], p90_ms=tail["p90_ms"], p99_ms=tail["p99_ms"],
            max_ms=tail.get("max_ms"), mean_ms=tail.get("mean_ms"), fps=med[name],
            iters=last.get("frames", last.get("iters")),
            threads=last.get("threads") if name == "plain-loop" else plan.threads,
            provider=last.get("provider"), artifact=str(art.path),
            model_size_bytes=art.size_bytes, export_s=art.export_s, export_cached=art.cached,
            peak_rss_mib=last.get("peak_rss_mib"), isolated=isolated, weights=art.weights,
            extra={"fps_runs": [r["fps"] for r in results],
                   "dropped": last.get("dropped", 0),
                   "stages": last.get("stages", {})}))
    return records


def skipped(plan: E2EPlan, reason: str) -> Record:
    return Record(model=plan.model, backend="segrun", precision="fp32", imgsz=None, batch=1,
                  kind="e2e", status="skipped", reason=reason)


__all__ = ["E2EPlan", "run_e2e", "skipped", "SkipCell"]
