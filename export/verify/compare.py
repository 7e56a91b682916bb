"""The one comparator of label maps: a candidate against a reference, frame by frame.

Used by the semantic parity gate (ONNX vs PyTorch), the precision checks (FP16 /
INT8 vs FP32) and the INT8 sensitivity search, so "agreement" means one thing:
the percent of pixels with the same label.  Per-class IoU comes from the
dataset-level confusion matrix of segedge.export.evaluation (reference as
truth), max/mean absolute logit difference when both sides give logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from segedge.export.evaluation.evaluate import Confusion
from segedge.runtime.errors import ShapeError


@dataclass(frozen=True)
class Comparison:
    frames: int
    pixels: int
    agreement: float  # percent of pixels with the same label, 4 decimals
    per_class_iou: dict[str, float]  # 0..1, 6 decimals, classes present on either side
    max_abs_diff: float | None  # logits, when both sides gave them
    mean_abs_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LabelComparator:
    """Accumulates (candidate, reference) label maps; `result()` summarises them."""

    def __init__(self, classes: Sequence[str] = ()) -> None:
        self.classes = tuple(classes)
        self._conf = Confusion(len(self.classes), ignore_index=None) if self.classes else None
        self._frames = self._same = self._pixels = 0
        self._max: float | None = None
        self._sum = 0.0
        self._count = 0

    def add(self, got: np.ndarray, ref: np.ndarray, got_logits: np.ndarray | None = None,
            ref_logits: np.ndarray | None = None) -> None:
        got, ref = np.asarray(got), np.asarray(ref)
        if got.shape != ref.shape:
            raise ShapeError(f"label maps: expected the reference's shape {ref.shape}, "
                             f"got {got.shape}")
        self._frames += 1
        self._same += int((got == ref).sum())
        self._pixels += ref.size
        if self._conf is not None:
            self._conf.add(got, ref)  # rows: reference, columns: candidate
        if got_logits is not None and ref_logits is not None:
            diff = np.abs(np.asarray(got_logits, np.float32) - np.asarray(ref_logits,
                                                                          np.float32))
            self._max = max(self._max or 0.0, float(diff.max()))
            self._sum += float(diff.sum())
            self._count += diff.size

    def result(self) -> Comparison:
        ious = self._conf.ious(scale=1.0) if self._conf is not None else []
        return Comparison(
            frames=self._frames, pixels=self._pixels,
            agreement=round(100.0 * self._same / max(self._pixels, 1), 4),
            per_class_iou={name: round(v, 6) for name, v in zip(self.classes, ious,
                                                                strict=False)
                           if v is not None},
            max_abs_diff=self._max,
            mean_abs_diff=self._sum / self._count if self._count else None)


def compare(got: Sequence[np.ndarray], ref: Sequence[np.ndarray],
            classes: Sequence[str] = ()) -> Comparison:
    """Compare two equally long lists of label maps."""
    if len(got) != len(ref):
        raise ShapeError(f"label maps: expected {len(ref)} frames like the reference, "
                         f"got {len(got)}")
    comparator = LabelComparator(classes)
    for g, r in zip(got, ref, strict=True):
        comparator.add(g, r)
    return comparator.result()


def agreement(got: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> float:
    """Percent of pixels where two label-map lists agree."""
    return compare(got, ref).agreement
