"""Logits -> labels with OpenCV, equal to ``preprocess.logits_to_labels``.

numpy's ``argmax(0)`` over CxHxW is strided and single-threaded (~70 ms for
21 classes at 960x544 here); a running compare/max over the contiguous
class planes with cv2 is ~4x faster and gives identical labels, ties
included (the first maximal class wins, as in numpy).  The exact mode also
upsamples plane by plane instead of concatenating an HxWxC copy.
Tests compare both modes against ``preprocess.logits_to_labels``.
"""

from __future__ import annotations

import cv2
import numpy as np

from segedge.runtime.preprocess import Geometry, labels_to_frame


def argmax_channels(planes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (index of the first maximal plane as uint8, maximum as float32)."""
    best = np.array(planes[0], np.float32, copy=True)
    labels = np.zeros(best.shape, np.uint8)
    mask = np.empty(best.shape, np.uint8)
    for c in range(1, len(planes)):
        plane = planes[c]
        cv2.compare(plane, best, cv2.CMP_GT, dst=mask)
        # classes are visited in increasing order, so "c where greater" == max(labels, c & mask)
        cv2.bitwise_and(mask, c, dst=mask)  # type: ignore[call-overload]  # scalar operand
        cv2.max(labels, mask, dst=labels)
        cv2.max(best, plane, dst=best)
    return labels, best


def logits_to_labels_cv(logits: np.ndarray, geom: Geometry,
                        mode: str = "exact") -> tuple[np.ndarray, np.ndarray]:
    """Same contract and result as ``preprocess.logits_to_labels`` (CxHxW, at most 256 C)."""
    if mode not in ("exact", "fast"):
        raise ValueError(f"mode: expected 'exact' or 'fast', got {mode!r}")
    x = logits if logits.dtype == np.float32 else logits.astype(np.float32)
    planes = [np.ascontiguousarray(x[c]) for c in range(x.shape[0])]
    if mode == "fast" or (geom.frame_hw == geom.net_hw and not geom.letterbox):
        labels, best = argmax_channels(planes)
        return labels_to_frame(labels, geom), labels_to_frame(best, geom)
    if geom.letterbox:
        ch, cw = geom.content_hw
        top, left = geom.pad_top, geom.pad_left
        planes = [p[top : top + ch, left : left + cw] for p in planes]
    fh, fw = geom.frame_hw
    up = [cv2.resize(p, (fw, fh), interpolation=cv2.INTER_LINEAR) for p in planes]
    return argmax_channels(up)
