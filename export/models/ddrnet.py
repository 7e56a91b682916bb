"""DDRNet-23-slim (Hong et al., 2021) in the layout of the authors' ydhongHIT/DDRNet.

Parameter names and shapes are those of ``segmentation/DDRNet_23_slim.py``
(``DualResNet``, planes 32, DAPPM 128, head 64), so the published Cityscapes file
``best_val_smaller.pth`` loads strictly.  That file is the HRNet-style training
wrapper: ``model.*`` (stripped by the checkpoint loader), the auxiliary head
``seghead_extra`` (built here, never run) and ``loss.criterion.weight`` (dropped,
see :mod:`segedge.export.models.official`).

Output: the authors' 1/8 logits resized to the input size, bilinear with
``align_corners=False`` as their evaluation does ("keep align_corners=False in
all places").  Branch fusions resize to the partner tensor's size rather than
``input // 8``: identical for inputs that are multiples of 8, valid for others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segedge.export.models.official import OfficialLayout, resize_like

__all__ = ["DualResNet", "ddrnet23_slim"]

BN_MOMENTUM = 0.1


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    """ResNet basic block; the last block of a stage skips the final ReLU (``no_relu``)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, no_relu: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else self.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x2 channels) residual block, no final ReLU by default."""

    expansion = 2

    def __init__(self, cin: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, no_relu: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.no_relu = no_relu

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(out)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else self.relu(out)


Block = type[BasicBlock] | type[Bottleneck]


def make_layer(block: Block, cin: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """The authors' ``_make_layer``: a projection shortcut where needed, last block ``no_relu``."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or cin != out:
        downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), _bn(out))
    layers: list[nn.Module] = [block(cin, planes, stride, downsample)]
    layers += [block(out, planes, 1, no_relu=i == blocks - 1) for i in range(1, blocks)]
    return nn.Sequential(*layers)


def bn_relu_conv(cin: int, cout: int, ks: int = 1, groups: int = 1) -> list[nn.Module]:
    """Pre-activation unit used by the pyramid pooling modules and heads."""
    return [_bn(cin), nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, ks, padding=ks // 2, groups=groups, bias=False)]


def pooled(kernel: int | None, cin: int, cout: int) -> nn.Sequential:
    """A pyramid branch: average pool (``None``: global) then BN-ReLU-1x1."""
    pool: nn.Module = (nn.AdaptiveAvgPool2d((1, 1)) if kernel is None
                       else nn.AvgPool2d(kernel, (kernel - 1) // 2, (kernel - 1) // 2))
    return nn.Sequential(pool, *bn_relu_conv(cin, cout))


def add_scales(module: nn.Module, cin: int, branch: int) -> None:
    """The pooled branches scale1..scale4 (5/2, 9/4, 17/8, global) and the 1x1 scale0, under
    the names DDRNet's DAPPM and PIDNet's PAPPM share in the official checkpoints."""
    for i, kernel in enumerate((5, 9, 17, None), start=1):
        module.add_module(f"scale{i}", pooled(kernel, cin, branch))
    module.add_module("scale0", nn.Sequential(*bn_relu_conv(cin, branch)))


class DAPPM(nn.Module):
    """Deep aggregation pyramid pooling: pooled branches (5/2, 9/4, 17/8, global),
    each refined with the one below it, concatenated and projected, plus a shortcut."""

    def __init__(self, cin: int, branch: int, cout: int) -> None:
        super().__init__()
        add_scales(self, cin, branch)
        for i in range(1, 5):
            self.add_module(f"process{i}", nn.Sequential(*bn_relu_conv(branch, branch, 3)))
        self.compression = nn.Sequential(*bn_relu_conv(branch * 5, cout))
        self.shortcut = nn.Sequential(*bn_relu_conv(cin, cout))

    def forward(self, x: Tensor) -> Tensor:
        feats = [self.scale0(x)]
        for i in range(1, 5):
            up = resize_like(getattr(self, f"scale{i}")(x), x)
            feats.append(getattr(self, f"process{i}")(up + feats[-1]))
        return self.compression(torch.cat(feats, 1)) + self.shortcut(x)


class SegmentHead(nn.Module):
    """BN-ReLU-3x3, BN-ReLU-1x1 classifier (the authors' ``segmenthead``)."""

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.bn1 = _bn(cin)
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1, bias=False)
        self.bn2 = _bn(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, cout, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(x)))


def init_like_authors(model: nn.Module) -> None:
    """Kaiming (fan_out, relu) convs, unit BN: the authors' random start."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DualResNet(OfficialLayout):
    """DDRNet: a 1/8 high-resolution branch and a 1/64 context branch with bilateral
    fusions, DAPPM on the context branch; returns logits at input resolution."""

    stride = 1  # any input size (the authors' code needs multiples of 8)
    training_roots = ("loss",)
    aux_heads = ("seghead_extra",)

    def __init__(self, layers: tuple[int, int, int, int] = (2, 2, 2, 2), num_classes: int = 19,
                 planes: int = 32, spp_planes: int = 128, head_planes: int = 64) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        high = planes * 2
        self.conv1 = nn.Sequential(nn.Conv2d(3, planes, 3, 2, 1), _bn(planes),
                                   nn.ReLU(inplace=True), nn.Conv2d(planes, planes, 3, 2, 1),
                                   _bn(planes), nn.ReLU(inplace=True))
        self.relu = nn.ReLU(inplace=False)
        self.layer1 = make_layer(BasicBlock, planes, planes, layers[0])
        self.layer2 = make_layer(BasicBlock, planes, planes * 2, layers[1], stride=2)
        self.layer3 = make_layer(BasicBlock, planes * 2, planes * 4, layers[2], stride=2)
        self.layer4 = make_layer(BasicBlock, planes * 4, planes * 8, layers[3], stride=2)
        self.compression3 = nn.Sequential(nn.Conv2d(planes * 4, high, 1, bias=False), _bn(high))
        self.compression4 = nn.Sequential(nn.Conv2d(planes * 8, high, 1, bias=False), _bn(high))
        self.down3 = nn.Sequential(nn.Conv2d(high, planes * 4, 3, 2, 1, bias=False),
                                   _bn(planes * 4))
        self.down4 = nn.Sequential(nn.Conv2d(high, planes * 4, 3, 2, 1, bias=False),
                                   _bn(planes * 4), nn.ReLU(inplace=True),
                                   nn.Conv2d(planes * 4, planes * 8, 3, 2, 1, bias=False),
                                   _bn(planes * 8))
        self.layer3_ = make_layer(BasicBlock, planes * 2, high, 2)
        self.layer4_ = make_layer(BasicBlock, high, high, 2)
        self.layer5_ = make_layer(Bottleneck, high, high, 1)
        self.layer5 = make_layer(Bottleneck, planes * 8, planes * 8, 1, stride=2)
        self.spp = DAPPM(planes * 16, spp_planes, planes * 4)
        self.seghead_extra = SegmentHead(high, head_planes, num_classes)
        self.final_layer = SegmentHead(planes * 4, head_planes, num_classes)
        init_like_authors(self)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        relu = self.relu
        stage2 = self.layer2(relu(self.layer1(self.conv1(x))))
        stage3 = self.layer3(relu(stage2))
        high = self.layer3_(relu(stage2))
        low = stage3 + self.down3(relu(high))  # bilateral fusion; the 1/8 side reads
        high = high + resize_like(self.compression3(relu(stage3)), high)  # the unfused stage
        stage4 = self.layer4(relu(low))
        high = self.layer4_(relu(high))
        low = stage4 + self.down4(relu(high))
        high = high + resize_like(self.compression4(relu(stage4)), high)
        high = self.layer5_(relu(high))
        low = resize_like(self.spp(self.layer5(relu(low))), high)
        out = self.final_layer(low + high)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def ddrnet23_slim(num_classes: int = 19) -> DualResNet:
    """DDRNet-23-slim (5.7M parameters), the authors' layout incl. ``seghead_extra``."""
    return DualResNet((2, 2, 2, 2), num_classes, planes=32, spp_planes=128, head_planes=64)
