"""What a measuring process is given and what a backend hands back to it.

Jobs are plain frozen dataclasses so they cross into a spawned process by
pickling; backends return a `Loaded` whose ``step`` is one timed iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

ArtifactKind = Literal["onnx", "plan", "torch"]


class SkipCell(Exception):  # noqa: N818 - a verdict, not a failure
    """This machine cannot run the cell; the message says why."""


@dataclass(frozen=True)
class Needs:
    """The artifact a backend runs for one requested precision."""

    kind: ArtifactKind
    precision: str = "fp32"  # precision of the exported graph (fp32 for TensorRT-EP fp16)
    emit: str = "labels"
    input_format: str = "uint8"
    int8_target: str = "cpu"
    # The row measures its own mask agreement against the FP32 artifact on ONNX Runtime
    # (another runtime than the export's check ran on): the suite supplies that artifact.
    reference: bool = False


@dataclass(frozen=True)
class ModelJob:
    """One model-only measurement, self-contained (runs in its own process)."""

    backend: str
    precision: str
    model: str  # zoo name (PyTorch) or what the artifact was made from
    artifact: str | None  # .onnx or .plan path; None for PyTorch
    imgsz: tuple[int, int]
    batch: int
    iters: int
    warmup: int
    threads: int
    frame_source: str | None = None  # video or image for a real input frame
    weights: str = "auto"
    checkpoint: str | None = None
    num_classes: int | None = None
    eval_images: str | None = None
    eval_labels: str | None = None
    ignore_index: int | None = 255
    max_seconds: float | None = None  # stop timing early (after MIN_ITERS) past this
    cache_dir: str | None = None  # TensorRT EP engine cache
    reference_artifact: str | None = None  # FP32 labels .onnx, for Needs.reference rows


@dataclass
class Loaded:
    """A ready backend: ``step()`` runs one batch from a prepared input to label maps."""

    step: Callable[[], Any]
    provider: str
    close: Callable[[], None]
    size_bytes: int | None = None
    predictor: Callable[[], Any] | None = None  # -> segedge.export.evaluation.evaluate.Predictor
    gpu_mem_mib: Callable[[], float | None] | None = None
    threads: int | None = None  # what the library really uses, when it differs from the job's
    agreement: Callable[[], float | None] | None = None  # % pixels equal to the FP32 reference
    # A peer doing the same work (OpenVINO used directly on the same tensor), timed interleaved
    # with ``step`` after the row's own timing: (call, its threads).
    peer: tuple[Callable[[], Any], int | None] | None = None


def frame_batch(frame: np.ndarray, imgsz: tuple[int, int], batch: int) -> np.ndarray:
    """The frame resized to the network size, repeated: BxHxWx3 uint8 BGR."""
    import cv2

    h, w = imgsz
    resized = frame if frame.shape[:2] == (h, w) else cv2.resize(
        frame, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(np.repeat(resized[None], batch, axis=0))


def normalise(images_bgr: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...],
              rgb: bool) -> np.ndarray:
    """The textbook numpy preprocessing of a plain loop: BxHxWx3 uint8 -> Bx3xHxW float32."""
    x = images_bgr[..., ::-1] if rgb else images_bgr
    x = (x.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
