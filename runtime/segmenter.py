"""Python API: ``Segmenter(path)(frame_bgr)`` -> label map at frame resolution.

The pipeline uses the same three steps (preprocess, infer, postprocess) on
separate threads, so the API and ``segrun`` produce identical labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self

import numpy as np

from segedge.runtime.backends.base import Backend, BackendOptions, open_backend
from segedge.runtime.draw import UNKNOWN_LABEL, DrawConfig, Drawer, colorize, palette_lut
from segedge.runtime.errors import InputError
from segedge.runtime.instances import Instance, InstanceResult, check_threshold, decode
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.preprocess import Geometry, labels_to_frame, logits_to_labels, prepare

PostprocessMode = Literal["exact", "fast"]


@dataclass(frozen=True)
class SegmentationResult:
    """Labels (HxW uint8, frame resolution), optional confidence (HxW float32), timings (ms)."""

    labels: np.ndarray
    confidence: np.ndarray | None
    timings: dict[str, float]
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = field(repr=False)
    # instance artifacts: the detections, and ``labels`` holds their id map (0 background)
    instances: tuple[Instance, ...] | None = None

    def colorize(self) -> np.ndarray:
        """BGR colour image of the labels (unknown labels black)."""
        return colorize(self.labels, palette_lut(self.palette))

    def overlay(self, frame_bgr: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        drawer = Drawer(DrawConfig(alpha=alpha, legend=False, hud=False), self.classes,
                        self.palette, unknown=True)
        return drawer.overlay(frame_bgr, self.labels)

    def class_fractions(self) -> dict[str, float]:
        counts = np.bincount(self.labels.ravel(), minlength=256)[: len(self.classes)]
        total = max(1, self.labels.size)
        return {name: float(c) / total for name, c in zip(self.classes, counts, strict=True)}


def softmax_max(logits: np.ndarray) -> np.ndarray:
    """Probability of the winning class per pixel, from CxHxW logits."""
    x = logits.astype(np.float32, copy=False)
    top = x.max(0)
    total = np.exp(x - top).sum(0)
    return (1.0 / total).astype(np.float32)


class Segmenter:
    """One loaded artifact; call it on BGR frames."""

    def __init__(self, model: str | Path, *, backend: str = "auto", provider: str = "auto",
                 threads: int | None = None, postprocess: PostprocessMode = "exact",
                 score_threshold: float | None = None,
                 hints: ArtifactMetadata | None = None,
                 options: BackendOptions | None = None) -> None:
        if postprocess not in ("exact", "fast"):
            raise InputError("--postprocess", "exact or fast", repr(postprocess))
        if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
            raise InputError("--score-threshold", "a probability between 0 and 1",
                             score_threshold)
        opts = options or BackendOptions(provider=provider, threads=threads, metadata=hints)
        self.backend: Backend = open_backend(model, backend, opts)
        self.metadata: ArtifactMetadata = self.backend.metadata
        self.mode: PostprocessMode = postprocess
        self.score_threshold = score_threshold
        out = self.metadata.output
        self._use_labels = bool(out.labels) and (
            out.kind == "labels" or postprocess == "fast" or not out.logits)

    @property
    def is_instance(self) -> bool:
        return self.metadata.task == "instance"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.metadata.palette

    @property
    def active(self) -> str:
        return self.backend.active

    def preprocess(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, Geometry]:
        tensor, (geom,) = prepare([frame_bgr], self.metadata.input)
        return tensor, geom

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self.backend.infer(tensor)

    def postprocess(self, outputs: dict[str, np.ndarray], geom: Geometry,
                    want_confidence: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Network outputs (batch of one) -> (labels, confidence or None) at frame size."""
        out = self.metadata.output
        want_confidence = want_confidence or self.score_threshold is not None
        conf: np.ndarray | None = None
        if self._use_labels:
            raw = outputs[out.labels or ""][0]
            if raw.ndim == 3 and raw.shape[0] == 1:
                raw = raw[0]
            labels = labels_to_frame(np.ascontiguousarray(raw.astype(np.uint8, copy=False)),
                                     geom)
            if want_confidence and out.confidence and out.confidence in outputs:
                conf = labels_to_frame(outputs[out.confidence][0].astype(np.float32), geom)
            elif want_confidence and out.logits and out.logits in outputs:
                conf = labels_to_frame(softmax_max(outputs[out.logits][0]), geom)
        else:
            logits = outputs[out.logits or ""][0]
            labels, _ = logits_to_labels(logits, geom, self.mode)
            if want_confidence:
                if out.confidence and out.confidence in outputs:
                    conf = labels_to_frame(outputs[out.confidence][0].astype(np.float32), geom)
                else:
                    conf = labels_to_frame(softmax_max(logits), geom)
        if self.score_threshold is not None and conf is not None:
            labels = labels.copy()
            labels[conf < self.score_threshold] = UNKNOWN_LABEL
        return labels, conf

    @property
    def decode_threshold(self) -> float:
        return check_threshold(self.score_threshold)

    def decode(self, outputs: dict[str, np.ndarray], geom: Geometry) -> InstanceResult:
        """Instance artifacts: padded outputs -> detections at or above the score threshold."""
        return decode(outputs, self.metadata, geom, check_threshold(self.score_threshold))

    def detect(self, frame_bgr: np.ndarray) -> InstanceResult:
        """Instance artifacts: one frame -> instances (class, score, box, mask area) + id map."""
        if not self.is_instance:
            raise InputError("model", "an instance segmentation artifact (task 'instance')",
                             f"task {self.metadata.task!r}")
        t0 = time.perf_counter()
        tensor, geom = self.preprocess(frame_bgr)
        t1 = time.perf_counter()
        outputs = self.infer(tensor)
        t2 = time.perf_counter()
        result = self.decode(outputs, geom)
        t3 = time.perf_counter()
        result.timings.update(preprocess=(t1 - t0) * 1e3, infer=(t2 - t1) * 1e3,
                              postprocess=(t3 - t2) * 1e3)
        return result

    def __call__(self, frame_bgr: np.ndarray) -> SegmentationResult:
        if self.is_instance:
            res = self.detect(frame_bgr)
            return SegmentationResult(res.ids, None, res.timings, self.classes, self.palette,
                                      instances=res.instances)
        t0 = time.perf_counter()
        tensor, geom = self.preprocess(frame_bgr)
        t1 = time.perf_counter()
        outputs = self.infer(tensor)
        t2 = time.perf_counter()
        labels, conf = self.postprocess(outputs, geom, want_confidence=True)
        t3 = time.perf_counter()
        timings = {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3,
                   "postprocess": (t3 - t2) * 1e3}
        return SegmentationResult(labels, conf, timings, self.classes, self.palette)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
