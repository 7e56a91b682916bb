"""Export configuration: one frozen dataclass that the CLI fills and the exporter reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segedge.runtime.metadata import ColorOrder, InputFormat

Emit = Literal["logits", "labels", "both"]
WeightsMode = Literal["auto", "random", "pretrained"]


@dataclass(frozen=True)
class ExportConfig:
    model: str  # zoo name or path/to/file.py:ClassOrFactory
    output: Path | None = None  # default ./<model>.onnx
    weights: WeightsMode = "auto"  # auto: pretrained when available offline, else random
    checkpoint: Path | None = None
    classes: tuple[str, ...] | None = None
    num_classes: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    model_color: ColorOrder | None = None  # colour order the network was trained on
    imgsz: tuple[int, int] | None = None
    dynamic: bool = False
    batch: int = 1
    opset: int = 18
    input_format: InputFormat = "uint8"
    input_color: ColorOrder = "BGR"  # what the camera gives (OpenCV: BGR)
    emit: Emit = "labels"
    confidence: bool = False
    simplify: bool = True
    verify: bool = True
    verify_images: str | None = None
    verify_count: int = 4
    min_agreement: float = 99.9  # percent, FP32 gate
    exporter: Literal["auto", "dynamo", "torchscript"] = "auto"
    quiet: bool = False

    @property
    def output_names(self) -> list[str]:
        names = {"logits": ["logits"], "labels": ["labels"], "both": ["logits", "labels"]}
        return names[self.emit] + (["confidence"] if self.confidence else [])
