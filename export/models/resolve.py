"""Turn an ExportConfig into a ready network plus everything its metadata needs.

Where the network comes from is its source's business (export/models/sources.py:
one file per source); what every model shares happens here once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from torch import nn

from segedge.export.config import ExportConfig
from segedge.export.models import sources
from segedge.export.models.checkpoint import load_checkpoint
from segedge.export.models.sources import Built
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ColorOrder, default_palette
from segedge.runtime.normalization import Normalization


@dataclass
class Resolved(Built):
    """A source's Built, settled by what every model shares: the --checkpoint loaded,
    `palette` filled, mean/std (0..1 units) after --mean/--std/--norm-units/--scale,
    `color` after --model-rgb/--model-bgr, `size` after --imgsz."""

    normalization: Normalization | None = None  # how mean/std were given (for the report)

    @property
    def model_color(self) -> ColorOrder:
        """The colour order the network was trained on."""
        return self.color


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


def settle_classes(cfg: ExportConfig, default: tuple[str, ...] | None) -> tuple[str, ...]:
    """--classes / --num-classes over a model's own class list (None: it has none)."""
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


def saved_classes(cfg: ExportConfig, saved: tuple[str, ...], where: str) -> tuple[str, ...]:
    """A library model's saved class list; --classes may rename it, never change its count."""
    n = len(saved)
    if cfg.classes is not None and len(cfg.classes) != n:
        raise InputError("--classes", f"{n} names ({where} has {n} classes)",
                         f"{len(cfg.classes)} in the file")
    if cfg.num_classes is not None and cfg.num_classes != n:
        raise InputError("--num-classes", f"{n} ({where} has {n} classes)", cfg.num_classes)
    return cfg.classes if cfg.classes is not None else saved


def resolve(cfg: ExportConfig) -> Resolved:
    """Build the network through its source (zoo, user file, library front-end), load a
    --checkpoint, settle classes and preprocessing."""
    built = sources.build(cfg)
    model, notes, weights = built.model, list(built.notes), built.weights
    if cfg.checkpoint is not None:
        notes.extend(load_checkpoint(built.checkpoint_into or model, cfg.checkpoint))
        weights = f"checkpoint {cfg.checkpoint}"
    extra = getattr(model, "segedge_weights_note", None)
    if isinstance(extra, str):
        notes.append(extra)
    nn.Module.eval(model)  # unbound: a model may shadow nn.Module's methods
    norm = cfg.normalization(built.mean, built.std)
    if (note := norm.note()) is not None:
        notes.append(note)
    settled = {f.name: getattr(built, f.name) for f in fields(Built)}
    settled.update(model=model, palette=built.palette or default_palette(built.classes),
                   mean=norm.unit_mean, std=norm.unit_std, color=cfg.model_color or built.color,
                   size=cfg.imgsz or built.size, weights=weights, notes=notes,
                   checkpoint_into=None)  # loaded above
    return Resolved(**settled, normalization=norm)
