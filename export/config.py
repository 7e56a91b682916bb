"""Export configuration: one frozen dataclass that the CLI fills and the exporter reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segedge.runtime.metadata import ColorOrder, InputFormat, Precision

Emit = Literal["logits", "labels", "both"]
WeightsMode = Literal["auto", "random", "pretrained"]
Int8Target = Literal["tensorrt", "cpu"]
CalibMethod = Literal["minmax", "entropy", "percentile"]


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
    # Instance segmentation (Mask R-CNN): static detection count for TensorRT.
    max_detections: int = 100
    mask_threshold: float = 0.5
    box_score_threshold: float | None = None  # baked into the graph; None keeps the model's
    # Lower precision (issue 3): transforms of the verified FP32 ONNX, checked against it.
    precision: Precision = "fp32"
    fp16_min_agreement: float = 99.5  # percent, FP16 gate against FP32
    int8_target: Int8Target = "tensorrt"  # Q/DQ flavour: TensorRT S8S8 or ORT-CPU U8S8
    calib: str | None = None  # folder, glob or video of calibration frames
    calib_count: int = 300
    calib_method: CalibMethod = "percentile"  # best agreement and mIoU measured on CamVid
    calib_cache: Path | None = None  # default <output>.calib.json
    eval_images: str | None = None  # held-out frames for the accuracy report
    eval_labels: Path | None = None  # label PNGs named like eval_images: adds mIoU
    eval_count: int | None = None  # at most this many eval frames (spread); None: all
    ignore_index: int | None = 255  # label id left out of mIoU (ids >= classes always are)
    max_miou_drop: float | None = None  # INT8 budget in mIoU points (needs labels)
    int8_min_agreement: float | None = None  # INT8 budget in percent argmax agreement
    # TensorRT engine: None builds one for fp16/int8 when TensorRT and a GPU are present.
    engine: bool | None = None
    workspace_mib: int | None = None
    dla_core: int | None = None
    timing_cache: Path | None = None

    @property
    def output_names(self) -> list[str]:
        names = {"logits": ["logits"], "labels": ["labels"], "both": ["logits", "labels"]}
        return names[self.emit] + (["confidence"] if self.confidence else [])
