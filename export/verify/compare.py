"""The one comparator of label maps: a candidate against a reference, frame by frame.

Used by the semantic parity gate (ONNX vs PyTorch), the precision checks (FP16 /
INT8 vs FP32) and the INT8 sensitivity search, so "agreement" means one thing:
the percent of pixels with the same label.  Per-class IoU comes from the
dataset-level confusion matrix of segedge.export.evaluation.metrics (reference
as truth), max/mean absolute logit difference when both sides give logits.

Two failure modes a plain agreement number hides are checked here:
non-finite outputs (the argmax of an all-NaN map is 0 on both sides, so two
broken models "agree" on 100 % of pixels: NaN/Inf in logits or confidence on
either side is a VerificationError, exit 3), and degenerate predictions (one
class nearly everywhere on every frame: a warning in the result, since a
wrong --std or checkpoint gives exactly that while both sides still agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from segedge.export.evaluation.metrics import FLAT_SHARE, Confusion
from segedge.runtime.errors import ShapeError, VerificationError

HINT = "check the checkpoint (NaN/Inf weights), the model's forward and --mean/--std"


@dataclass
class FiniteCheck:
    """Counts NaN and Inf in one side's float outputs (logits or confidence) over frames."""

    side: str  # who produced them, as the message names it ("PyTorch", "fp16.onnx")
    kind: str = "logits"
    frames: int = 0
    bad_frames: int = 0
    values: int = 0
    nan: int = 0
    inf: int = 0

    def add(self, values: np.ndarray | None) -> None:
        """One frame's outputs (None: this side gave none of this kind)."""
        if values is None:
            return
        arr = np.asarray(values)
        self.frames += 1
        self.values += arr.size
        if not np.issubdtype(arr.dtype, np.floating):
            return
        nan = int(np.count_nonzero(np.isnan(arr)))
        inf = int(np.count_nonzero(np.isinf(arr)))
        self.nan += nan
        self.inf += inf
        self.bad_frames += bool(nan or inf)

    def message(self) -> str | None:
        if not (self.nan or self.inf):
            return None
        what = "NaN and Inf" if self.nan and self.inf else ("NaN" if self.nan else "Inf")
        share = 100.0 * (self.nan + self.inf) / max(self.values, 1)
        return (f"{self.side} produced {what} in {share:.4g}% of {self.kind} on "
                f"{self.bad_frames} of {self.frames} frame(s): {HINT}")

    def raise_if_bad(self) -> None:
        msg = self.message()
        if msg is not None:
            raise VerificationError(msg)


def flat_class(labels: np.ndarray) -> int | None:
    """The class covering more than FLAT_SHARE of a label map, or None."""
    flat = np.asarray(labels).ravel()
    if not flat.size:
        return None
    counts = np.bincount(np.clip(flat.astype(np.int64), 0, 65535))
    top = int(counts.argmax())
    return top if counts[top] > FLAT_SHARE * flat.size else None


@dataclass(frozen=True)
class Comparison:
    frames: int
    pixels: int
    agreement: float  # percent of pixels with the same label, 4 decimals
    per_class_iou: dict[str, float]  # 0..1, 6 decimals, classes present on either side
    max_abs_diff: float | None  # logits, when both sides gave them
    mean_abs_diff: float | None
    warnings: tuple[str, ...] = ()  # degenerate predictions (see module docstring)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LabelComparator:
    """Accumulates (candidate, reference) label maps; `result()` summarises them.

    `result()` raises VerificationError when either side gave NaN/Inf logits or
    confidence on any frame, so no agreement is ever computed from them.
    """

    def __init__(self, classes: Sequence[str] = (), candidate: str = "the candidate",
                 reference: str = "the reference") -> None:
        self.classes = tuple(classes)
        self.candidate, self.reference = candidate, reference
        self._conf = Confusion(len(self.classes), ignore_index=None) if self.classes else None
        self._frames = self._same = self._pixels = 0
        self._max: float | None = None
        self._sum = 0.0
        self._count = 0
        self._checks = [FiniteCheck(side, kind) for side in (reference, candidate)
                        for kind in ("logits", "confidence")]
        self._flat: dict[str, list[int | None]] = {reference: [], candidate: []}

    def add(self, got: np.ndarray, ref: np.ndarray, got_logits: np.ndarray | None = None,
            ref_logits: np.ndarray | None = None, got_confidence: np.ndarray | None = None,
            ref_confidence: np.ndarray | None = None) -> None:
        got, ref = np.asarray(got), np.asarray(ref)
        if got.shape != ref.shape:
            raise ShapeError(f"label maps: expected the reference's shape {ref.shape}, "
                             f"got {got.shape}")
        for check, values in zip(self._checks, (ref_logits, ref_confidence, got_logits,
                                                got_confidence), strict=True):
            check.add(values)
        self._flat[self.reference].append(flat_class(ref))
        self._flat[self.candidate].append(flat_class(got))
        self._frames += 1
        self._same += int((got == ref).sum())
        self._pixels += ref.size
        if self._conf is not None:
            self._conf.add(got, ref)  # rows: reference, columns: candidate
        if got_logits is not None and ref_logits is not None:
            with np.errstate(invalid="ignore", over="ignore"):  # non-finite: result() raises
                diff = np.abs(np.asarray(got_logits, np.float32) - np.asarray(ref_logits,
                                                                              np.float32))
            self._max = max(self._max or 0.0, float(diff.max()))
            self._sum += float(diff.sum())
            self._count += diff.size

    def warnings(self) -> tuple[str, ...]:
        """One line per side whose prediction is one class on every frame."""
        out = []
        for side, ids in self._flat.items():
            if not ids or any(i is None for i in ids):
                continue
            named = sorted({self.classes[i] if i < len(self.classes) else f"id {i}"
                            for i in ids if i is not None})
            out.append(f"{side} predicts one class ({', '.join(named)}) on more than "
                       f"{FLAT_SHARE:.0%} of the pixels of every one of {len(ids)} frame(s): "
                       "a degenerate mask; check the checkpoint and --mean/--std/--bgr")
        return tuple(out)

    def result(self) -> Comparison:
        for check in self._checks:
            check.raise_if_bad()
        ious = self._conf.ious(scale=1.0) if self._conf is not None else []
        return Comparison(
            frames=self._frames, pixels=self._pixels,
            agreement=round(100.0 * self._same / max(self._pixels, 1), 4),
            per_class_iou={name: round(v, 6) for name, v in zip(self.classes, ious,
                                                                strict=False)
                           if v is not None},
            max_abs_diff=self._max,
            mean_abs_diff=self._sum / self._count if self._count else None,
            warnings=self.warnings())


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
