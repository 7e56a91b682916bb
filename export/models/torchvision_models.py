"""torchvision segmentation models as zoo builders returning plain logits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import segmentation as tvseg

from segedge.export.models.registry import BuildRequest
from segedge.export.models.weights import Weights


class OutOnly(nn.Module):
    """torchvision returns {'out': ..., 'aux': ...}; deployment wants the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def torchvision_builder(factory: str, weights: Weights) -> Callable[[BuildRequest], nn.Module]:
    """Builder for `torchvision.models.segmentation.<factory>`; 'pretrained' loads `weights`
    (their aux head is training-only and never built, so its keys are simply not loaded)."""

    def build(req: BuildRequest) -> nn.Module:
        model = getattr(tvseg, factory)(weights=None, weights_backbone=None,
                                        num_classes=req.num_classes, aux_loss=False)
        wrapped = OutOnly(model)
        if req.weights == "pretrained":
            weights.load_noted(model, note_on=wrapped)  # resolve reads the returned module
        return wrapped

    return build
