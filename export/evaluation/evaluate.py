"""Segmentation accuracy the same way for every artifact kind: mIoU, pixel accuracy, per class.

Frames go through the runtime's own preprocessing (segedge.runtime.preprocess)
and predictions are mapped back to the label resolution with
``labels_to_frame`` (nearest), so a PyTorch model, its ONNX and its engine are
scored on identical pixels and their numbers are directly comparable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from segedge.export.frames import IMAGE_SUFFIXES, list_images
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec
from segedge.runtime.preprocess import Geometry, labels_to_frame, prepare

DEFAULT_IGNORE = 255


class Confusion:
    """A num_classes x num_classes confusion matrix (rows: truth, columns: prediction)."""

    def __init__(self, num_classes: int, ignore_index: int | None = DEFAULT_IGNORE) -> None:
        self.n = num_classes
        self.ignore = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        if pred.shape != truth.shape:
            raise InputError("prediction", f"the label's shape {truth.shape}", pred.shape)
        t = truth.astype(np.int64).ravel()
        p = pred.astype(np.int64).ravel()
        keep = (t >= 0) & (t < self.n)  # ignore_index and any other out-of-range id
        if self.ignore is not None:
            keep &= t != self.ignore
        p = np.clip(p[keep], 0, self.n - 1)
        self.matrix += np.bincount(self.n * t[keep] + p, minlength=self.n ** 2).reshape(
            self.n, self.n)

    def ious(self, scale: float = 100.0) -> list[float | None]:
        """Per-class IoU (x `scale`), None for a class absent from truth and prediction.

        The one place per-class IoU is computed: segeval, the precision checks and the
        export's parity comparator (verify/compare.py) all read it from here.
        """
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        return [float(scale * t / u) if u else None for t, u in zip(tp, union, strict=True)]

    def accuracy(self) -> float:
        """Percent of counted pixels on the diagonal (pixel accuracy, or agreement)."""
        return float(100.0 * np.trace(self.matrix) / max(int(self.matrix.sum()), 1))


@dataclass(frozen=True)
class Scores:
    """Percentages; per-class IoU is None for a class absent from truth and prediction."""

    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float | None]
    images: int
    ignore_index: int | None = DEFAULT_IGNORE
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scores(conf: Confusion, classes: Sequence[str], images: int) -> Scores:
    ious = conf.ious()
    valid = [v for v in ious if v is not None]
    names = list(classes) + [f"class_{i}" for i in range(len(classes), conf.n)]
    return Scores(
        miou=round(float(np.mean(valid)) if valid else 0.0, 4),
        pixel_accuracy=round(conf.accuracy(), 4),
        per_class_iou={names[i]: (None if v is None else round(v, 4)) for i, v in enumerate(ious)},
        images=images, ignore_index=conf.ignore)


def pair_labels(images: str | Path, labels: str | Path) -> list[tuple[Path, Path]]:
    """(image, label) pairs matched by file name (any image suffix on the label side)."""
    files = list_images(str(images))
    if not files:
        raise InputError("--images", "a folder, glob or image with frames", repr(str(images)))
    label_dir = Path(labels)
    if not label_dir.is_dir():
        raise InputError("--labels", "a folder of label PNGs", f"no folder {label_dir}")
    by_stem: dict[str, Path] = {}
    for p in sorted(label_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(p.stem, p)
    pairs, missing = [], []
    for f in files:
        lab = label_dir / f.name if (label_dir / f.name).is_file() else by_stem.get(f.stem)
        (pairs.append((f, lab)) if lab is not None else missing.append(f.name))
    if missing:
        raise InputError("--labels", f"a label file named like every image in {images}",
                         f"{len(missing)} without one (first: {missing[0]})")
    return pairs


def read_pair(image: Path, label: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
    truth = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    if frame is None:
        raise InputError("image", "a readable image file", str(image))
    if truth is None or truth.ndim != 2:
        raise InputError("label", "a single-channel label PNG (class index per pixel)",
                         f"{label} ({'unreadable' if truth is None else truth.shape})")
    return frame, truth


def to_label_resolution(pred_net: np.ndarray, geom: Geometry, truth_hw: tuple[int, int]
                        ) -> np.ndarray:
    """Network-resolution labels -> frame (labels_to_frame) -> label size if it differs."""
    pred = labels_to_frame(np.ascontiguousarray(pred_net, dtype=np.uint8), geom)
    if pred.shape[:2] != truth_hw:
        pred = cv2.resize(pred, (truth_hw[1], truth_hw[0]), interpolation=cv2.INTER_NEAREST)
    return pred


class Predictor(Protocol):
    """Frame in (BGR uint8), network-resolution labels + geometry out."""

    classes: tuple[str, ...]

    def predict(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]: ...


class BackendPredictor:
    """An .onnx (ONNX Runtime) or engine (TensorRT) through the runtime's backend registry."""

    def __init__(self, path: Path, provider: str = "auto", threads: int | None = None) -> None:
        from segedge.runtime.backends.base import BackendOptions, open_backend

        self.backend = open_backend(path, options=BackendOptions(provider=provider,
                                                                 threads=threads))
        self.meta: ArtifactMetadata = self.backend.metadata
        self.classes = self.meta.classes

    def predict(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
        batch = self.meta.input.batch or 1
        tensor, geoms = prepare([frame] * batch, self.meta.input)
        return labels_from_outputs(self.backend.infer(tensor), self.meta), geoms[0]


class TorchPredictor:
    """A zoo model, checkpoint or user model in PyTorch, fed like the export's parity check."""

    def __init__(self, cfg: Any) -> None:  # an ExportConfig (kept lazy: no torch import here)
        from segedge.export.models.resolve import resolve

        res = resolve(cfg)
        self.model = res.model.eval()
        self.classes = res.classes
        self.spec = InputSpec(format="float", layout="NCHW", color_order=res.model_color,
                              mean=res.mean, std=res.std, size=res.size, batch=1,
                              stride=res.stride)

    def predict(self, frame: np.ndarray) -> tuple[np.ndarray, Geometry]:
        import torch

        from segedge.export.verify.torch_ref import forward_labels

        x, geoms = prepare([frame], self.spec)
        with torch.no_grad():
            labels = forward_labels(self.model, torch.from_numpy(x))
        return labels[0].numpy(), geoms[0]


def labels_from_outputs(outputs: dict[str, np.ndarray], meta: ArtifactMetadata) -> np.ndarray:
    """First image's labels: the baked labels output, else the argmax of the logits."""
    if meta.output.labels and meta.output.labels in outputs:
        return np.asarray(outputs[meta.output.labels][0])
    logits = outputs.get(meta.output.logits or "logits")
    if logits is None:
        raise InputError("artifact outputs", "labels or logits", sorted(outputs))
    return np.asarray(logits[0]).argmax(0).astype(np.uint8)


def evaluate(predictor: Predictor, pairs: Iterable[tuple[Path, Path]], num_classes: int,
             ignore_index: int | None = DEFAULT_IGNORE,
             progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None) -> Scores:
    """Score `predictor` on every (image, label) pair at label resolution."""
    conf = Confusion(num_classes, ignore_index)
    items = list(pairs)
    for image, label in (progress(items) if progress else items):
        frame, truth = read_pair(image, label)
        pred, geom = predictor.predict(frame)
        conf.add(to_label_resolution(pred, geom, truth.shape[:2]), truth)
    return scores(conf, predictor.classes, len(items))


@dataclass(frozen=True)
class LabelledFrames:
    """Frames prepared once for a graph input, with optional truth, for repeated comparisons."""

    tensors: list[np.ndarray]
    geoms: list[Geometry]
    truths: list[np.ndarray] | None
    source: str

    @classmethod
    def load(cls, frames: list[np.ndarray], spec: InputSpec, source: str,
             truths: list[np.ndarray] | None = None) -> LabelledFrames:
        spec = replace(spec, batch=spec.batch or 1)
        tensors, geoms = [], []
        for frame in frames:
            tensor, geom = prepare([frame] * (spec.batch or 1), spec)
            tensors.append(tensor)
            geoms.append(geom[0])
        return cls(tensors, geoms, truths, source)

    def __len__(self) -> int:
        return len(self.tensors)

    def score(self, preds: list[np.ndarray], classes: Sequence[str],
              ignore_index: int | None) -> Scores | None:
        if self.truths is None:
            return None
        conf = Confusion(len(classes), ignore_index)
        for pred, geom, truth in zip(preds, self.geoms, self.truths, strict=True):
            conf.add(to_label_resolution(pred, geom, truth.shape[:2]), truth)
        return scores(conf, classes, len(preds))


def format_table(result: Scores, title: str) -> str:
    rows = [(name, "-" if v is None else f"{v:.2f}") for name, v in result.per_class_iou.items()]
    width = max([len(r[0]) for r in rows] + [5])
    lines = [title, f"{'class'.ljust(width)}  IoU %"]
    lines += [f"{n.ljust(width)}  {v:>6}" for n, v in rows]
    lines.append(f"{'mIoU'.ljust(width)}  {result.miou:>6.2f}")
    lines.append(f"{'pixel acc'.ljust(width)}  {result.pixel_accuracy:>6.2f}")
    lines.append(f"{result.images} images, ignore index {result.ignore_index}")
    return "\n".join(lines)
