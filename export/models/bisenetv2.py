"""BiSeNetV2 (Yu et al., 2021) in the layout of CoinCheung/BiSeNet, whose Cityscapes
checkpoint ``model_final_v2_city.pth`` is the one most deployed.

Parameter names and shapes are the authors' (``lib/models/bisenetv2.py``), so their
training checkpoint, which includes the four auxiliary heads ``aux2`` .. ``aux5_4``,
loads with ``load_state_dict(strict=True)``.  The auxiliary heads exist only for
that: ``forward`` runs the detail branch, the semantic branch, the guided
aggregation and the main head, as the authors' ``aux_mode='eval'`` does.

Fixed-factor upsampling (nearest x4 in the aggregation layer, bilinear x8 in the
head) is written as resizing to the partner tensor's size: identical on the
inputs the authors' code accepts (multiples of 32) and valid on any other size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segedge.export.models.deeplabv3plus import global_mean
from segedge.export.models.official import OfficialLayout, resize_like

__all__ = ["BiSeNetV2", "bisenetv2"]


class ConvBNReLU(nn.Module):
    """Conv (no bias) + BN + ReLU under the authors' names ``conv``, ``bn``."""

    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1,
                 padding: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


def _conv_bn(cin: int, cout: int, ks: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, ks, stride, ks // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class DetailBranch(nn.Module):
    """Wide, shallow path to 1/8: three stages of 3x3 ConvBNReLU (64, 64, 128 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.S1 = nn.Sequential(ConvBNReLU(3, 64, stride=2), ConvBNReLU(64, 64))
        self.S2 = nn.Sequential(ConvBNReLU(64, 64, stride=2), ConvBNReLU(64, 64),
                                ConvBNReLU(64, 64))
        self.S3 = nn.Sequential(ConvBNReLU(64, 128, stride=2), ConvBNReLU(128, 128),
                                ConvBNReLU(128, 128))

    def forward(self, x: Tensor) -> Tensor:
        return self.S3(self.S2(self.S1(x)))


class StemBlock(nn.Module):
    """To 1/4: a strided conv, then a conv pair and a max pool side by side, fused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBNReLU(3, 16, stride=2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1, padding=0), ConvBNReLU(8, 16, stride=2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(32, 16)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        return self.fuse(torch.cat([self.left(feat), self.right(feat)], dim=1))


class CEBlock(nn.Module):
    """Context embedding: global mean -> BN -> 1x1 ConvBNReLU, added back, then a 3x3."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(128)
        self.conv_gap = ConvBNReLU(128, 128, 1, padding=0)
        self.conv_last = ConvBNReLU(128, 128)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_last(self.conv_gap(self.bn(global_mean(x))) + x)


class GELayerS1(nn.Module):
    """Gather-and-expand layer, stride 1: 3x3 conv, depthwise x6 expansion, 1x1, residual."""

    def __init__(self, cin: int, cout: int, exp_ratio: int = 6) -> None:
        super().__init__()
        mid = cin * exp_ratio
        self.conv1 = ConvBNReLU(cin, cin)
        self.dwconv = nn.Sequential(*_conv_bn(cin, mid, 3, groups=cin), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(*_conv_bn(mid, cout, 1))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv2(self.dwconv(self.conv1(x))) + x)


class GELayerS2(nn.Module):
    """Gather-and-expand layer, stride 2, with a depthwise + 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, exp_ratio: int = 6) -> None:
        super().__init__()
        mid = cin * exp_ratio
        self.conv1 = ConvBNReLU(cin, cin)
        self.dwconv1 = nn.Sequential(*_conv_bn(cin, mid, 3, stride=2, groups=cin))
        self.dwconv2 = nn.Sequential(*_conv_bn(mid, mid, 3, groups=mid), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(*_conv_bn(mid, cout, 1))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cin, 3, stride=2, groups=cin),
                                      *_conv_bn(cin, cout, 1))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv2(self.dwconv2(self.dwconv1(self.conv1(x))))
        return self.relu(feat + self.shortcut(x))


class SegmentBranch(nn.Module):
    """Narrow, deep path to 1/32; returns every stage (the auxiliary heads read them)."""

    def __init__(self) -> None:
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GELayerS2(16, 32), GELayerS1(32, 32))
        self.S4 = nn.Sequential(GELayerS2(32, 64), GELayerS1(64, 64))
        self.S5_4 = nn.Sequential(GELayerS2(64, 128), GELayerS1(128, 128),
                                  GELayerS1(128, 128), GELayerS1(128, 128))
        self.S5_5 = CEBlock()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        feat2 = self.S1S2(x)
        feat3 = self.S3(feat2)
        feat4 = self.S4(feat3)
        feat5_4 = self.S5_4(feat4)
        return feat2, feat3, feat4, feat5_4, self.S5_5(feat5_4)


class BGALayer(nn.Module):
    """Bilateral guided aggregation of the 1/8 detail and 1/32 semantic features."""

    def __init__(self) -> None:
        super().__init__()
        c = 128
        self.left1 = nn.Sequential(*_conv_bn(c, c, 3, groups=c),
                                   nn.Conv2d(c, c, 1, bias=False))
        self.left2 = nn.Sequential(*_conv_bn(c, c, 3, stride=2), nn.AvgPool2d(3, 2, 1))
        self.right1 = nn.Sequential(*_conv_bn(c, c, 3))
        self.right2 = nn.Sequential(*_conv_bn(c, c, 3, groups=c),
                                    nn.Conv2d(c, c, 1, bias=False))
        self.conv = nn.Sequential(*_conv_bn(c, c, 3), nn.ReLU(inplace=True))

    def forward(self, x_d: Tensor, x_s: Tensor) -> Tensor:
        left1 = self.left1(x_d)
        right1 = resize_like(self.right1(x_s), left1, mode="nearest")  # authors' up1: nearest x4
        left = left1 * torch.sigmoid(right1)
        right = self.left2(x_d) * torch.sigmoid(self.right2(x_s))
        return self.conv(left + resize_like(right, left, mode="nearest"))  # up2: nearest x4


class SegmentHead(nn.Module):
    """3x3 ConvBNReLU, dropout, [x2 nearest + ConvBNReLU for aux heads], 1x1 classifier,
    bilinear (align_corners=False) to ``size``; ``conv_out`` indices are the authors'."""

    def __init__(self, cin: int, mid: int, num_classes: int, up_factor: int = 8,
                 aux: bool = True) -> None:
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.drop = nn.Dropout(0.1)
        mid2 = up_factor * up_factor if aux else mid
        first: nn.Module = (nn.Sequential(nn.Upsample(scale_factor=2), ConvBNReLU(mid, mid2))
                            if aux else nn.Identity())
        self.conv_out = nn.Sequential(first, nn.Conv2d(mid2, num_classes, 1, bias=True))

    def forward(self, x: Tensor, size: torch.Size) -> Tensor:
        out = self.conv_out(self.drop(self.conv(x)))
        return nn.functional.interpolate(out, size=size, mode="bilinear", align_corners=False)


class BiSeNetV2(OfficialLayout):
    """BiSeNetV2 returning full-resolution logits; ``aux*`` heads load but never run."""

    stride = 1  # any input size (the authors' code needs multiples of 32)
    aux_heads = ("aux2", "aux3", "aux4", "aux5_4")

    def __init__(self, num_classes: int = 19) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.detail = DetailBranch()
        self.segment = SegmentBranch()
        self.bga = BGALayer()
        self.head = SegmentHead(128, 1024, num_classes, up_factor=8, aux=False)
        self.aux2 = SegmentHead(16, 128, num_classes, up_factor=4)
        self.aux3 = SegmentHead(32, 128, num_classes, up_factor=8)
        self.aux4 = SegmentHead(64, 128, num_classes, up_factor=16)
        self.aux5_4 = SegmentHead(128, 128, num_classes, up_factor=32)
        self._init_weights()

    def _init_weights(self) -> None:
        """The authors' initialisation (a random export then looks like theirs)."""
        last_bns = {id(m.conv2[1]) for m in self.modules()
                    if isinstance(m, (GELayerS1, GELayerS2))}
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                (nn.init.zeros_ if id(m) in last_bns else nn.init.ones_)(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        feat_s = self.segment(x)[-1]
        return self.head(self.bga(self.detail(x), feat_s), x.shape[-2:])


def bisenetv2(num_classes: int = 19) -> BiSeNetV2:
    """BiSeNetV2 with the authors' layout (auxiliary heads included for loading)."""
    return BiSeNetV2(num_classes)
