"""Tiny PyTorch models with known answers, for segeval and the export gates (user-model files).

``RedNet`` says "class 1" exactly where the first input channel is above its
normalised zero, so colour order and mean/std decide its answer on red/blue
frames; ``NanNet`` and ``InfNet`` stand for broken checkpoints and forwards.
"""

from __future__ import annotations

import torch
from torch import nn


class RedNet(nn.Module):
    """Logits (0, x[:, 0]): class 1 where the first channel is positive after normalisation."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = x[:, :1] * self.scale
        return torch.cat([torch.zeros_like(first), first], 1)


class NanNet(RedNet):
    """A forward that returns NaN everywhere (as a broken op or checkpoint would)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * torch.tensor(float("nan"))


class InfNet(RedNet):
    """Infinite logits on part of the frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return torch.where(out > 0.5, torch.tensor(float("inf")), out)


class ArgNet(RedNet):
    """A constructor as published repositories write them: (classes, flip), no num_classes."""

    def __init__(self, classes: int, flip: bool) -> None:
        super().__init__(classes)
        self.flip = flip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out.flip(1) if self.flip else out


class WithVoid(nn.Module):
    """A published CamVid model's layout: 11 classes plus a void output (class 11).

    The CamVid-trained DemoNet (its state_dict under ``net.``) plus a void logit
    that wins where the network is least sure (top-1 minus top-2 logit below
    `margin`), as a network trained with a void class predicts void on some
    valid pixels.  Every other pixel keeps the 11-class network's label.
    """

    def __init__(self, num_classes: int = 12, margin: float = 0.5) -> None:
        super().__init__()
        from segedge.export.models.demo import DemoNet

        self.net = DemoNet(num_classes - 1)
        self.margin = margin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        top = logits.topk(2, 1).values
        unsure = top[:, :1] - top[:, 1:] < self.margin
        return torch.cat([logits, torch.where(unsure, top[:, :1] + 1, top[:, 1:] - 1)], 1)
