"""segedge's own demo model: a tiny road-scene segmenter trained on generated scenes.

Shipped (a few hundred kB) so that `segexport demo` and `segrun` show real
masks on a fresh offline machine.  Trained by `python -m
tools.train_demo`; the weights file records how.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from segedge.runtime.errors import CheckpointError


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


def weights_path() -> Path:
    return Path(str(resources.files("segedge.export.models") / "checkpoints" / "demo.pt"))


def load_demo(num_classes: int = 7, pretrained: bool = True) -> DemoNet:
    model = DemoNet(num_classes)
    if pretrained:
        path = weights_path()
        if not path.is_file():
            raise CheckpointError(
                f"demo weights: expected {path} (train them with "
                "`python -m tools.train_demo`), got no file"
            )
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if num_classes != len(blob["classes"]):
            raise CheckpointError(
                f"demo weights: expected --num-classes {len(blob['classes'])}, got {num_classes}"
            )
        model.load_state_dict(blob["state_dict"])
    return model
