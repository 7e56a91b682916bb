"""PIDNet-S (Xu et al., 2023) in the layout of the authors' XuJiacong/PIDNet.

Parameter names and shapes are those of ``models/pidnet.py`` with
``m=2, n=3, planes=32, ppm_planes=96, head_planes=128``, so the published
``PIDNet_S_Cityscapes_val.pt`` / ``_test.pt`` load strictly.  Those files are the
training wrapper: ``model.*`` (stripped by the checkpoint loader), the auxiliary
heads ``seghead_p`` / ``seghead_d`` (built here, never run) and the loss
modules' class weights ``sem_loss.*`` / ``sb_loss.*`` (dropped, see
:mod:`segedge.export.models.official`).

Three branches: P (detail, 1/8), I (context, to 1/64 with PAPPM) and D
(boundary, 1/8), fused by the boundary-attention ``Light_Bag``.  Output: the
1/8 logits resized to the input size bilinearly with ``align_corners=True``,
as the authors' evaluation (``MODEL.ALIGN_CORNERS: True``) and ``custom.py``
do; inside the network every resize is ``align_corners=False`` (theirs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segedge.export.models.ddrnet import (
    BasicBlock,
    Bottleneck,
    SegmentHead,
    add_scales,
    bn_relu_conv,
    init_like_authors,
    make_layer,
)
from segedge.export.models.official import OfficialLayout, resize_like

__all__ = ["PIDNet", "pidnet_s"]


def _conv_bn(cin: int, cout: int, ks: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, ks, padding=ks // 2, bias=False),
                         nn.BatchNorm2d(cout))


class PagFM(nn.Module):
    """Pixel-attention-guided fusion: the P branch takes I features where they agree."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.f_x = _conv_bn(channels, mid)
        self.f_y = _conv_bn(channels, mid)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        y_q = resize_like(self.f_y(y), x)
        sim = torch.sigmoid(torch.sum(self.f_x(x) * y_q, dim=1, keepdim=True))
        return (1 - sim) * x + sim * resize_like(y, x)


class PAPPM(nn.Module):
    """Parallel aggregation pyramid pooling: four pooled branches added to the 1x1
    branch, one grouped 3x3 over all four, projected, plus a shortcut."""

    def __init__(self, cin: int, branch: int, cout: int) -> None:
        super().__init__()
        add_scales(self, cin, branch)
        self.scale_process = nn.Sequential(*bn_relu_conv(branch * 4, branch * 4, 3, groups=4))
        self.compression = nn.Sequential(*bn_relu_conv(branch * 5, cout))
        self.shortcut = nn.Sequential(*bn_relu_conv(cin, cout))

    def forward(self, x: Tensor) -> Tensor:
        x_ = self.scale0(x)
        scales = [resize_like(s(x), x) + x_
                  for s in (self.scale1, self.scale2, self.scale3, self.scale4)]
        out = self.scale_process(torch.cat(scales, 1))
        return self.compression(torch.cat([x_, out], 1)) + self.shortcut(x)


class Light_Bag(nn.Module):  # noqa: N801 - the authors' class and attribute names
    """Boundary-attention-guided fusion: edges (D) weigh detail (P) against context (I)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_p = _conv_bn(cin, cout)
        self.conv_i = _conv_bn(cin, cout)

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        edge = torch.sigmoid(d)
        return self.conv_p((1 - edge) * i + p) + self.conv_i(i + edge * p)


class PIDNet(OfficialLayout):
    """PIDNet with two-layer D branch (the S and M sizes); logits at input resolution."""

    stride = 1  # any input size (the authors' code needs multiples of 8)
    training_roots = ("sem_loss", "sb_loss", "bd_loss")
    aux_heads = ("seghead_p", "seghead_d")

    def __init__(self, num_classes: int = 19, planes: int = 32, ppm_planes: int = 96,
                 head_planes: int = 128, m: int = 2, n: int = 3) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if m != 2:
            raise ValueError(f"PIDNet here has the S/M layout (m=2), got m={m}")
        self.num_classes = num_classes
        p = planes
        self.conv1 = nn.Sequential(nn.Conv2d(3, p, 3, 2, 1), nn.BatchNorm2d(p),
                                   nn.ReLU(inplace=True), nn.Conv2d(p, p, 3, 2, 1),
                                   nn.BatchNorm2d(p), nn.ReLU(inplace=True))
        self.relu = nn.ReLU(inplace=False)
        # I branch
        self.layer1 = make_layer(BasicBlock, p, p, m)
        self.layer2 = make_layer(BasicBlock, p, p * 2, m, stride=2)
        self.layer3 = make_layer(BasicBlock, p * 2, p * 4, n, stride=2)
        self.layer4 = make_layer(BasicBlock, p * 4, p * 8, n, stride=2)
        self.layer5 = make_layer(Bottleneck, p * 8, p * 8, 2, stride=2)
        # P branch
        self.compression3 = _conv_bn(p * 4, p * 2)
        self.compression4 = _conv_bn(p * 8, p * 2)
        self.pag3 = PagFM(p * 2, p)
        self.pag4 = PagFM(p * 2, p)
        self.layer3_ = make_layer(BasicBlock, p * 2, p * 2, m)
        self.layer4_ = make_layer(BasicBlock, p * 2, p * 2, m)
        self.layer5_ = make_layer(Bottleneck, p * 2, p * 2, 1)
        # D branch
        self.layer3_d = BasicBlock(p * 2, p, 1, _conv_bn(p * 2, p), no_relu=True)
        self.layer4_d = make_layer(Bottleneck, p, p, 1)
        self.diff3 = _conv_bn(p * 4, p, 3)
        self.diff4 = _conv_bn(p * 8, p * 2, 3)
        self.spp = PAPPM(p * 16, ppm_planes, p * 4)
        self.dfm = Light_Bag(p * 4, p * 4)
        self.layer5_d = make_layer(Bottleneck, p * 2, p * 2, 1)
        # heads: the two auxiliary ones only load
        self.seghead_p = SegmentHead(p * 2, head_planes, num_classes)
        self.seghead_d = SegmentHead(p * 2, p, 1)
        self.final_layer = SegmentHead(p * 4, head_planes, num_classes)
        init_like_authors(self)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        relu = self.relu
        x = relu(self.layer2(relu(self.layer1(self.conv1(x)))))
        p = self.layer3_(x)
        d = self.layer3_d(x)
        x = relu(self.layer3(x))
        p = self.pag3(p, self.compression3(x))
        d = d + resize_like(self.diff3(x), d)
        x = relu(self.layer4(x))
        p = self.layer4_(relu(p))
        d = self.layer4_d(relu(d))
        p = self.pag4(p, self.compression4(x))
        d = d + resize_like(self.diff4(x), d)
        p = self.layer5_(relu(p))
        d = self.layer5_d(relu(d))
        i = resize_like(self.spp(self.layer5(x)), p)
        out = self.final_layer(self.dfm(p, i, d))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=True)


def pidnet_s(num_classes: int = 19) -> PIDNet:
    """PIDNet-S (7.6M parameters), the authors' layout incl. the auxiliary heads."""
    return PIDNet(num_classes, planes=32, ppm_planes=96, head_planes=128, m=2, n=3)
