"""The one preprocessing path shared by runtime, verification and calibration.

Exporter parity checks, INT8 calibration and `segrun` all call `prepare`, so
a model is always fed exactly as it was verified.  Frames arrive as OpenCV
gives them (HxWx3 uint8 BGR); the metadata says what the graph wants.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segedge.runtime.errors import ShapeError
from segedge.runtime.metadata import InputSpec


@dataclass(frozen=True)
class Geometry:
    """How a frame was mapped into the network input, so labels map back exactly."""

    frame_hw: tuple[int, int]
    net_hw: tuple[int, int]
    scale_y: float
    scale_x: float
    pad_top: int = 0
    pad_left: int = 0
    letterbox: bool = False

    @property
    def content_hw(self) -> tuple[int, int]:
        """Size of the resized frame inside the (possibly padded) network input."""
        if not self.letterbox:
            return self.net_hw
        return (round(self.frame_hw[0] * self.scale_y), round(self.frame_hw[1] * self.scale_x))


def round_to_stride(value: int, stride: int) -> int:
    return max(stride, int(round(value / stride)) * stride)


def network_size(spec: InputSpec, frame_hw: tuple[int, int]) -> tuple[int, int]:
    """Static size from the artifact, or the frame's size rounded to the stride."""
    if spec.size is not None:
        return (int(spec.size[0]), int(spec.size[1]))
    return (round_to_stride(frame_hw[0], spec.stride), round_to_stride(frame_hw[1], spec.stride))


def check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", type(frame).__name__)
        raise ShapeError(f"frame: expected an HxWx3 uint8 BGR image, got {shape}")
    if frame.dtype != np.uint8:
        raise ShapeError(f"frame: expected dtype uint8, got {frame.dtype}")


def resize_frame(frame: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Geometry]:
    """Resize (stretch or letterbox) one BGR frame to the network size."""
    check_frame(frame)
    fh, fw = frame.shape[:2]
    nh, nw = network_size(spec, (fh, fw))
    if spec.resize == "letterbox":
        scale = min(nh / fh, nw / fw)
        ch, cw = max(1, round(fh * scale)), max(1, round(fw * scale))
        top, left = (nh - ch) // 2, (nw - cw) // 2
        out = np.zeros((nh, nw, 3), np.uint8)
        out[top : top + ch, left : left + cw] = cv2.resize(
            frame, (cw, ch), interpolation=cv2.INTER_LINEAR
        )
        return out, Geometry((fh, fw), (nh, nw), ch / fh, cw / fw, top, left, True)
    if (fh, fw) == (nh, nw):
        return frame, Geometry((fh, fw), (nh, nw), 1.0, 1.0)
    resized: np.ndarray = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return resized, Geometry((fh, fw), (nh, nw), nh / fh, nw / fw)


def to_tensor(images_bgr: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack equally sized, already resized BGR images into the graph's input tensor."""
    batch = np.stack(images_bgr)
    if spec.color_order == "RGB":
        batch = batch[..., ::-1]
    if spec.format == "uint8":
        if spec.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)
    mean = np.asarray(spec.mean, np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
    x = (batch.astype(np.float32) - mean) * inv_std
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def prepare(frames_bgr: list[np.ndarray], spec: InputSpec) -> tuple[np.ndarray, list[Geometry]]:
    """Frames (BGR uint8) -> (input tensor, per-frame geometry for mapping back)."""
    resized, geoms = zip(*(resize_frame(f, spec) for f in frames_bgr), strict=True)
    sizes = {g.net_hw for g in geoms}
    if len(sizes) != 1:
        raise ShapeError(f"batch: expected frames of one size, got network sizes {sorted(sizes)}")
    return to_tensor(list(resized), spec), list(geoms)


def labels_to_frame(labels: np.ndarray, geom: Geometry) -> np.ndarray:
    """Map a network-resolution label map back onto the original frame (nearest)."""
    if geom.letterbox:
        ch, cw = geom.content_hw
        labels = labels[geom.pad_top : geom.pad_top + ch, geom.pad_left : geom.pad_left + cw]
    fh, fw = geom.frame_hw
    if labels.shape[:2] == (fh, fw):
        return labels
    return cv2.resize(labels, (fw, fh), interpolation=cv2.INTER_NEAREST)


def logits_to_labels(
    logits: np.ndarray, geom: Geometry, mode: str = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """CxHxW logits -> (uint8 labels, float32 max-logit) at frame resolution.

    ``exact`` upsamples the logits bilinearly and then takes the argmax (what
    PyTorch would do at full resolution); ``fast`` takes the argmax at network
    resolution and upsamples the labels with nearest neighbour.
    """
    if mode not in ("exact", "fast"):
        raise ValueError(f"mode: expected 'exact' or 'fast', got {mode!r}")
    if mode == "fast" or (geom.frame_hw == geom.net_hw and not geom.letterbox):
        labels = logits.argmax(0).astype(np.uint8)
        conf = logits.max(0).astype(np.float32)
        return labels_to_frame(labels, geom), labels_to_frame(conf, geom)
    hwc = logits.transpose(1, 2, 0).astype(np.float32)
    if geom.letterbox:
        ch, cw = geom.content_hw
        hwc = hwc[geom.pad_top : geom.pad_top + ch, geom.pad_left : geom.pad_left + cw]
    fh, fw = geom.frame_hw
    channels = [cv2.resize(np.ascontiguousarray(hwc[..., i : i + 4]), (fw, fh),
                           interpolation=cv2.INTER_LINEAR) for i in range(0, hwc.shape[2], 4)]
    up = np.concatenate([c.reshape(fh, fw, -1) for c in channels], axis=2)
    return up.argmax(2).astype(np.uint8), up.max(2)
