"""Bake deployment processing into the graph: raw camera bytes in, labels out.

With processing inside the ONNX, every runtime (ONNX Runtime, TensorRT,
DeepStream) feeds the same bytes a camera gives and reads a label map, and
nobody can get the normalisation or colour order wrong downstream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from segedge.export.verify.torch_ref import forward_logits
from segedge.runtime.metadata import ColorOrder, InputFormat

OUTPUT_NAMES = ("logits", "labels", "confidence")  # what forward returns, in order


@dataclass(frozen=True)
class Baking:
    input_format: InputFormat  # "uint8": NHWC bytes in `input_color`; "float": normalised NCHW
    input_color: ColorOrder  # colour order of the bytes fed to the graph (uint8 only)
    model_color: ColorOrder  # colour order the network was trained on
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    upsample: bool = False  # the network predicts below input resolution


class DeployWrapper(nn.Module):
    """Network + baked pre/post-processing; outputs (logits, labels, confidence)."""

    def __init__(self, model: nn.Module, baking: Baking) -> None:
        super().__init__()
        self.model = model
        self.baking = baking
        mean = torch.tensor(baking.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        inv = 1.0 / (torch.tensor(baking.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("mean255", mean, persistent=False)
        self.register_buffer("inv_std255", inv, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.baking.input_format == "uint8":
            # Cast before any layout op: TensorRT has no uint8 Transpose.
            x = x.to(torch.float32).permute(0, 3, 1, 2)
            if self.baking.input_color != self.baking.model_color:
                x = x.flip(1)
            x = (x - self.mean255) * self.inv_std255  # type: ignore[operator]
        # the dry run's upsampling decision, as a constant: no shape test in the graph
        logits = forward_logits(self.model, x, upsample=self.baking.upsample)
        labels = logits.argmax(1).to(torch.uint8)
        # max softmax probability without materialising softmax: 1 / sum(exp(l - max)).
        top = logits.amax(1, keepdim=True)
        confidence = 1.0 / torch.exp(logits - top).sum(1)
        return logits, labels, confidence
