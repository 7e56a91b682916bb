"""DeepLab v3+ (Chen et al., 2018): atrous backbone at output stride 16, ASPP, light decoder.

Backbones come from torchvision with ``weights=None`` unless the caller passes a torchvision
weights enum (which torchvision may then download; nothing here does). Export-friendliness:
image pooling is a mean over H, W (see :func:`global_mean`) and every resize is
``F.interpolate(size=<tensor shape>)``, so graphs keep symbolic height/width.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import WeightsEnum, mobilenet_v2, resnet50

__all__ = [
    "ASPP",
    "DeepLabV3Plus",
    "SeparableConv",
    "deeplabv3plus_mobilenet_v2",
    "deeplabv3plus_resnet50",
    "global_mean",
]

ASPP_RATES = (6, 12, 18)  # atrous rates at output stride 16
_MOBILENET_OS16_FROM = 14  # features[14] is MobileNetV2's last stride-2 block (stride 16 -> 32)


def global_mean(x: Tensor) -> Tensor:
    """Mean over H, W as a scaled ReduceSum.

    ``x.mean`` exports to ReduceMean, whose axes moved from attribute to input in opset 18;
    torch.onnx's dynamo exporter then fails to convert it down to opset 17 (the graph stays at
    18). ReduceSum has taken axes as input since opset 13, so it exports at 17 with both
    exporters; scaling before summing keeps FP16 engines far from overflow on large inputs.
    """
    return (x * (1.0 / (x.shape[-2] * x.shape[-1]))).sum(dim=(2, 3), keepdim=True)


def _conv1x1(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SeparableConv(nn.Sequential):
    """Atrous depthwise 3x3 + BN + ReLU, then pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        )


class ASPP(nn.Module):
    """1x1 + three atrous separable 3x3 + image pooling branches, concatenated and projected.

    The pooling branch has a BatchNorm on a 1x1 map, so training needs batches of >= 2
    (as in torchvision's DeepLab); eval/export works with any batch.
    """

    def __init__(self, cin: int, cout: int = 256, rates: tuple[int, ...] = ASPP_RATES) -> None:
        super().__init__()
        self.branches = nn.ModuleList([_conv1x1(cin, cout)])
        self.branches.extend(SeparableConv(cin, cout, r) for r in rates)
        self.pooling = _conv1x1(cin, cout)
        self.project = nn.Sequential(
            nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Dropout(0.1),
        )

    def forward(self, x: Tensor) -> Tensor:
        feats = [branch(x) for branch in self.branches]
        pooled = self.pooling(global_mean(x))
        feats.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(feats, dim=1))


class DeepLabV3Plus(nn.Module):
    """Encoder (``low`` at stride 4, ``high`` at stride 16) + ASPP + decoder; any input size."""

    stride: int = 1

    def __init__(
        self,
        low: nn.Module,
        high: nn.Module,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        aspp_channels: int = 256,
        low_reduced: int = 48,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone = nn.ModuleDict({"low": low, "high": high})
        self.aspp = ASPP(high_channels, aspp_channels)
        self.reduce = _conv1x1(low_channels, low_reduced)
        self.decoder = nn.Sequential(
            SeparableConv(aspp_channels + low_reduced, aspp_channels),
            SeparableConv(aspp_channels, aspp_channels),
        )
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        low = self.backbone["low"](x)
        high = self.aspp(self.backbone["high"](low))
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        h = self.decoder(torch.cat([self.reduce(low), high], dim=1))
        h = self.classifier(h)
        return F.interpolate(h, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _mobilenet_v2_os16(weights: WeightsEnum | None) -> tuple[nn.Module, nn.Module]:
    """MobileNetV2 features[0:4] (24 ch, stride 4) and [4:18] (320 ch) dilated to stride 16.

    The last stride-2 depthwise conv loses its stride; the depthwise convs after it get
    dilation 2 so their receptive field matches the stride-32 original (final 1280-ch 1x1
    conv dropped, as in common DeepLab v3+ MobileNetV2 setups).
    """
    features = mobilenet_v2(weights=weights).features
    for i in range(_MOBILENET_OS16_FROM, 18):
        for conv in features[i].modules():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                if conv.stride == (2, 2):
                    conv.stride = (1, 1)
                else:
                    conv.dilation, conv.padding = (2, 2), (2, 2)
    return features[:4], features[4:18]


def _resnet50_os16(weights: WeightsEnum | None) -> tuple[nn.Module, nn.Module]:
    """ResNet50 stem+layer1 (256 ch, stride 4) and layer2..4 (2048 ch, layer4 dilated)."""
    net = resnet50(weights=weights, replace_stride_with_dilation=[False, False, True])
    low = nn.Sequential(
        OrderedDict(
            conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool, layer1=net.layer1
        )
    )
    high = nn.Sequential(OrderedDict(layer2=net.layer2, layer3=net.layer3, layer4=net.layer4))
    return low, high


def deeplabv3plus_mobilenet_v2(
    num_classes: int, backbone_weights: WeightsEnum | None = None
) -> nn.Module:
    """DeepLab v3+ on MobileNetV2 (output stride 16)."""
    low, high = _mobilenet_v2_os16(backbone_weights)
    return DeepLabV3Plus(low, high, 24, 320, num_classes)


def deeplabv3plus_resnet50(
    num_classes: int, backbone_weights: WeightsEnum | None = None
) -> nn.Module:
    """DeepLab v3+ on ResNet50 (output stride 16)."""
    low, high = _resnet50_os16(backbone_weights)
    return DeepLabV3Plus(low, high, 256, 2048, num_classes)
