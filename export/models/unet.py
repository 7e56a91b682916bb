"""U-Net (Ronneberger et al., 2015) with padded convolutions and batch norm.

Padded 3x3 convs keep every level at exactly 1/2**i of the input, so the skips concatenate
without cropping; the price is that H and W must be multiples of ``2**depth``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from segedge.export.models.segnet import check_multiple

__all__ = ["DoubleConv", "UNet", "unet"]


class DoubleConv(nn.Sequential):
    """(3x3 conv, BN, ReLU) x 2, padded: the U-Net building block."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Contracting path of ``depth`` 2x2 max pools, expanding path of 2x2 transposed convs.

    Level i has ``base_width * 2**i`` channels (i = 0..depth). Input H and W must be multiples
    of :attr:`stride` = ``2**depth``; eager calls raise ValueError otherwise.
    """

    stride: int

    def __init__(
        self, num_classes: int, in_channels: int = 3, base_width: int = 64, depth: int = 4
    ) -> None:
        super().__init__()
        if num_classes < 1 or in_channels < 1 or base_width < 1 or depth < 1:
            raise ValueError(
                "UNet needs num_classes, in_channels, base_width, depth >= 1; got "
                f"{num_classes}, {in_channels}, {base_width}, {depth}"
            )
        self.num_classes = num_classes
        self.depth = depth
        self.stride = 2**depth
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([DoubleConv(in_channels, widths[0])])
        self.down.extend(DoubleConv(widths[i - 1], widths[i]) for i in range(1, depth + 1))
        self.pool = nn.MaxPool2d(2, 2)
        # up[j] / dec[j] go from level depth-j to level depth-j-1.
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in range(depth, 0, -1)
        )
        self.dec = nn.ModuleList(
            DoubleConv(2 * widths[i - 1], widths[i - 1]) for i in range(depth, 0, -1)
        )
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        check_multiple(x, self.stride, "UNet")
        skips: list[Tensor] = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck output is x itself
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.classifier(x)


def unet(num_classes: int, base_width: int = 64) -> nn.Module:
    """U-Net of depth 4 (stride 16); 31.0M params at base_width 64."""
    return UNet(num_classes, base_width=base_width)
