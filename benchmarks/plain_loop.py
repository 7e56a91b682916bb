"""The plain video loop, the end-to-end baseline for `segrun`.

cv2 read -> cv2.resize + numpy normalise -> ONNX Runtime (default options and
threads, logits) -> numpy argmax + nearest resize back -> palette overlay ->
cv2 write, one frame after another in one Python thread, the way a first
script does it: no thread count is set anywhere, so ONNX Runtime and OpenCV
use their defaults (all cores), as the user's script would.  Per stage times
use the same stage names as `segrun`'s statistics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from segedge.benchmarks.bench_plain import counted_session, graph_preprocessing, plain_session
from segedge.benchmarks.jobs import normalise
from segedge.benchmarks.stats import summarize
from segedge.runtime.errors import InputError

STAGES = ("read", "preprocess", "infer", "postprocess", "draw", "write")


@dataclass(frozen=True)
class LoopJob:
    artifact: str  # float NCHW logits ONNX
    video: str
    output: str  # .mp4 (mp4v) or .avi (MJPG)
    max_frames: int | None = None
    alpha: float = 0.5


@dataclass
class LoopResult:
    frames: int
    wall_s: float
    fps: float
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int | None = None  # ONNX Runtime's intra-op threads (its default), counted

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "wall_s": self.wall_s, "fps": self.fps,
                "stages": self.stages, "threads": self.threads}


def palette_bgr(path: str) -> np.ndarray:
    from segedge.runtime.metadata import ArtifactMetadata, default_palette

    meta = ArtifactMetadata.from_props(plain_session(path).get_modelmeta().custom_metadata_map,
                                       path)
    palette = list(meta.palette) if meta and meta.palette else list(default_palette(256))
    lut = np.zeros((256, 3), np.uint8)
    for i, (r, g, b) in enumerate(palette[:256]):
        lut[i] = (b, g, r)
    return lut


def run_plain_loop(job: LoopJob) -> LoopResult:
    mean, std, rgb = graph_preprocessing(job.artifact)
    sess, threads = counted_session(job.artifact)
    inp = sess.get_inputs()[0]
    h, w = int(inp.shape[2]), int(inp.shape[3])
    lut = palette_bgr(job.artifact)
    cap = cv2.VideoCapture(job.video)
    if not cap.isOpened():
        raise InputError("--video", "a readable video file", job.video)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 25.0
    fourcc = "MJPG" if job.output.lower().endswith(".avi") else "mp4v"
    writer: cv2.VideoWriter | None = None
    times: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    frames = 0
    start = time.perf_counter()
    try:
        while job.max_frames is None or frames < job.max_frames:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            t1 = time.perf_counter()
            x = normalise(cv2.resize(frame, (w, h))[None], mean, std, rgb)
            t2 = time.perf_counter()
            logits = sess.run(None, {inp.name: x})[0]
            t3 = time.perf_counter()
            labels = logits[0].argmax(0).astype(np.uint8)
            labels = cv2.resize(labels, (frame.shape[1], frame.shape[0]),
                                interpolation=cv2.INTER_NEAREST)
            t4 = time.perf_counter()
            out = cv2.addWeighted(frame, 1.0 - job.alpha, lut[labels], job.alpha, 0.0)
            t5 = time.perf_counter()
            if writer is None:
                writer = cv2.VideoWriter(job.output, cv2.VideoWriter.fourcc(*fourcc), fps_in,
                                         (out.shape[1], out.shape[0]))
            writer.write(out)
            t6 = time.perf_counter()
            for name, a, b in zip(STAGES, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6),
                                  strict=True):
                times[name].append((b - a) * 1e3)
            times["total"].append((t6 - t0) * 1e3)
            frames += 1
    finally:
        wall = time.perf_counter() - start
        cap.release()
        if writer is not None:
            writer.release()
    stages = {name: summarize(v).to_dict() for name, v in times.items() if v}
    return LoopResult(frames, round(wall, 6), round(frames / wall, 3) if wall > 0 else 0.0,
                      stages, threads)
