"""FCN-ResNet18: the edge segmentation net popularised by NVIDIA jetson-inference.

A stride-32 ResNet18 trunk, torchvision's FCNHead and one bilinear resize to the input size.
Module names follow torchvision's segmentation models (``backbone.*``, ``classifier.*``), so
checkpoints trained with torchvision's FCN training recipe load with ``load_state_dict``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import WeightsEnum, resnet18
from torchvision.models.segmentation.fcn import FCNHead

__all__ = ["FCNResNet18", "fcn_resnet18"]

_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class FCNResNet18(nn.Module):
    """ResNet18 (through layer4, 512 ch at stride 32) + FCNHead; any input size."""

    stride: int = 1

    def __init__(self, num_classes: int, backbone_weights: WeightsEnum | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        net = resnet18(weights=backbone_weights)
        self.backbone = nn.Sequential(OrderedDict((name, getattr(net, name)) for name in _TRUNK))
        self.classifier = FCNHead(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.classifier(self.backbone(x))
        return F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)


def fcn_resnet18(num_classes: int, backbone_weights: WeightsEnum | None = None) -> nn.Module:
    """FCN-ResNet18 (jetson-inference style); stride 1 (output resized to the input)."""
    return FCNResNet18(num_classes, backbone_weights)
