"""The one segmentation metrics implementation, scored the way papers score.

A dataset-level confusion matrix (int64, accumulated over every image with
``np.bincount``), not a mean of per-image scores: that is how the reference
implementations and the published figures are computed.  segeval, the FP16
gate and INT8 budget (precision/ladder.py), segbench and the export's
comparator (verify/compare.py) all read their numbers from here.

The rules, pinned by tests/export/test_metrics.py:

* The evaluated classes are the network's output ids ``0..C-1`` except
  ``ignore_index``.  A truth pixel whose id is ignored, or ``>= C`` (CamVid's
  void 11 for an 11-class model), is not counted at all.
* A prediction of an ignored id (a 12-output network whose class 11 is void,
  scored with ``ignore_index=11``) or of any id outside ``0..C-1`` on a counted
  pixel is an error for the true class and no class's false positive, as the
  reference implementations count it.  The ignored class is never in a mean.
* A class absent from the truth and never predicted has no IoU and no accuracy
  ("n/a"): it is left out of every mean, never counted as 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from segedge.runtime.errors import InputError

DEFAULT_IGNORE = 255
FLAT_SHARE = 0.98  # one class on more than this share of a frame's pixels: a flat frame


class Confusion:
    """A C x (C+1) confusion matrix: rows truth, columns prediction, last column "other".

    ``matrix`` is the square C x C part; ``other`` counts, per truth class, the
    predictions outside ``0..C-1``.  Rows of ignored ids stay zero.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = DEFAULT_IGNORE) -> None:
        if int(num_classes) < 1:
            raise InputError("class count", "at least 1 class", num_classes)
        self.n = int(num_classes)
        self.ignore = ignore_index
        self.counts = np.zeros((self.n, self.n + 1), np.int64)
        self.frames = 0
        self.flat_pred_frames = 0  # frames where one predicted id covers > FLAT_SHARE
        self.flat_truth_frames = 0
        self.pred_ids: set[int] = set()  # the dominant predicted id of every flat frame

    @property
    def matrix(self) -> np.ndarray:
        return self.counts[:, : self.n]

    @property
    def other(self) -> np.ndarray:
        return self.counts[:, self.n]

    @property
    def evaluated(self) -> np.ndarray:
        """Boolean mask of the classes that can enter a mean (all but the ignored id)."""
        keep = np.ones(self.n, bool)
        if self.ignore is not None and 0 <= self.ignore < self.n:
            keep[self.ignore] = False
        return keep

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """Count one image; `pred` and `truth` are label maps of the same shape."""
        pred, truth = np.asarray(pred), np.asarray(truth)
        if pred.shape != truth.shape:
            raise InputError("prediction", f"the label's shape {truth.shape}", pred.shape)
        t = truth.ravel().astype(np.int64)
        p = pred.ravel().astype(np.int64)
        self.frames += 1
        p = np.where((p >= 0) & (p < self.n), p, self.n)  # any id outside: "other"
        if p.size:
            self._note_flat(p, t)
        keep = (t >= 0) & (t < self.n)
        if self.ignore is not None:
            keep &= t != self.ignore
        t, p = t[keep], p[keep]
        width = self.n + 1
        self.counts += np.bincount(width * t + p, minlength=self.n * width).reshape(
            self.n, width)

    def _note_flat(self, p: np.ndarray, t: np.ndarray) -> None:
        counts = np.bincount(p, minlength=self.n + 1)
        top = int(counts.argmax())
        if counts[top] > FLAT_SHARE * p.size:
            self.flat_pred_frames += 1
            self.pred_ids.add(top)
        if np.bincount(np.clip(t, 0, 65535)).max() > FLAT_SHARE * t.size:
            self.flat_truth_frames += 1

    @property
    def pixels(self) -> int:
        return int(self.counts.sum())

    def _parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tp = np.diag(self.matrix).astype(np.float64)
        truth = self.counts.sum(1).astype(np.float64)  # incl. predictions of ignored ids
        pred = self.matrix.sum(0).astype(np.float64)  # over counted (never ignored) rows
        return tp, truth, pred

    def ious(self, scale: float = 100.0) -> list[float | None]:
        """Per-class IoU (x `scale`); None for an ignored class or one absent from both sides."""
        tp, truth, pred = self._parts()
        union = truth + pred - tp
        return [float(scale * a / u) if u and keep else None
                for a, u, keep in zip(tp, union, self.evaluated, strict=True)]

    def class_accuracies(self, scale: float = 100.0) -> list[float | None]:
        """Per-class accuracy (recall, x `scale`); None for an ignored class or one absent
        from the truth."""
        tp, truth, _ = self._parts()
        return [float(scale * a / g) if g and keep else None
                for a, g, keep in zip(tp, truth, self.evaluated, strict=True)]

    def accuracy(self) -> float:
        """Percent of counted pixels predicted right (pixel accuracy, or agreement)."""
        return float(100.0 * np.trace(self.matrix) / max(self.pixels, 1))

    def frequency_weighted_iou(self) -> float:
        """Percent: per-class IoU weighted by the class's share of counted truth pixels."""
        _, truth, _ = self._parts()
        total = truth.sum()
        if not total:
            return 0.0
        return float(sum(g / total * v for g, v in zip(truth, self.ious(), strict=True)
                         if v is not None and g))

    def degenerate(self) -> str | None:
        """Why the predictions look broken (one class nearly everywhere on every frame while
        the truth is not that flat), or None."""
        if not self.frames or self.flat_pred_frames < self.frames:
            return None
        if self.flat_truth_frames == self.frames:
            return None  # the labels are this flat too: nothing to read into it
        ids = ", ".join(f"outside 0..{self.n - 1}" if i == self.n else str(i)
                        for i in sorted(self.pred_ids))
        return (f"the prediction is one class (id {ids}) on more than {FLAT_SHARE:.0%} of "
                f"the pixels of every one of {self.frames} frame(s) while the labels are not")


@dataclass(frozen=True)
class Scores:
    """Percentages (4 decimals).  Per-class values are None for an ignored class or one
    absent from the truth and never predicted ("n/a"); those are in no mean."""

    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float | None]
    images: int
    ignore_index: int | None = DEFAULT_IGNORE
    extra: dict[str, Any] = field(default_factory=dict)
    class_accuracy: float = 0.0  # mean per-class accuracy over classes present in the truth
    frequency_weighted_iou: float = 0.0
    per_class_accuracy: dict[str, float | None] = field(default_factory=dict)
    pixels: int = 0  # counted (not ignored) label pixels
    evaluated_classes: int = 0  # classes in the mIoU
    ignored_classes: tuple[str, ...] = ()  # output classes left out (--ignore-index)
    degenerate: str | None = None  # why the prediction looks broken (see Confusion)

    def __post_init__(self) -> None:
        if self.images < 0 or self.pixels < 0:
            raise InputError("scores", "non-negative image and pixel counts",
                             (self.images, self.pixels))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def class_names(classes: Sequence[str], n: int) -> list[str]:
    return list(classes)[:n] + [f"class_{i}" for i in range(len(classes), n)]


def _mean(values: Sequence[float | None]) -> float:
    valid = [v for v in values if v is not None]
    return float(np.mean(valid)) if valid else 0.0


def scores(conf: Confusion, classes: Sequence[str], images: int) -> Scores:
    """Everything a report shows, from one confusion matrix."""
    names = class_names(classes, conf.n)
    ious, accs = conf.ious(), conf.class_accuracies()
    ignored = tuple(n for n, keep in zip(names, conf.evaluated, strict=True) if not keep)
    return Scores(
        miou=round(_mean(ious), 4),
        pixel_accuracy=round(conf.accuracy(), 4),
        per_class_iou={n: (None if v is None else round(v, 4)) for n, v in zip(names, ious,
                                                                                strict=True)},
        images=images, ignore_index=conf.ignore,
        class_accuracy=round(_mean(accs), 4),
        frequency_weighted_iou=round(conf.frequency_weighted_iou(), 4),
        per_class_accuracy={n: (None if v is None else round(v, 4))
                            for n, v in zip(names, accs, strict=True)},
        pixels=conf.pixels, evaluated_classes=sum(v is not None for v in ious),
        ignored_classes=ignored, degenerate=conf.degenerate())


def format_table(result: Scores, title: str) -> str:
    """The per-class table and the headline numbers, as segeval prints them."""
    def cell(name: str, value: float | None) -> str:
        if value is not None:
            return f"{value:.2f}"
        return "ignored" if name in result.ignored_classes else "n/a"

    names = list(result.per_class_iou)
    width = max([len(n) for n in names] + [10])
    lines = [title, f"{'class'.ljust(width)}  {'IoU %':>7}  {'Acc %':>7}"]
    lines += [f"{n.ljust(width)}  {cell(n, result.per_class_iou[n]):>7}  "
              f"{cell(n, result.per_class_accuracy.get(n)):>7}" for n in names]
    lines += [f"{label.ljust(width)}  {value:>7.2f}" for label, value in (
        ("mIoU", result.miou), ("pixel acc", result.pixel_accuracy),
        ("class acc", result.class_accuracy), ("fwIoU", result.frequency_weighted_iou))]
    note = f"{result.images} images, {result.pixels} pixels, ignore index {result.ignore_index}"
    note += f"; means over {result.evaluated_classes} classes"
    if any(v is None and n not in result.ignored_classes
           for n, v in result.per_class_iou.items()):
        note += " (n/a: absent from the labels and never predicted)"
    lines.append(note)
    return "\n".join(lines)
