"""segedge's own demo model: a tiny road-scene segmenter trained on generated scenes.

Shipped (a few hundred kB) so that `segexport demo` and `segrun` show real
masks on a fresh offline machine.  Trained by `python -m tools.train_demo`
(run from the repository root); the weights file records how, and the
catalog's `DEMO` weights entry says where it lives and loads it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, padding=dilation, dilation=dilation, groups=cin, bias=False),
        nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class DemoNet(nn.Module):
    """Depthwise-separable encoder (stride 16) with one skip at 1/4: fast on a CPU."""

    stride = 16

    def __init__(self, num_classes: int = 7, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        self.down4 = _conv(w, 2 * w, stride=2)
        self.down8 = nn.Sequential(_conv(2 * w, 4 * w, stride=2), _conv(4 * w, 4 * w))
        self.down16 = nn.Sequential(_conv(4 * w, 6 * w, stride=2), _conv(6 * w, 6 * w, dilation=2),
                                    _conv(6 * w, 6 * w, dilation=4))
        self.reduce = nn.Sequential(nn.Conv2d(6 * w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w),
                                    nn.ReLU(inplace=True))
        self.fuse = _conv(4 * w, 2 * w)
        self.classifier = nn.Conv2d(2 * w, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        f4 = self.down4(self.stem(x))
        deep = self.reduce(self.down16(self.down8(f4)))
        deep = F.interpolate(deep, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        out = self.classifier(self.fuse(torch.cat([f4, deep], 1)))
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)
