"""What runs inside a measuring process: time one cell, or one end-to-end run.

Each function takes a picklable job and returns a plain dict, so the same
code runs in a fresh spawned process (clean peak memory, no state left over
from exports or earlier cells) or in-process for quick tests.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segedge.benchmarks import backends
from segedge.benchmarks.env import gpu_memory_mib, load_average
from segedge.benchmarks.jobs import ModelJob, SkipCell
from segedge.benchmarks.stats import summarize
from segedge.runtime.timing import Rounds, interleaved, time_one

MIN_ITERS = 10  # a time budget never cuts a cell below this many timed iterations


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError):
        return 0.0


def peak_rss_mib() -> float:
    """This process image's peak resident set.

    VmHWM, not ru_maxrss: on Linux ru_maxrss survives exec, so a child spawned
    from a parent holding PyTorch would report the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**10, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


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


def measure_segrun(job: SegrunJob) -> dict[str, Any]:
    """One `segrun` run on the file (headless, writing the overlay video), as the CLI does."""
    from segedge.runtime.backends.base import BackendOptions
    from segedge.runtime.config import RunConfig
    from segedge.runtime.pipeline import run

    c0 = cpu_s()
    stats = run(RunConfig(model=Path(job.artifact), source=job.video, outputs=(job.output,),
                          display=False, max_frames=job.max_frames, backend=job.backend,
                          backend_options=BackendOptions(threads=job.threads)))
    stages = {name: {"mean_ms": round(s.mean_ms, 3), "p50_ms": round(s.p50_ms, 3),
                     "p90_ms": round(s.p90_ms, 3), "p99_ms": round(s.p99_ms, 3),
                     "count": s.count} for name, s in stats.stages.items()}
    return {"frames": stats.frames_processed, "frames_read": stats.frames_read,
            "dropped": stats.frames_dropped, "corrupt": stats.frames_corrupt,
            "wall_s": stats.wall_s, "fps": stats.fps, "provider": stats.provider,
            "backend": stats.backend, "backend_reason": stats.backend_reason,
            "stages": stages, "peak_rss_mib": peak_rss_mib(),
            "cpu_ms_per_frame": round((cpu_s() - c0) * 1e3 / max(stats.frames_processed, 1), 3)}


def measure_plain_loop(job: Any) -> dict[str, Any]:
    from segedge.benchmarks.plain_loop import run_plain_loop

    c0 = cpu_s()
    result = run_plain_loop(job).to_dict()
    result["peak_rss_mib"] = peak_rss_mib()
    result["cpu_ms_per_frame"] = round((cpu_s() - c0) * 1e3 / max(result["frames"], 1), 3)
    return result
