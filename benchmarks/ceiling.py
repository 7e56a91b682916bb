"""The physical ceiling of a run on this CPU, from what each frame costs (issue 22).

One process measures, stage by stage as segrun runs them (OpenCV single-threaded, the
runtime's own capture, drawer and video writer), the CPU and wall milliseconds per frame
of decode, preprocess, postprocess + draw and encode, and of the model one call at a
time, in throughput mode and (given a batched artifact) batched.  With every core busy
and nothing idle, no run of that model can give more frames per second than
``min(best model FPS, cores x 1000 / (model CPU + the parts' CPU))`` (``ceiling_fps``, the
one formula: ``ceiling_of`` here and e2e.ceiling, which bench_streams also reads, call it).
benchmarks/goals.py measures it next to the runs it bounds.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2

from segedge.benchmarks.e2e import usable_cores
from segedge.benchmarks.measure import cpu_s

__all__ = ["COSTS", "MODELS", "PARTS", "CeilingJob", "ceiling_fps", "ceiling_of",
           "cpu_per_frame", "measure_ceiling"]


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


def cpu_per_frame(step: Callable[[int], Any], n: int) -> tuple[float, float]:
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
    decode_cpu, decode_wall = cpu_per_frame(lambda _: frames.append(cap.read()[1]), job.frames)
    cap.release()
    seg = Segmenter(job.artifact, backend=job.backend, options=BackendOptions(
        threads=job.threads, mode="latency", precision_hint=job.precision))
    out: dict[str, Any] = {"frames": job.frames, "cores": usable_cores(),
                           "provider": seg.active, "decode": [decode_cpu, decode_wall]}
    try:
        # Each stage is timed without keeping what it made (a pipeline frees each frame's
        # arrays and the allocator reuses them; keeping them all would time page faults),
        # then its results are made once more, untimed, for the next stage.
        out["preprocess"] = cpu_per_frame(lambda i: seg.preprocess(frames[i]), job.frames)
        prepared = [seg.preprocess(f) for f in frames]
        tensors = [t for t, _ in prepared]
        for t in tensors[:3]:
            seg.infer_many([t])
        out["model_latency"] = cpu_per_frame(lambda i: seg.infer_many([tensors[i]]),
                                              job.frames)
        results = [seg.infer_many([t])[0] for t in tensors]
        drawer = seg.task.drawer(DrawConfig(), seg.metadata, seg.decode_options)
        hud = ["FPS  20.0  latency   60.0 ms", "read   3.0 resi   2.0 prep   0.0 infe  36.0 ms",
               "post   0.3 draw   3.0 writ   5.0 ms"]

        def post(i: int) -> Any:
            return drawer.draw(frames[i], seg.decode(results[i], prepared[i][1]), hud)

        out["postprocess_draw"] = cpu_per_frame(post, job.frames)
        drawn = [post(i) for i in range(job.frames)]
        with tempfile.TemporaryDirectory(prefix="segbench-ceiling-") as tmp:
            h, w = drawn[0].shape[:2]
            writer = cv2.VideoWriter(f"{tmp}/o.mp4", cv2.VideoWriter.fourcc(*"mp4v"), 25.0,
                                     (w, h))
            out["encode"] = cpu_per_frame(lambda i: writer.write(drawn[i]), job.frames)
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
            cpu, wall = cpu_per_frame(lambda i: seg.infer_many(groups[i]), len(groups))
            out["model_batched"] = (cpu / size, wall / size)
        finally:
            seg.close()
    return out


# What measure_ceiling returns per frame, each (CPU ms, wall ms): the stages outside the
# model (PARTS, in a stream's order), then the model in each configuration.
PARTS = ("decode", "preprocess", "postprocess_draw", "encode")
MODELS = ("model_latency", "model_throughput", "model_batched")
COSTS = PARTS + MODELS


def ceiling_fps(best_wall_ms: float, cpu_ms: float, cores: int) -> float:
    """The most frames per second a run can give on this CPU: no more than the model's best
    configuration gives alone (``best_wall_ms`` a frame), and no more than ``cores`` can
    give when each frame costs ``cpu_ms`` of CPU (model and everything else) spread
    perfectly over them, every core busy and nothing idle."""
    return min(1000.0 / best_wall_ms, cores * 1000.0 / cpu_ms)


def ceiling_of(costs: dict[str, Any]) -> dict[str, Any]:
    """The physical ceiling of "N streams aggregate / one stream's model-only": every core
    busy, nothing idle, the model in its best configuration measured here; a frame costs
    the model's CPU time plus decode, preprocess, postprocess + draw and encode."""
    other = sum(float(costs[k][0]) for k in PARTS)
    models = {k: costs[k] for k in MODELS if k in costs}
    best = min(models, key=lambda k: float(models[k][1]))
    model_cpu, best_wall = (float(v) for v in models[best])
    cores = int(costs["cores"])
    one_fps = 1000.0 / float(costs["model_latency"][1])
    limit_fps = ceiling_fps(best_wall, model_cpu + other, cores)
    return {"other_cpu_ms": round(other, 2), "best_model": best,
            "best_model_cpu_ms": round(model_cpu, 2), "best_model_wall_ms": round(best_wall, 2),
            "model_only_fps": round(one_fps, 2), "ceiling_fps": round(limit_fps, 2),
            "ceiling_vs_model_only": round(limit_fps / one_fps, 3),
            "best_model_vs_model_only": round(float(costs["model_latency"][1]) / best_wall, 3)}
