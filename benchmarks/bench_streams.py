"""Several streams in one segrun against one stream's model alone (issue 14).

N copies of one video go through ONE ``run_many`` (one model, inference batched
across the streams: an artifact exported with a static batch of N, padded when
fewer frames are ready).  Its aggregate throughput (frames of all streams per
second) is compared with the single-stream *model-only* throughput: the
batch-1 artifact's inference alone on the same frames with the same threads
and backend.  On a CPU the decode, resize, draw and encode of N videos compete
with the model for the same cores, so the same run is also measured with no
outputs (decode + model only: the ceiling of what batching can do here), and
the batched model alone shows what batching buys by itself.  One single-stream
segrun is measured too ("against one stream").  All measurements are
interleaved and repeated (medians), each in a fresh process.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2

from segedge.benchmarks import isolate
from segedge.benchmarks.artifacts import ArtifactRequest, ArtifactStore
from segedge.benchmarks.ceiling import cpu_per_frame
from segedge.benchmarks.e2e import ceiling, resolve_backend, usable_cores
from segedge.benchmarks.measure import cpu_s
from segedge.benchmarks.stats import known_median, median, ratio
from segedge.runtime.errors import InputError
from segedge.runtime.memory import peak_rss_mib

TARGET_VS_MODEL = 0.9  # aggregate / single-stream model-only (issue 14)
RUNS = ("model-only", "model-only-batched", "streams", "streams-unbatched", "streams-latency",
        "streams-no-output", "one-stream")
Tick = Callable[[str], None]
Settle = Callable[[], float | None]


@dataclass(frozen=True)
class StreamsPlan:
    """``streams`` copies of ``video`` at ``imgsz``; ``frames`` per stream (None: all)."""

    model: str
    video: str
    threads: int
    streams: int = 4
    imgsz: tuple[int, int] = (448, 800)
    frames: int | None = None
    repeats: int = 3
    model_frames: int = 40  # frames the model-only measurements time (after 3 warm-up)
    wait_ms: float = 4.0
    weights: str = "auto"
    backend: str = "auto"

    def __post_init__(self) -> None:
        if not 1 <= self.streams <= 16:
            raise InputError("--streams", "a stream count in [1, 16]", self.streams)
        for name in ("repeats", "model_frames", "threads"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}", "a positive integer",
                                 getattr(self, name))
        if self.frames is not None and self.frames < 1:
            raise InputError("--e2e-frames", "a positive frame count", self.frames)
        if not Path(self.video).is_file():
            raise InputError("--video", "an existing video file", self.video)

    def steps(self) -> int:
        return len(RUNS) * self.repeats


@dataclass(frozen=True)
class StreamsJob:
    kind: str  # one of RUNS
    artifact: str
    video: str
    streams: int
    threads: int
    backend: str
    frames: int | None
    model_frames: int
    wait_ms: float
    workdir: str


def _frames(video: str, count: int) -> list[Any]:
    cap = cv2.VideoCapture(video)
    frames: list[Any] = []
    while len(frames) < count and (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    if not frames:
        raise InputError("--video", "a video OpenCV can decode", video)
    return frames


def measure(job: StreamsJob) -> dict[str, Any]:
    """One measurement (runs in its own process); a plain dict."""
    from segedge.runtime.backends.base import BackendOptions
    from segedge.runtime.batching import BatchPolicy
    from segedge.runtime.config import RunConfig
    from segedge.runtime.pipeline import run
    from segedge.runtime.segmenter import Segmenter
    from segedge.runtime.streams import run_many

    options = BackendOptions(threads=job.threads)
    if job.kind.startswith("model-only"):
        seg = Segmenter(job.artifact, backend=job.backend, options=options)
        try:
            tensors = [seg.preprocess(f)[0] for f in _frames(job.video, job.model_frames)]
            group = seg.static_batch or 1
            chunks = [tensors[i:i + group] for i in range(0, len(tensors), group)]
            for chunk in chunks[:3]:
                seg.infer_many(chunk)
            cpu, wall = cpu_per_frame(lambda i: seg.infer_many(chunks[i]), len(chunks))
            return {"fps": round(1000.0 * group / wall, 3), "frames": len(chunks) * group,
                    "batch": group, "provider": seg.active,
                    "cpu_ms_per_frame": round(cpu / group, 3),
                    "wall_ms_per_frame": round(wall / group, 3)}
        finally:
            seg.close()
    out_dir = Path(tempfile.mkdtemp(prefix="segbench-streams-", dir=job.workdir))
    outputs = job.kind in ("streams", "streams-unbatched", "streams-latency", "one-stream")
    count = 1 if job.kind == "one-stream" else job.streams
    configs = [RunConfig(model=Path(job.artifact), source=job.video, display=False,
                         output=out_dir / f"stream{k}.mp4" if outputs else None,
                         max_frames=job.frames, backend=job.backend, backend_options=options)
               for k in range(count)]
    c0 = cpu_s()
    if job.kind == "one-stream":
        one = run(configs[0])
        result = {"fps": one.fps, "frames": one.frames_processed, "wall_s": one.wall_s,
                  "provider": one.provider, "run_cpu_ms_per_frame": one.cpu_ms_per_frame}
    else:
        # --mode auto is throughput for several streams; streams-latency forces latency mode
        mode = "latency" if job.kind == "streams-latency" else "auto"
        stats = run_many(configs, batching=BatchPolicy(wait_ms=job.wait_ms, mode=mode))
        agg = stats.aggregate
        result = {"fps": agg["fps"], "frames": agg["frames_processed"], "wall_s": agg["wall_s"],
                  "run_cpu_ms_per_frame": agg.get("cpu_ms_per_frame"),
                  "provider": agg["provider"], "batch": agg["batch"],
                  "batch_wait_ms": agg["batch_wait_ms"],
                  "infer_ms_per_batch": agg["infer_ms_per_batch"],
                  "infer_ms_per_frame": agg["infer_ms_per_frame"],
                  "per_stream_fps": dict(zip(stats.names, (s.fps for s in stats.streams),
                                             strict=True)),
                  "mode": agg.get("mode"), "exit_code": stats.exit_code,
                  "degraded": list(stats.degraded)}
    frames = max(1, int(result["frames"]))
    result["cpu_ms_per_frame"] = round((cpu_s() - c0) * 1e3 / frames, 3)
    result["peak_rss_mib"] = peak_rss_mib()
    for path in out_dir.iterdir():
        path.unlink()
    out_dir.rmdir()
    return result


def run_streams(plan: StreamsPlan, store: ArtifactStore, isolated: bool, tick: Tick,
                settle: Settle = lambda: None) -> dict[str, Any]:
    """The interleaved, repeated measurements and their medians and ratios."""
    request = ArtifactRequest(model=plan.model, precision="fp32", imgsz=plan.imgsz,
                              weights=plan.weights)
    single = store.get(request)
    batched = store.get(replace(request, batch=plan.streams)) if plan.streams > 1 else single
    chosen = resolve_backend(single.path, plan.backend, plan.threads)
    backend = chosen.runtime_backend  # what segrun runs, by its own name
    arts = {"model-only": single, "model-only-batched": batched, "streams": batched,
            "streams-unbatched": single, "streams-latency": single, "streams-no-output": batched,
            "one-stream": single}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in RUNS}
    idle: list[float | None] = []
    with tempfile.TemporaryDirectory(prefix="segbench-streams-") as tmp:
        for rep in range(plan.repeats):
            for kind in RUNS:
                tick(f"{plan.streams} streams: {kind} #{rep + 1}")
                idle.append(settle())
                runs[kind].append(isolate.call(measure, StreamsJob(
                    kind=kind, artifact=str(arts[kind].path), video=plan.video,
                    streams=plan.streams, threads=plan.threads, backend=backend,
                    frames=plan.frames, model_frames=plan.model_frames, wait_ms=plan.wait_ms,
                    workdir=tmp), isolated))
    return summarize(plan, runs, chosen.reason, backend, idle)


def summarize(plan: StreamsPlan, runs: dict[str, list[dict[str, Any]]], reason: str,
              backend: str, idle: list[float | None]) -> dict[str, Any]:
    fps = {k: [float(r["fps"]) for r in v] for k, v in runs.items()}
    med = {k: round(median(v), 3) for k, v in fps.items()}
    cpu = {k: round(median([float(r["cpu_ms_per_frame"]) for r in v]), 1)
           for k, v in runs.items()}
    model_wall = 1000.0 / med["model-only"] if med["model-only"] else None
    last = runs["streams"][-1]
    summary: dict[str, Any] = {
        "model": plan.model, "video": plan.video, "streams": plan.streams,
        "imgsz": list(plan.imgsz), "threads": plan.threads, "backend": backend,
        "backend_reason": reason, "repeats": plan.repeats,
        "frames_per_stream": plan.frames or "all",
        "frames_total": last["frames"], "fps_runs": fps, "fps_median": med,
        "cpu_ms_per_frame": cpu,
        "aggregate_vs_model_only": ratio(med["streams"], med["model-only"]),
        "unbatched_vs_model_only": ratio(med["streams-unbatched"], med["model-only"]),
        "latency_mode_vs_model_only": ratio(med["streams-latency"], med["model-only"]),
        "no_output_vs_model_only": ratio(med["streams-no-output"], med["model-only"]),
        "batched_model_vs_model_only": ratio(med["model-only-batched"], med["model-only"]),
        "aggregate_vs_one_stream": ratio(med["streams"], med["one-stream"]),
        "per_repeat": [ratio(s, m) for s, m in zip(fps["streams"], fps["model-only"],
                                                   strict=True)],
        "ceiling_vs_model_only": None,  # set below, for the better of the two artifacts
        # both CPU-bound on the same cores: model-only CPU per frame over the run's; unlike
        # FPS it hardly moves when other processes load the machine
        "cpu_bound_ratio": ratio(cpu["model-only"], cpu["streams"]),
        "cpu_bound_ratio_unbatched": ratio(cpu["model-only"], cpu["streams-unbatched"]),
        "cpu_bound_ratio_no_output": ratio(cpu["model-only"], cpu["streams-no-output"]),
        "batch": last.get("batch"), "batch_wait_ms": last.get("batch_wait_ms"),
        "infer_ms_per_batch": last.get("infer_ms_per_batch"),
        "infer_ms_per_frame": last.get("infer_ms_per_frame"),
        "exit_codes": sorted({r.get("exit_code", 0) for r in runs["streams"]}),
        "target": TARGET_VS_MODEL, "idle_before": idle,
    }
    # the artifact is the user's choice: batched (one call per batch) or batch 1 (one by one)
    best = max(("streams", "streams-unbatched"), key=lambda k: med[k])
    summary["best_run"] = best
    summary["best_vs_model_only"] = ratio(med[best], med["model-only"])
    # the run's own CPU, not the model's loading as well
    run_cpu = known_median([r.get("run_cpu_ms_per_frame") for r in runs[best]])
    summary["ceiling_vs_model_only"] = ceiling(model_wall, run_cpu or cpu[best],
                                               usable_cores())
    summary["meets_target"] = (summary["best_vs_model_only"] or 0) >= TARGET_VS_MODEL
    return summary


def summary_lines(s: dict[str, Any]) -> list[str]:
    """What the CLI prints and the report's paragraph."""
    med, cpu = s["fps_median"], s["cpu_ms_per_frame"]
    return [
        f"{s['streams']} streams of {Path(s['video']).name} ({s['model']} {s['imgsz'][0]}x"
        f"{s['imgsz'][1]}, {s['backend']}, {s['threads']} threads): aggregate "
        f"{med['streams']:.2f} FPS = {s['aggregate_vs_model_only']} of single-stream "
        f"model-only ({med['model-only']:.2f} FPS); target {s['target']} "
        f"{'met' if s['meets_target'] else 'NOT met'} (best: {s['best_run']} "
        f"{s['best_vs_model_only']})",
        f"  one by one (batch-1 artifact) {med['streams-unbatched']:.2f} FPS = "
        f"{s['unbatched_vs_model_only']} (--mode latency {med['streams-latency']:.2f} FPS = "
        f"{s['latency_mode_vs_model_only']}); no outputs {med['streams-no-output']:.2f} FPS = "
        f"{s['no_output_vs_model_only']}; "
        f"batched model alone {med['model-only-batched']:.2f} FPS = "
        f"{s['batched_model_vs_model_only']}; one stream with output {med['one-stream']:.2f} "
        f"FPS; ceiling (CPU per frame over the cores) {s['ceiling_vs_model_only']}",
        f"  CPU ms per frame: model-only {cpu['model-only']}, streams {cpu['streams']}, "
        f"unbatched {cpu['streams-unbatched']}"
        f" (ratio when both are CPU-bound {s['cpu_bound_ratio']}, unbatched "
        f"{s['cpu_bound_ratio_unbatched']}, no outputs {s['cpu_bound_ratio_no_output']})",
    ]


def markdown(summary: dict[str, Any], env: dict[str, Any]) -> str:
    from segedge.benchmarks.report import environment_lines

    med, cpu = summary["fps_median"], summary["cpu_ms_per_frame"]
    rows = [("model-only (batch 1)", "the batch-1 artifact's inference alone, same frames"),
            ("model-only-batched", f"the batch-{summary['streams']} artifact alone, per frame"),
            ("streams", f"{summary['streams']} streams in one run_many, overlay video each"),
            ("streams-unbatched", "the same on the batch-1 artifact (one frame per call)"),
            ("streams-latency", "the batch-1 run in --mode latency (one call in flight)"),
            ("streams-no-output", "the same with no outputs (decode + model: the ceiling)"),
            ("one-stream", "one segrun stream with its overlay video")]
    keys = list(RUNS)
    lines = ["# Several streams in one segrun", "", *environment_lines(env), "",
             *summary_lines(summary), "",
             "| run | what | FPS (median) | runs | CPU ms / frame |", "|---|---|---|---|---|"]
    for (label, what), key in zip(rows, keys, strict=True):
        lines.append(f"| {label} | {what} | {med[key]:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in summary['fps_runs'][key])} | {cpu[key]} |")
    batch = summary.get("batch") or {}
    lines += ["", f"Batch sizes (last streams run): {batch.get('histogram')}, mean "
              f"{batch.get('mean')}; wait for a batch p50 "
              f"{(summary.get('batch_wait_ms') or {}).get('p50_ms')} ms; inference "
              f"{(summary.get('infer_ms_per_batch') or {}).get('mean_ms')} ms per batch, "
              f"{(summary.get('infer_ms_per_frame') or {}).get('mean_ms')} ms per frame.",
              f"Ratios per repeat (streams / model-only): {summary['per_repeat']}; CPU idle "
              f"before each measurement: {summary['idle_before']}.", ""]
    return "\n".join(lines)
