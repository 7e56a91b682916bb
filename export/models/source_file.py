"""Model source: a user's own ``path/to/model.py:Class`` (see user_model.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from segedge.export.models.sources import Built
from segedge.export.models.user_model import build_user_model
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig


def artifact_name(what: str) -> str:
    """The class or factory name after the colon."""
    return what.split(":", 1)[1]


def build(what: str, cfg: ExportConfig) -> Built:
    """The class or factory called with --model-args; classes from --classes/--num-classes."""
    from segedge.export.models.resolve import settle_classes

    classes = settle_classes(cfg, None)
    model = build_user_model(what, len(classes), cfg.model_args)
    return Built(model=model, name=artifact_name(what), family="custom", classes=classes,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, color="RGB", size=(512, 512), stride=1,
                 weights="random")
