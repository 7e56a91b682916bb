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
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2

from segedge.benchmarks import isolate
from segedge.benchmarks.artifacts import ArtifactRequest, ArtifactStore
from segedge.benchmarks.e2e import ceiling, resolve_backend, usable_cores
from segedge.benchmarks.measure import cpu_s, peak_rss_mib
from segedge.benchmarks.stats import median, ratio
from segedge.runtime.errors import InputError

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
            c0, t0 = cpu_s(), time.perf_counter()
            for chunk in chunks:
                seg.infer_many(chunk)
            wall = time.perf_counter() - t0
            return {"fps": round(len(tensors) / wall, 3), "frames": len(tensors),
                    "batch": group, "provider": seg.active,
                    "cpu_ms_per_frame": round((cpu_s() - c0) * 1e3 / len(tensors), 3),
                    "wall_ms_per_frame": round(wall * 1e3 / len(tensors), 3)}
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
                  "provider": one.provider}
    else:
        # --mode auto is throughput for several streams; streams-latency forces latency mode
        mode = "latency" if job.kind == "streams-latency" else "auto"
        stats = run_many(configs, batching=BatchPolicy(wait_ms=job.wait_ms, mode=mode))
        agg = stats.aggregate
        result = {"fps": agg["fps"], "frames": agg["frames_processed"], "wall_s": agg["wall_s"],
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
    summary["ceiling_vs_model_only"] = ceiling(model_wall, cpu[best], usable_cores())
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


@dataclass(frozen=True)
class CeilingJob:
    """What one stream costs per frame on this CPU, stage by stage, and the model's best
    throughput: the physical ceiling of N streams against one stream's model-only."""

    artifact: str
    video: str
    threads: int
    backend: str = "auto"
    frames: int = 24
    batched_artifact: str | None = None  # the same model with a static batch > 1, if any
    precision: str | None = None  # the backend's precision hint (None: as auto/segrun runs)


def _cpu_per_frame(step: Callable[[int], Any], n: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per ``step(i)``, i < n: the process's CPU time (only this thread
    works meanwhile), the step's own library threads included."""
    c0, t0 = cpu_s(), time.perf_counter()
    for i in range(n):
        step(i)
    return (cpu_s() - c0) * 1e3 / n, (time.perf_counter() - t0) * 1e3 / n


def _in_flight(seg: Any, tensors: list[Any], slots: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per frame, ``slots`` calls running at once (throughput mode)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(slots) as pool:
        list(pool.map(lambda t: seg.infer_many([t]), tensors[:slots]))  # warm every slot
        c0, t0 = cpu_s(), time.perf_counter()
        list(pool.map(lambda t: seg.infer_many([t]), tensors))
    return (cpu_s() - c0) * 1e3 / len(tensors), (time.perf_counter() - t0) * 1e3 / len(tensors)


def measure_ceiling(job: CeilingJob) -> dict[str, Any]:
    """CPU ms per frame of decode, preprocess, postprocess + draw and encode (as segrun does
    them: OpenCV single-threaded, the runtime's own capture, drawer and video writer), and
    the model's wall and CPU ms per frame one call at a time, in throughput mode and
    batched; from them the most frames per second these cores can give N streams."""
    from segedge.runtime.backends.base import BackendOptions
    from segedge.runtime.draw import DrawConfig
    from segedge.runtime.segmenter import Segmenter
    from segedge.runtime.sources.video import open_capture

    cv2.setNumThreads(1)  # as segrun runs it (runtime.engine.opencv_single_threaded)
    cap = open_capture(job.video)
    frames: list[Any] = []
    decode_cpu, decode_wall = _cpu_per_frame(lambda _: frames.append(cap.read()[1]), job.frames)
    cap.release()
    seg = Segmenter(job.artifact, backend=job.backend, options=BackendOptions(
        threads=job.threads, mode="latency", precision_hint=job.precision))
    out: dict[str, Any] = {"frames": job.frames, "cores": usable_cores(),
                           "provider": seg.active, "decode": [decode_cpu, decode_wall]}
    try:
        # Each stage is timed without keeping what it made (a pipeline frees each frame's
        # arrays and the allocator reuses them; keeping them all would time page faults),
        # then its results are made once more, untimed, for the next stage.
        out["preprocess"] = _cpu_per_frame(lambda i: seg.preprocess(frames[i]), job.frames)
        prepared = [seg.preprocess(f) for f in frames]
        tensors = [t for t, _ in prepared]
        for t in tensors[:3]:
            seg.infer_many([t])
        out["model_latency"] = _cpu_per_frame(lambda i: seg.infer_many([tensors[i]]),
                                              job.frames)
        results = [seg.infer_many([t])[0] for t in tensors]
        drawer = seg.task.drawer(DrawConfig(), seg.metadata, seg.decode_options)
        hud = ["FPS  20.0  latency   60.0 ms", "read   3.0 resi   2.0 prep   0.0 infe  36.0 ms",
               "post   0.3 draw   3.0 writ   5.0 ms"]

        def post(i: int) -> Any:
            return drawer.draw(frames[i], seg.decode(results[i], prepared[i][1]), hud)

        out["postprocess_draw"] = _cpu_per_frame(post, job.frames)
        drawn = [post(i) for i in range(job.frames)]
        with tempfile.TemporaryDirectory(prefix="segbench-ceiling-") as tmp:
            h, w = drawn[0].shape[:2]
            writer = cv2.VideoWriter(f"{tmp}/o.mp4", cv2.VideoWriter.fourcc(*"mp4v"), 25.0,
                                     (w, h))
            out["encode"] = _cpu_per_frame(lambda i: writer.write(drawn[i]), job.frames)
            writer.release()
        seg.use_mode("throughput")
        slots = max(1, int(getattr(seg.backend, "max_in_flight", 1)))
        out["model_throughput"] = _in_flight(seg, tensors, slots)
        out["throughput_slots"] = slots
    finally:
        seg.close()
    if job.batched_artifact:  # the same model with a static batch: one call per batch
        seg = Segmenter(job.batched_artifact, backend=job.backend, options=BackendOptions(
            threads=job.threads, mode="latency", precision_hint=job.precision))
        try:
            size = seg.static_batch or 4
            groups = [tensors[i:i + size] for i in range(0, len(tensors) - size + 1, size)]
            seg.infer_many(groups[0])
            cpu, wall = _cpu_per_frame(lambda i: seg.infer_many(groups[i]), len(groups))
            out["model_batched"] = (cpu / size, wall / size)
        finally:
            seg.close()
    return out


def ceiling_of(costs: dict[str, Any]) -> dict[str, Any]:
    """The physical ceiling of "N streams aggregate / one stream's model-only": every core
    busy, nothing idle, the model in its best configuration measured here; a frame costs
    the model's CPU time plus decode, preprocess, postprocess + draw and encode."""
    other = sum(float(costs[k][0]) for k in ("decode", "preprocess", "postprocess_draw",
                                             "encode"))
    models = {k: costs[k] for k in ("model_latency", "model_throughput", "model_batched")
              if k in costs}
    best = min(models, key=lambda k: float(models[k][1]))
    model_cpu, best_wall = (float(v) for v in models[best])
    cores = int(costs["cores"])
    one_fps = 1000.0 / float(costs["model_latency"][1])
    limit_fps = min(1000.0 / best_wall, cores * 1000.0 / (model_cpu + other))
    return {"other_cpu_ms": round(other, 2), "best_model": best,
            "best_model_cpu_ms": round(model_cpu, 2), "best_model_wall_ms": round(best_wall, 2),
            "model_only_fps": round(one_fps, 2), "ceiling_fps": round(limit_fps, 2),
            "ceiling_vs_model_only": round(limit_fps / one_fps, 3),
            "best_model_vs_model_only": round(float(costs["model_latency"][1]) / best_wall, 3)}
