"""Turn an ExportConfig into a ready network plus everything its metadata needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from segedge.export.config import ExportConfig
from segedge.export.models import registry
from segedge.export.models.checkpoint import load_checkpoint
from segedge.export.models.registry import BuildRequest
from segedge.export.models.user_model import build_user_model, is_user_ref
from segedge.export.models.weights import choose_weights
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD, ColorOrder, default_palette
from segedge.runtime.normalization import Normalization


@dataclass
class Resolved:
    name: str
    family: str
    model: nn.Module
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    model_color: ColorOrder
    size: tuple[int, int]
    stride: int
    weights: str
    notes: list[str] = field(default_factory=list)
    normalization: Normalization | None = None  # how mean/std were given (for the report)


def read_classes(path: Path) -> tuple[str, ...]:
    """Class names, one per line, from a UTF-8 text file (binary files: one line)."""
    what = "a UTF-8 text file with one class name per line"
    if not path.is_file():
        raise InputError("--classes", what, f"no such file {path}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputError("--classes", what, f"{path} ({err.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError("--classes", what, f"{path}, which is not UTF-8 text (byte "
                         f"0x{data[err.start]:02x} at offset {err.start})") from None
    if any(ord(ch) < 32 and ch not in "\t\r\n\f\v" or ch == "\x7f" for ch in text):
        raise InputError("--classes", what, f"{path}, which is a binary file")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise InputError("--classes", "at least one class name", f"an empty file {path}")
    return names


def _classes(cfg: ExportConfig, default: tuple[str, ...] | None) -> tuple[str, ...]:
    if cfg.classes is not None:
        if cfg.num_classes is not None and cfg.num_classes != len(cfg.classes):
            raise InputError("--num-classes", f"{len(cfg.classes)} (the --classes file)",
                             cfg.num_classes)
        return cfg.classes
    if cfg.num_classes is not None:
        if cfg.num_classes < 1:
            raise InputError("--num-classes", "a positive integer", cfg.num_classes)
        if default is not None and cfg.num_classes == len(default):
            return default
        return tuple(f"class_{i}" for i in range(cfg.num_classes))
    if default is None:
        raise InputError("classes", "--classes FILE or --num-classes N for a user model",
                         "neither")
    return default


def resolve(cfg: ExportConfig) -> Resolved:
    """Build the network (zoo or user file), load weights, settle classes and preprocessing."""
    notes: list[str] = []
    if is_user_ref(cfg.model):
        classes = _classes(cfg, None)
        model = build_user_model(cfg.model, len(classes), cfg.model_args)
        name = cfg.model.split(":", 1)[1]
        family, size, stride, weights = "custom", (512, 512), 1, "random"
        palette = default_palette(classes)
        mean, std, color = IMAGENET_MEAN, IMAGENET_STD, "RGB"
    else:
        spec = registry.get(cfg.model)
        classes = _classes(cfg, spec.classes)
        weights = choose_weights(spec.weights, cfg.weights, cfg.checkpoint)
        if cfg.weights == "auto" and weights == "random" and spec.weights is not None \
                and cfg.checkpoint is None:
            notes.append(f"pretrained weights ({spec.weights}) not in the local cache: "
                         "exporting random weights (use --weights pretrained online)")
        model = spec.build(BuildRequest(len(classes), weights))  # type: ignore[arg-type]
        name, family, size, stride = spec.name, spec.family, spec.default_size, spec.stride
        palette = spec.palette if classes == spec.classes and spec.palette else \
            default_palette(classes)
        mean, std, color = spec.mean, spec.std, spec.color_order
        if weights == "pretrained" and spec.weights is not None:
            weights = spec.weights.description
    if cfg.checkpoint is not None:
        notes.extend(load_checkpoint(model, cfg.checkpoint))
        weights = f"checkpoint {cfg.checkpoint}"
    extra = getattr(model, "segedge_weights_note", None)
    if isinstance(extra, str):
        notes.append(extra)
    nn.Module.eval(model)  # unbound: a model may shadow nn.Module's methods
    norm = cfg.normalization(mean, std)
    if (note := norm.note()) is not None:
        notes.append(note)
    return Resolved(
        name=name, family=family, model=model, classes=classes, palette=palette,
        mean=norm.unit_mean, std=norm.unit_std, model_color=cfg.model_color or color,
        size=cfg.imgsz or size, stride=stride, weights=weights, notes=notes,
        normalization=norm,
    )
