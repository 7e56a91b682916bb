"""ESPNetLite: an ESPNet-C shaped road-scene net (PReLU, dilated branches, Concats, BN).

Self-contained (torch only), so segexport can load it as a custom model file
from anywhere: ``segexport tools/espnet_lite.py:ESPNetLite --num-classes 11``.
Trained by tools.camvid_espnet; why it exists is said there.
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
