"""torchvision segmentation models as zoo builders returning plain logits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.models import segmentation as tvseg

from segedge.export.models.registry import BuildRequest
from segedge.export.models.weights import load_matching, load_torchvision_state


class OutOnly(nn.Module):
    """torchvision returns {'out': ..., 'aux': ...}; deployment wants the tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def torchvision_builder(
    factory: Callable[..., nn.Module], weights_enum: Any
) -> Callable[[BuildRequest], nn.Module]:
    """Builder for a torchvision model; 'pretrained' loads its COCO-with-VOC-labels weights."""

    def build(req: BuildRequest) -> nn.Module:
        model = factory(weights=None, weights_backbone=None, num_classes=req.num_classes,
                        aux_loss=False)
        if req.weights == "pretrained":
            state = load_torchvision_state(weights_enum)
            state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
            missing = load_matching(model, state)
            note = f"pretrained {weights_enum}"
            if missing:
                note += f"; random: {', '.join(missing)}"
            model.segedge_weights_note = note  # type: ignore[assignment]
        return OutOnly(model)

    return build


FCN_RESNET50 = torchvision_builder(tvseg.fcn_resnet50, tvseg.FCN_ResNet50_Weights.DEFAULT)
DEEPLABV3_RESNET50 = torchvision_builder(
    tvseg.deeplabv3_resnet50, tvseg.DeepLabV3_ResNet50_Weights.DEFAULT
)
DEEPLABV3_MOBILENET = torchvision_builder(
    tvseg.deeplabv3_mobilenet_v3_large, tvseg.DeepLabV3_MobileNet_V3_Large_Weights.DEFAULT
)
LRASPP_MOBILENET = torchvision_builder(
    tvseg.lraspp_mobilenet_v3_large, tvseg.LRASPP_MobileNet_V3_Large_Weights.DEFAULT
)
