"""Model source: a zoo name (export/models/catalog.py), with its own preprocessing and labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segedge.export.models import registry
from segedge.export.models.registry import BuildRequest
from segedge.export.models.sources import Built
from segedge.export.models.weights import choose_weights
from segedge.runtime.metadata import default_palette

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig


def artifact_name(what: str) -> str:
    """The entry's own name (an unknown name: one line with the nearest ones)."""
    return registry.get(what).name


def task(what: str) -> str:
    """A zoo entry is one task (a --task must agree)."""
    return registry.get(what).task


def build(what: str, cfg: ExportConfig) -> Built:
    """The zoo entry's builder with --weights/--checkpoint choosing what it loads."""
    from segedge.export.models.resolve import settle_classes

    spec = registry.get(what)
    notes: list[str] = []
    classes = settle_classes(cfg, spec.classes)
    weights = choose_weights(spec.weights, cfg.weights, cfg.checkpoint)
    if cfg.weights == "auto" and weights == "random" and spec.weights is not None \
            and cfg.checkpoint is None:
        notes.append(f"pretrained weights ({spec.weights}) not in the local cache: "
                     "exporting random weights (use --weights pretrained online)")
    model = spec.build(BuildRequest(len(classes), weights))  # type: ignore[arg-type]
    palette = spec.palette if classes == spec.classes and spec.palette else \
        default_palette(classes)
    if weights == "pretrained" and spec.weights is not None:
        weights = spec.weights.description
    return Built(model=model, name=spec.name, family=spec.family, classes=classes,
                 mean=spec.mean, std=spec.std, color=spec.color_order, size=spec.default_size,
                 stride=spec.stride, weights=weights, palette=palette, notes=notes)
