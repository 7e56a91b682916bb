"""ESPNet-shaped road-scene nets: ESPNetLite (encoder only) and ESPNet (with its decoder).

Self-contained (torch only), so segexport can load them as custom model files
from anywhere: ``segexport tools/espnet_lite.py:ESPNetLite --num-classes 11`` or
``segexport tools/espnet_lite.py:ESPNet --model-args classes=11 p=2 q=8``.
``ESPNet`` follows the published ESPNet (Mehta et al., 2018, MIT licence) layer for
layer: the encoder (DownSamplerB, DilatedParllelResidualBlockB with five dilated
branches, input-image reinforcement by average pooling) and the light decoder whose
upsampling layers, the classifier included, are 2x2 stride-2 ConvTranspose with
BatchNorm + PReLU after some of them: the structures the INT8 portability checks need.
Trained by tools.camvid_espnet; why they exist is said there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BR(nn.Module):
    """BatchNorm + PReLU, ESPNet's post-Concat normalisation (not foldable into a conv)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch, eps=1e-3)
        self.act = nn.PReLU(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class CBR(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=False)
        self.br = BR(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.br(self.conv(x))


class ESPBlock(nn.Module):
    """Reduce, four parallel dilated 3x3 (d = 1, 2, 4, 8), hierarchical sums, Concat, BR."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        n = cout // 4
        n1 = cout - 3 * n
        self.reduce = nn.Conv2d(cin, n, 3 if stride == 2 else 1, stride,
                                1 if stride == 2 else 0, bias=False)
        self.d1 = nn.Conv2d(n, n1, 3, 1, 1, bias=False)
        self.d2 = nn.Conv2d(n, n, 3, 1, 2, dilation=2, bias=False)
        self.d4 = nn.Conv2d(n, n, 3, 1, 4, dilation=4, bias=False)
        self.d8 = nn.Conv2d(n, n, 3, 1, 8, dilation=8, bias=False)
        self.residual = stride == 1 and cin == cout
        self.br = BR(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.reduce(x)
        a, b, c, d = self.d1(r), self.d2(r), self.d4(r), self.d8(r)
        b2 = b
        c2 = b2 + c
        d2 = c2 + d
        out = torch.cat([a, b2, c2, d2], 1)
        if self.residual:
            out = out + x
        return self.br(out)


class ESPNetLite(nn.Module):
    """ESPNet-C shaped (stride 8): image pyramid concatenated into the features."""

    stride = 8

    def __init__(self, num_classes: int = 11, width: int = 16) -> None:
        super().__init__()
        w = width
        self.level1 = CBR(3, w, 3, 2)
        self.br1 = BR(w + 3)
        self.level2 = ESPBlock(w + 3, 4 * w, 2)
        self.level2_1 = ESPBlock(4 * w, 4 * w)
        self.br2 = BR(8 * w + 3)
        self.level3 = ESPBlock(8 * w + 3, 8 * w, 2)
        self.level3_1 = ESPBlock(8 * w, 8 * w)
        self.br3 = BR(16 * w)
        self.classifier = nn.Conv2d(16 * w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        half = F.avg_pool2d(x, 3, 2, 1)
        quarter = F.avg_pool2d(half, 3, 2, 1)
        o1 = self.br1(torch.cat([self.level1(x), half], 1))
        o2a = self.level2(o1)
        o2 = self.br2(torch.cat([self.level2_1(o2a), o2a, quarter], 1))
        o3a = self.level3(o2)
        o3 = self.br3(torch.cat([o3a, self.level3_1(o3a)], 1))
        return F.interpolate(self.classifier(o3), size=size, mode="bilinear",
                             align_corners=False)


# --- ESPNet (published layout): module names as in the authors' Model.py -------------------


class _CBR(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _conv(cin: int, cout: int, k: int, stride: int = 1, d: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, ((k - 1) // 2) * d, dilation=d, bias=False)


class _DilatedBlock(nn.Module):
    """Reduce, five dilated 3x3 (d = 1, 2, 4, 8, 16), hierarchical sums, Concat, BN+PReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, add: bool = True) -> None:
        super().__init__()
        n = cout // 5
        self.c1 = _conv(cin, n, 3 if stride == 2 else 1, stride)
        self.d1 = _conv(n, cout - 4 * n, 3)
        self.d2, self.d4, self.d8, self.d16 = (_conv(n, n, 3, 1, d) for d in (2, 4, 8, 16))
        self.bn = BR(cout)
        self.add = add and stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.c1(x)
        add1 = self.d2(r)
        add2 = add1 + self.d4(r)
        add3 = add2 + self.d8(r)
        add4 = add3 + self.d16(r)
        out = torch.cat([self.d1(r), add1, add2, add3, add4], 1)
        return self.bn(x + out if self.add else out)


class ESPNet(nn.Module):
    """The published ESPNet (constructor ``(classes, p, q)``), decoder included."""

    stride = 8

    def __init__(self, classes: int = 20, p: int = 2, q: int = 3) -> None:
        super().__init__()
        self.level1 = _CBR(3, 16, 3, 2)
        self.b1 = BR(16 + 3)
        self.level2_0 = _DilatedBlock(16 + 3, 64, stride=2)
        self.level2 = nn.ModuleList(_DilatedBlock(64, 64) for _ in range(p))
        self.b2 = BR(128 + 3)
        self.level3_0 = _DilatedBlock(128 + 3, 128, stride=2)
        self.level3 = nn.ModuleList(_DilatedBlock(128, 128) for _ in range(q))
        self.b3 = BR(256)
        self.enc_classifier = _conv(256, classes, 1)
        self.level3_C = _conv(128 + 3, classes, 1)
        self.br = nn.BatchNorm2d(classes, eps=1e-3)
        self.conv = _CBR(19 + classes, classes, 3)
        self.up_l3 = nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False)
        self.combine_l2_l3 = nn.Sequential(BR(2 * classes),
                                           _DilatedBlock(2 * classes, classes, add=False))
        self.up_l2 = nn.Sequential(nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False),
                                   BR(classes))
        self.classifier = nn.ConvTranspose2d(classes, classes, 2, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inp1 = F.avg_pool2d(x, 3, 2, 1)
        inp2 = F.avg_pool2d(inp1, 3, 2, 1)
        o0 = self.b1(torch.cat([self.level1(x), inp1], 1))
        o1_0 = self.level2_0(o0)
        o1 = o1_0
        for layer in self.level2:
            o1 = layer(o1)
        o1_cat = self.b2(torch.cat([o1, o1_0, inp2], 1))
        o2_0 = self.level3_0(o1_cat)
        o2 = o2_0
        for layer in self.level3:
            o2 = layer(o2)
        o2_cat = self.b3(torch.cat([o2_0, o2], 1))
        o2_c = self.up_l3(self.br(self.enc_classifier(o2_cat)))
        comb = self.up_l2(self.combine_l2_l3(torch.cat([self.level3_C(o1_cat), o2_c], 1)))
        return self.classifier(self.conv(torch.cat([comb, o0], 1)))
