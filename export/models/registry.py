"""Model zoo registry: builders that carry their own preprocessing and labels.

Like torchvision's weight enums, each entry knows its mean/std, colour order,
default size, stride, classes, palette and pretrained `Weights`, so an export
needs only a name.  Entries are registered once in catalog.py (which also holds
the one weights table); lookups of an unknown name suggest the nearest ones.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from segedge.export.models.weights import Weights
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD, ColorOrder, default_palette

WeightsChoice = Literal["random", "pretrained"]

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)
CAMVID_PALETTE = default_palette(CAMVID_CLASSES)  # CamVid's published colours (one table)
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)


@dataclass(frozen=True)
class BuildRequest:
    """What a builder is asked for; builders raise SegedgeError subclasses on misuse."""

    num_classes: int
    weights: WeightsChoice = "random"


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: how to build the network and how to feed and read it."""

    name: str
    family: str
    build: Callable[[BuildRequest], nn.Module]
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = ()
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    color_order: ColorOrder = "RGB"
    default_size: tuple[int, int] = (360, 480)
    stride: int = 1
    weights: Weights | None = None  # what "pretrained" loads, or None when nothing exists
    description: str = ""
    tags: tuple[str, ...] = field(default=())
    task: str = "semantic"  # "semantic" (label maps) or "instance" (Mask R-CNN detections)

    def __post_init__(self) -> None:
        """Full-model weights must predict this entry's classes with its preprocessing."""
        if not self.classes:
            raise ValueError(f"zoo entry {self.name!r}: expected at least one class, got none")
        from segedge.export.tasks.base import task_names

        if self.task not in task_names():
            raise ValueError(f"zoo entry {self.name!r}: expected task one of "
                             f"{', '.join(task_names())}, got {self.task!r}")
        meta = self.weights.meta if self.weights is not None else None
        if meta is None:
            return
        if meta.classes and meta.classes != self.classes:
            raise ValueError(f"zoo entry {self.name!r}: expected the classes of its weights "
                             f"({len(meta.classes)}: {meta.classes[:3]}...), got "
                             f"{len(self.classes)}: {self.classes[:3]}...")
        for what, theirs, ours in (("mean", meta.mean, self.mean), ("std", meta.std, self.std)):
            if theirs is not None and tuple(theirs) != tuple(ours):
                raise ValueError(f"zoo entry {self.name!r}: expected {what} {theirs} (its "
                                 f"weights'), got {ours}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def resolved_palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.palette if len(self.palette) == len(self.classes) else default_palette(
            self.classes
        )


_ZOO: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _ZOO:
        raise ValueError(f"zoo entry {spec.name!r} registered twice")
    _ZOO[spec.name] = spec
    return spec


def _ensure_catalog() -> None:
    if not _ZOO:
        import segedge.export.models.catalog  # noqa: F401  (registers every entry)


def names() -> list[str]:
    _ensure_catalog()
    return sorted(_ZOO)


def get(name: str) -> ModelSpec:
    """Look a model up by name; an unknown name suggests the closest entries."""
    _ensure_catalog()
    key = name.strip().lower().replace("-", "_")
    if key in _ZOO:
        return _ZOO[key]
    close = difflib.get_close_matches(key, list(_ZOO), n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise InputError(
        "model", f"a zoo name (see `segexport --list`) or path/to/file.py:Class{hint}", repr(name)
    )


def all_specs() -> list[ModelSpec]:
    _ensure_catalog()
    return [_ZOO[n] for n in sorted(_ZOO)]
