"""What runs inside a measuring process: time one cell, or one end-to-end run.

Each function takes a picklable job and returns a plain dict, so the same
code runs in a fresh spawned process (clean peak memory, no state left over
from exports or earlier cells) or in-process for quick tests.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segedge.benchmarks import backends
from segedge.benchmarks.env import gpu_memory_mib, load_average
from segedge.benchmarks.jobs import ModelJob, SkipCell
from segedge.benchmarks.stats import summarize
from segedge.runtime.memory import peak_rss_mib, rss_mib
from segedge.runtime.timing import Rounds, interleaved, time_one

MIN_ITERS = 10  # a time budget never cuts a cell below this many timed iterations


def cpu_s() -> float:
    """CPU seconds (user + system) used so far by every thread of this process."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def timed(step: Any, iters: int, warmup: int, max_seconds: float | None) -> list[float]:
    """Per-iteration ms of ``step`` through the one timing helper (runtime.timing)."""
    rounds = Rounds(warmup, min(MIN_ITERS, iters), iters, max_seconds)
    return list(time_one(step, rounds).samples_ms)


def timed_pair(step: Any, peer: Any, iters: int, max_seconds: float | None
               ) -> tuple[list[float], list[float]]:
    """Both callables, alternating which goes first, so load from elsewhere hits both alike."""
    found = interleaved({"ours": step, "theirs": peer},
                        Rounds(0, min(MIN_ITERS, iters), iters, max_seconds))
    return list(found["ours"].samples_ms), list(found["theirs"].samples_ms)


def measure_model(job: ModelJob) -> dict[str, Any]:
    """Load, warm up, time; then accuracy when labels were given.  Skips raise SkipCell."""
    out: dict[str, Any] = {"load1": (load_average() or (None,))[0],
                           "rss_before_load_mib": rss_mib()}
    t0 = time.perf_counter()
    loaded = backends.get(job.backend).load(job)
    out["load_s"] = round(time.perf_counter() - t0, 3)
    try:
        for _ in range(job.warmup):
            loaded.step()
        c0 = cpu_s()
        samples = timed(loaded.step, job.iters, 0, job.max_seconds)
        out["cpu_ms_per_iter"] = round((cpu_s() - c0) * 1e3 / len(samples), 3)
        out.update(summarize(samples, job.batch).to_dict())
        out["iters"] = out.pop("n")
        out["provider"] = loaded.provider
        out["model_size_bytes"] = loaded.size_bytes
        out["peak_rss_mib"] = peak_rss_mib()
        gpu = loaded.gpu_mem_mib() if loaded.gpu_mem_mib else None
        if gpu is None and backends.get(job.backend).device == "cuda":
            gpu = gpu_memory_mib(os.getpid())
        out["gpu_mem_mib"] = gpu
        if loaded.threads is not None:
            out["threads"] = loaded.threads
        if loaded.peer is not None:
            peer, peer_threads = loaded.peer
            peer()  # its own warm-up
            ours, theirs = timed_pair(loaded.step, peer, job.iters, job.max_seconds)
            out["extra"] = {"peer": {
                "segedge_p50_ms": round(summarize(ours).p50_ms, 3),
                "peer_p50_ms": round(summarize(theirs).p50_ms, 3), "iters": len(ours),
                "threads": peer_threads, "how": "interleaved in one process, same tensor"}}
    finally:
        loaded.close()
    if loaded.agreement is not None:
        out["agreement_vs_fp32"] = loaded.agreement()
    if job.eval_images and job.eval_labels:
        out.update(accuracy(loaded, job))
    return out


def accuracy(loaded: Any, job: ModelJob) -> dict[str, Any]:
    """mIoU through segeval's evaluator (same preprocessing and scoring as `segeval`)."""
    from segedge.export.evaluation.evaluate import evaluate, pair_labels

    if loaded.predictor is None:
        return {"accuracy_note": "this backend has no predictor"}
    try:
        predictor = loaded.predictor()
    except SkipCell as why:
        return {"accuracy_note": str(why)}
    pairs = pair_labels(str(job.eval_images), str(job.eval_labels))
    try:
        scores = evaluate(predictor, pairs, len(predictor.classes), job.ignore_index)
    finally:  # the predictor's own backend (GPU buffers, a TensorRT context) goes now
        backend = getattr(predictor, "backend", None)
        if backend is not None:
            backend.close()
    return {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy,
            "accuracy_note": f"{scores.images} labelled images in {job.eval_images}"}


@dataclass(frozen=True)
class SegrunJob:
    artifact: str
    video: str
    output: str
    threads: int
    max_frames: int | None = None
    backend: str = "auto"
    mode: str = "auto"  # segrun --mode (auto: throughput for a file)


def measure_segrun(job: SegrunJob) -> dict[str, Any]:
    """One `segrun` run on the file (headless, writing the overlay video), as the CLI does."""
    from segedge.runtime.backends.base import BackendOptions
    from segedge.runtime.batching import BatchPolicy
    from segedge.runtime.config import RunConfig
    from segedge.runtime.pipeline import run

    c0 = cpu_s()
    stats = run(RunConfig(model=Path(job.artifact), source=job.video, outputs=(job.output,),
                          display=False, max_frames=job.max_frames, backend=job.backend,
                          backend_options=BackendOptions(threads=job.threads)),
                batching=BatchPolicy(mode=job.mode))  # type: ignore[arg-type]
    stages = {name: {"mean_ms": round(s.mean_ms, 3), "p50_ms": round(s.p50_ms, 3),
                     "p90_ms": round(s.p90_ms, 3), "p99_ms": round(s.p99_ms, 3),
                     "count": s.count} for name, s in stats.stages.items()}
    return {"frames": stats.frames_processed, "frames_read": stats.frames_read,
            "dropped": stats.frames_dropped, "corrupt": stats.frames_corrupt,
            "wall_s": stats.wall_s, "fps": stats.fps, "provider": stats.provider,
            "backend": stats.backend, "backend_reason": stats.backend_reason,
            "mode": stats.mode, "stages": stages, "peak_rss_mib": peak_rss_mib(),
            "run_cpu_ms_per_frame": stats.cpu_ms_per_frame,  # over the run, not the loading
            "cpu_ms_per_frame": round((cpu_s() - c0) * 1e3 / max(stats.frames_processed, 1), 3)}


def measure_plain_loop(job: Any) -> dict[str, Any]:
    from segedge.benchmarks.plain_loop import run_plain_loop

    c0 = cpu_s()
    result = run_plain_loop(job).to_dict()
    result["peak_rss_mib"] = peak_rss_mib()
    result["cpu_ms_per_frame"] = round((cpu_s() - c0) * 1e3 / max(result["frames"], 1), 3)
    return result


@dataclass(frozen=True)
class LiveJob:
    """segrun on a live synthetic camera (``synthetic://?live=1``) in latency mode."""

    artifact: str
    size: tuple[int, int]  # (W, H) of the generated frames
    fps: float
    frames: int
    threads: int
    backend: str = "auto"
    mode: str = "auto"  # auto: latency for one live source


def live_uri(job: LiveJob) -> str:
    return (f"synthetic://?live=1&frames={job.frames}&size={job.size[0]}x{job.size[1]}"
            f"&fps={job.fps:g}")


def measure_live(job: LiveJob) -> dict[str, Any]:
    """Capture-to-output latency per frame (from the capture timestamp to the frame written)
    against the run's own model-only time (its inference ms per frame): the live row."""
    from segedge.runtime.backends.base import BackendOptions
    from segedge.runtime.batching import BatchPolicy
    from segedge.runtime.config import RunConfig
    from segedge.runtime.pipeline import run

    stats = run(RunConfig(model=Path(job.artifact), source=live_uri(job), display=False,
                          backend=job.backend, backend_options=BackendOptions(threads=job.threads)),
                batching=BatchPolicy(mode=job.mode))  # type: ignore[arg-type]
    latency = stats.capture_to_output_ms or {}
    infer = stats.stages.get("infer")
    infer_p50 = round(infer.p50_ms, 3) if infer is not None else None
    p50 = latency.get("p50_ms")
    return {"source": live_uri(job), "mode": stats.mode, "frames": stats.frames_processed,
            "dropped": stats.frames_dropped, "fps": stats.fps, "provider": stats.provider,
            "backend": stats.backend, "backend_reason": stats.backend_reason,
            "capture_to_output_ms": latency, "capture_breakdown_ms": stats.capture_breakdown_ms,
            "infer_p50_ms": infer_p50,
            "p50_vs_model": round(p50 / infer_p50, 3) if p50 and infer_p50 else None,
            "load1": (load_average() or (None,))[0]}


@dataclass(frozen=True)
class DirectJob:
    """OpenVINO used directly, as its documentation shows: compile_model with the LATENCY
    hint and nothing else (its own default precision), one synchronous request."""

    artifact: str
    video: str
    iters: int = 30
    warmup: int = 3
    hint: str = "LATENCY"


def measure_openvino_direct(job: DirectJob) -> dict[str, Any]:
    """Model-only FPS of OpenVINO called directly on the artifact (same frame as segrun's
    first, prepared by the runtime's own preprocessing)."""
    from segedge.benchmarks.source_frame import reference_frame
    from segedge.runtime.backends.openvino import shared_core
    from segedge.runtime.segmenter import Segmenter

    seg = Segmenter(job.artifact, backend="onnxruntime")
    try:
        tensor = seg.preprocess(reference_frame(job.video, (544, 960)))[0]
        name = seg.metadata.input.name
    finally:
        seg.close()
    compiled = shared_core().compile_model(job.artifact, "CPU", {"PERFORMANCE_HINT": job.hint})
    request = compiled.create_infer_request()
    samples = timed(lambda: request.infer({name: tensor}), job.iters, job.warmup, None)
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    precision = str(value.get_type_name() if hasattr(value, "get_type_name") else value)
    stats = summarize(samples).to_dict()
    return {"fps": stats["fps"], "p50_ms": stats["p50_ms"], "precision": precision,
            "threads": compiled.get_property("INFERENCE_NUM_THREADS"), "iters": len(samples),
            "load1": (load_average() or (None,))[0]}


@dataclass(frozen=True)
class ModesJob:
    """The runtime backends alone in latency and throughput mode (``BackendOptions.mode``)."""

    artifact: str
    video: str
    threads: int
    frames: int = 24  # calls per timed round
    rounds: int = 3
    precision_hint: str = "bf16"  # OpenVINO's rows; ONNX Runtime runs the graph's own


def _throughput(backend: Any, tensor: Any, frames: int) -> float:
    """Frames per second with ``max_in_flight`` calls kept in flight (one thread each)."""
    from concurrent.futures import ThreadPoolExecutor

    slots = int(getattr(backend, "max_in_flight", 1))
    t0 = time.perf_counter()
    if slots == 1:
        for _ in range(frames):
            backend.infer(tensor)
    else:
        with ThreadPoolExecutor(slots) as pool:
            list(pool.map(lambda _: backend.infer(tensor), range(frames)))
    return frames / (time.perf_counter() - t0)


def measure_backend_modes(job: ModesJob) -> dict[str, Any]:
    """FPS of each backend opened in each mode on the same tensor, rounds interleaved (one
    process, so load from elsewhere hits every row alike)."""
    from segedge.benchmarks.source_frame import reference_frame
    from segedge.runtime.backends.base import BackendOptions, open_backend
    from segedge.runtime.segmenter import Segmenter

    seg = Segmenter(job.artifact, backend="onnxruntime")
    try:
        tensor = seg.preprocess(reference_frame(job.video, (544, 960)))[0]
    finally:
        seg.close()
    rows: dict[str, Any] = {}
    for name, hint in (("onnxruntime", None), ("openvino", job.precision_hint)):
        for mode in ("latency", "throughput"):
            rows[f"{name} {mode}"] = open_backend(job.artifact, name, BackendOptions(
                threads=job.threads, precision_hint=hint, mode=mode))
    fps: dict[str, list[float]] = {k: [] for k in rows}
    try:
        for backend in rows.values():
            _throughput(backend, tensor, 3)  # warm-up
        for _ in range(job.rounds):
            for key, backend in rows.items():
                fps[key].append(round(_throughput(backend, tensor, job.frames), 3))
        return {"fps_runs": fps, "in_flight": {k: int(getattr(b, "max_in_flight", 1))
                                               for k, b in rows.items()},
                "active": {k: b.active for k, b in rows.items()},
                "load1": (load_average() or (None,))[0]}
    finally:
        for backend in rows.values():
            backend.close()
