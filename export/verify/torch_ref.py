"""The one torch-logits adapter: forward -> pick the logits -> input resolution -> (argmax).

Every place that asks PyTorch for a label map (the export's dry run and deploy
wrapper, the parity gate, segeval's PyTorch predictor, the PyTorch benchmark)
goes through here, so "what PyTorch says" means the same thing everywhere:
torchvision-style dict outputs give their ``out`` entry, heads coarser than the
input are upsampled bilinearly (align_corners=False, what the export bakes in),
and labels are the per-pixel argmax.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def pick_logits(out: Any) -> Any:
    """The logits in a model's raw output: a dict's ``out`` entry (torchvision), else itself.

    Returns whatever is there (None for a dict without ``out``); callers that need a
    tensor check it (the export's dry run turns a wrong one into a one-line error).
    """
    return out.get("out") if isinstance(out, dict) else out


def at_input_size(logits: torch.Tensor, x: torch.Tensor, upsample: bool | None = None
                  ) -> torch.Tensor:
    """Logits at the input's height and width.

    ``upsample=None`` decides by shape (eager use); the export passes the decision
    of its dry run as a constant, so the traced graph has no shape comparison.
    """
    if upsample is None:
        upsample = tuple(logits.shape[-2:]) != tuple(x.shape[-2:])
    if upsample:
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits


def forward_logits(model: nn.Module, x: torch.Tensor, upsample: bool | None = None
                   ) -> torch.Tensor:
    """NxCxHxW logits at the input size (no grad handling: callers choose the mode)."""
    return at_input_size(pick_logits(model(x)), x, upsample)


def forward_labels(model: nn.Module, x: torch.Tensor, upsample: bool | None = None
                   ) -> torch.Tensor:
    """NxHxW uint8 label maps at the input size."""
    return forward_logits(model, x, upsample).argmax(1).to(torch.uint8)
