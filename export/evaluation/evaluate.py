"""Segmentation accuracy the same way for every artifact kind, on labelled images.

Frames go through the runtime's own preprocessing (segedge.runtime.preprocess)
and predictions are mapped back to the image resolution once, with
``labels_to_frame`` (nearest), so a PyTorch model, its ONNX and its engine are
scored on identical pixels and their numbers are directly comparable.  The
numbers themselves come from the one metrics implementation (metrics.py).
Images are read one batch ahead in a thread (OpenCV releases the GIL), so
decoding overlaps inference.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from segedge.export.evaluation.metrics import (  # noqa: F401  (re-exported: one metrics API)
    DEFAULT_IGNORE,
    Confusion,
    Scores,
    format_table,
    scores,
)
from segedge.export.evaluation.predictors import (  # noqa: F401  (re-exported)
    BackendPredictor,
    Predictor,
    TorchPredictor,
    labels_from_outputs,
    predict_many,
)
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import InputSpec
from segedge.runtime.paths import IMAGE_SUFFIXES, list_images
from segedge.runtime.preprocess import Geometry, labels_to_frame, prepare
from segedge.runtime.progress import Ticker
from segedge.runtime.resize import resize_labels

Pair = tuple[Path, Path]


def pair_labels(images: str | Path, labels: str | Path) -> list[Pair]:
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


def check_sizes(image: Path | str, frame_hw: tuple[int, int], label: Path | str,
                label_hw: tuple[int, int], flag: str = "--labels") -> None:
    """Labels are scored pixel for pixel: a label map of another size is refused, never
    silently resized (which would score a different image than the one labelled)."""
    if tuple(frame_hw) != tuple(label_hw):
        raise InputError(flag, "label maps the size of their images",
                         f"{Path(label).name} {label_hw[1]}x{label_hw[0]} for "
                         f"{Path(image).name} {frame_hw[1]}x{frame_hw[0]} (W x H)")


def read_pair(image: Path, label: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = cv2.imread(str(image), cv2.IMREAD_COLOR)
    truth = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    if frame is None:
        raise InputError("image", "a readable image file", str(image))
    if truth is None or truth.ndim != 2:
        raise InputError("label", "a single-channel label PNG (class index per pixel)",
                         f"{label} ({'unreadable' if truth is None else truth.shape})")
    check_sizes(image, frame.shape[:2], label, truth.shape[:2])
    return frame, truth


def to_label_resolution(pred_net: np.ndarray, geom: Geometry, truth_hw: tuple[int, int]
                        ) -> np.ndarray:
    """Network-resolution labels -> frame (labels_to_frame) -> label size if it differs."""
    pred = labels_to_frame(np.ascontiguousarray(pred_net, dtype=np.uint8), geom)
    # the artifact's nearest rule (pixel centres as PIL/torch; OpenCV's for cv2-linear)
    return resize_labels(pred, truth_hw[0], truth_hw[1], geom.interpolation)


def _chunks(pairs: Sequence[Pair], size: int) -> Iterator[list[tuple[np.ndarray, np.ndarray]]]:
    """Decoded (frame, truth) batches, the next one read while the caller works."""
    def read(chunk: Sequence[Pair]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [read_pair(image, label) for image, label in chunk]

    starts = range(0, len(pairs), size)
    with ThreadPoolExecutor(1, thread_name_prefix="segeval-read") as pool:
        ahead: Future[list[tuple[np.ndarray, np.ndarray]]] | None = None
        for start in starts:
            current = ahead or pool.submit(read, pairs[start:start + size])
            nxt = start + size
            ahead = pool.submit(read, pairs[nxt:nxt + size]) if nxt < len(pairs) else None
            yield current.result()


def accumulate(predictor: Predictor, pairs: Sequence[Pair], ignore_index: int | None,
               progress: Ticker | None = None, batch: int | None = None,
               num_classes: int | None = None) -> Confusion:
    """The dataset-level confusion matrix of `predictor` on every (image, label) pair.

    Refuses (one line, exit 2) a dataset whose every label pixel is ignored: there is
    nothing to score, and "mIoU 0.00" would read as a result.
    """
    conf = Confusion(num_classes or len(predictor.classes), ignore_index)
    size = max(1, batch or int(getattr(predictor, "batch", 1) or 1))
    for items in _chunks(pairs, size):
        preds = predict_many(predictor, [frame for frame, _ in items])
        for (pred, geom), (_, truth) in zip(preds, items, strict=True):
            conf.add(to_label_resolution(pred, geom, truth.shape[:2]), truth)
        if progress is not None:
            progress.update(len(items))
    if pairs and conf.pixels == 0:
        raise InputError("--labels", f"label pixels with a class id 0..{conf.n - 1} other "
                         f"than --ignore-index {ignore_index}",
                         f"every pixel of the {len(pairs)} label map(s) ignored")
    return conf


def evaluate(predictor: Predictor, pairs: Iterable[Pair], num_classes: int,
             ignore_index: int | None = DEFAULT_IGNORE, progress: Ticker | None = None,
             batch: int | None = None) -> Scores:
    """Score `predictor` on every (image, label) pair at label resolution."""
    items = list(pairs)
    conf = accumulate(predictor, items, ignore_index, progress, batch, num_classes)
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
        if truths is not None:
            if len(truths) != len(frames):
                raise InputError("--eval-labels", f"one label map per frame ({len(frames)})",
                                 len(truths))
            for i, (frame, truth) in enumerate(zip(frames, truths, strict=True)):
                check_sizes(f"frame {i} of {source}", frame.shape[:2], f"label {i}",
                            truth.shape[:2], "--eval-labels")
        tensors, geoms = [], []
        for frame in frames:
            tensor, geom = prepare([frame] * (spec.batch or 1), spec)
            tensors.append(tensor)
            geoms.append(geom[0])
        return cls(tensors, geoms, truths, source)

    def __len__(self) -> int:
        return len(self.tensors)

    def confusion(self, preds: list[np.ndarray], num_classes: int,
                  ignore_index: int | None) -> Confusion | None:
        if self.truths is None:
            return None
        conf = Confusion(num_classes, ignore_index)
        for pred, geom, truth in zip(preds, self.geoms, self.truths, strict=True):
            conf.add(to_label_resolution(pred, geom, truth.shape[:2]), truth)
        return conf

    def score(self, preds: list[np.ndarray], classes: Sequence[str],
              ignore_index: int | None) -> Scores | None:
        conf = self.confusion(preds, len(classes), ignore_index)
        return None if conf is None else scores(conf, classes, len(preds))
