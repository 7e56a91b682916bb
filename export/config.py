"""Export configuration: frozen dataclasses the CLI fills and the pipeline reads.

Each one refuses impossible values on construction (one-line InputError naming
the flag), so a config that exists is one the pipeline can run; what depends on
the machine (TensorRT present, output folder writable) or on the resolved model
(stride, the task's limits) is checked by the pipeline and the task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from segedge.export.precision import modes
from segedge.export.precision.modes.int8 import (
    CALIB_METHODS,
    INT8_TARGETS,
    CalibMethod,
    Int8Target,
)
from segedge.export.tasks.base import task_names
from segedge.runtime.contract import MAX_SIDE
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorOrder,
    InputFormat,
    Interpolation,
)
from segedge.runtime.normalization import Normalization, NormUnits, normalization

__all__ = ["CalibMethod", "Emit", "EngineOptions", "ExportConfig", "Exporter", "InputFormat",
           "InstanceOptions", "Int8Target", "PrecisionOptions", "VerifyOptions", "WeightsMode"]

Emit = Literal["logits", "labels", "both"]
WeightsMode = Literal["auto", "random", "pretrained"]
Exporter = Literal["auto", "dynamo", "torchscript"]

FP32_MIN_AGREEMENT = 99.9  # percent argmax agreement of the FP32 ONNX with PyTorch
FP16_MIN_AGREEMENT = 99.5  # percent argmax agreement of the FP16 ONNX with the FP32 one
MIN_MEAN_MASK_IOU = 0.99  # instance parity: mean mask IoU of matched detections
DEFAULT_MAX_DETECTIONS = 100
# The opsets an export writes as asked.  Below 11 Resize has no half_pixel mode (the
# baked bilinear upsampling changes and parity fails); where torch's dynamo exporter
# cannot write the opset asked (it writes 18 instead) the TorchScript exporter does
# (export/onnx/convert.py); 23 is torch's ONNX_MAX_OPSET.  Tests pin both ends.
MIN_OPSET, MAX_OPSET = 11, 23
ModelArgs = tuple[tuple[str, Any], ...]  # constructor keyword arguments (--model-args)


def _choice(flag: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise InputError(flag, "one of " + ", ".join(map(str, choices)), repr(value))


def _gate(flag: str, value: float) -> None:
    """A gate in percent; above 100 is allowed and nothing passes it (forces a refusal)."""
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise InputError(flag, "a percentage >= 0", value)


def _positive(flag: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or value < 1):
        raise InputError(flag, "a positive integer", value)


@dataclass(frozen=True)
class VerifyOptions:
    """The parity check against the untouched PyTorch model (FP32 gate)."""

    enabled: bool = True  # --no-verify turns it off
    images: str | None = None  # folder, image, glob or video; else generated scenes
    count: int = 4
    min_agreement: float = FP32_MIN_AGREEMENT  # --min-agreement: the FP32 gate, nothing else
    labels: Path | None = None  # label PNGs named like `images`: PyTorch and ONNX mIoU
    # On unless --no-check-bf16: gate OpenVINO's reduced precisions (bf16; f16 where the CPU
    # has AMX-FP16) against FP32, so `segrun --backend auto` may use the fastest verified one.
    bf16: bool = True

    def __post_init__(self) -> None:
        _positive("--verify-count", self.count)
        _gate("--min-agreement", self.min_agreement)
        if self.labels is not None and not self.images:
            raise InputError("--verify-labels", "--verify-images DIR as well", "labels only")
        if self.labels is not None and not self.enabled:
            raise InputError("--verify-labels", "verification (it scores the verification "
                             "frames)", "--no-verify")


@dataclass(frozen=True)
class PrecisionOptions:
    """The precision mode (a name in segedge.export.precision.modes) and what it takes."""

    mode: str = "fp32"
    fp16_min_agreement: float = FP16_MIN_AGREEMENT  # FP16 gate against FP32
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
    int8_time_limit: float = 720.0  # seconds for INT8's long steps (calibration, searches)
    int8_keep_closest: bool = False  # budget missed: keep the closest as <out>.missed-budget.onnx
    # a CPU --int8-target where INT8 measured slower than FP32/bf16: True stops before the
    # search (segexport's default); False is the user's --int8-even-if-slower, refused where
    # no speed stop applies (not --int8, or a TensorRT target); None (the Python API's
    # default) warns and goes on
    int8_stop_if_slower: bool | None = None

    def __post_init__(self) -> None:
        self.spec.validate(self)
        _choice("--int8-target", self.int8_target, INT8_TARGETS)
        _choice("--calib-method", self.calib_method, CALIB_METHODS)
        _positive("--calib-count", self.calib_count)
        _positive("--eval-count", self.eval_count)
        _gate("fp16_min_agreement", self.fp16_min_agreement)
        if self.int8_time_limit <= 0:
            raise InputError("--int8-time-limit", "seconds > 0", self.int8_time_limit)
        if self.eval_labels is not None and not self.eval_images:
            raise InputError("--eval-labels", "--eval-images DIR as well", "labels only")
        if self.max_miou_drop is not None:
            if self.eval_labels is None:
                raise InputError("--max-miou-drop", "--eval-images DIR --eval-labels DIR",
                                 "no labels to measure mIoU")
            if self.max_miou_drop < 0:
                raise InputError("--max-miou-drop", "mIoU points >= 0", self.max_miou_drop)
        if self.int8_min_agreement is not None and not 0 <= self.int8_min_agreement <= 100:
            raise InputError("--int8-min-agreement", "a percentage 0..100",
                             self.int8_min_agreement)

    @property
    def spec(self) -> modes.PrecisionMode:
        """The mode object (raises a one-line InputError for an unknown name)."""
        return modes.get(self.mode)


@dataclass(frozen=True)
class InstanceOptions:
    """Instance (Mask R-CNN) exports: static detection count and thresholds."""

    max_detections: int = DEFAULT_MAX_DETECTIONS
    box_score_threshold: float | None = None  # baked into the graph; None keeps the model's
    mask_threshold: float = 0.5  # masks leave the graph as 0/1 uint8
    verify_score: float = 0.5  # parity compares detections at or above this score
    min_mean_mask_iou: float = MIN_MEAN_MASK_IOU

    def __post_init__(self) -> None:
        if not isinstance(self.max_detections, int) or self.max_detections < 1:
            raise InputError("--max-detections", "a positive integer", self.max_detections)
        for flag, value in (("--box-score-threshold", self.box_score_threshold),
                            ("--mask-threshold", self.mask_threshold),
                            ("verify score", self.verify_score),
                            ("min mean mask IoU", self.min_mean_mask_iou)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(flag, "a number between 0 and 1", value)


@dataclass(frozen=True)
class EngineOptions:
    """The TensorRT plan beside the ONNX."""

    build: bool | None = None  # None: when the precision mode implies one and TensorRT exists
    workspace_mib: int | None = None
    dla_core: int | None = None
    timing_cache: Path | None = None
    # optimization profiles of a dynamic plan (segrun runs one execution slot per profile);
    # None: the runtime's throughput slots (2).  1 builds faster and smaller, runs one slot.
    profiles: int | None = None

    def __post_init__(self) -> None:
        _positive("--workspace", self.workspace_mib)
        _positive("--engine-profiles", self.profiles)
        if self.dla_core is not None and (not isinstance(self.dla_core, int) or
                                          self.dla_core < 0):
            raise InputError("--dla-core", "a DLA core index >= 0", self.dla_core)


@dataclass(frozen=True)
class ExportConfig:
    model: str  # zoo name or path/to/file.py:ClassOrFactory
    output: Path | None = None  # default ./<model><precision suffix>.onnx
    task: str | None = None  # None: the zoo entry's task, "semantic" for user models
    weights: WeightsMode = "auto"  # auto: pretrained when available offline, else random
    checkpoint: Path | None = None
    classes: tuple[str, ...] | None = None
    num_classes: int | None = None
    mean: tuple[float, float, float] | None = None  # in `norm_units` (see normalization)
    std: tuple[float, float, float] | None = None
    norm_units: NormUnits | None = None  # None: 0..1, or pixel when a mean value exceeds 1
    scale: float = 1.0  # K in y = (x - M) / S * K
    model_args: ModelArgs = ()  # keyword arguments for a user model's constructor
    model_color: ColorOrder | None = None  # colour order the network was trained on
    imgsz: tuple[int, int] | None = None
    dynamic: bool = False
    batch: int = 1
    opset: int = 18
    input_format: InputFormat = "uint8"
    input_color: ColorOrder = "BGR"  # what the camera gives (OpenCV: BGR)
    # the training pipeline's frame resize, recorded for segrun/segeval (runtime/resize.py)
    interpolation: Interpolation = "torch-bilinear-aa"
    emit: Emit = "labels"
    confidence: bool = False
    simplify: bool = True
    exporter: Exporter = "auto"
    quiet: bool = False
    verify: VerifyOptions = field(default_factory=VerifyOptions)
    precision: PrecisionOptions = field(default_factory=PrecisionOptions)
    instance: InstanceOptions = field(default_factory=InstanceOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise InputError("MODEL", "a zoo name or path/to/file.py:Class", repr(self.model))
        if self.output is not None and Path(self.output).suffix.lower() != ".onnx":
            raise InputError("--output", "a path ending in .onnx", str(self.output))
        if self.task is not None:
            _choice("--task", self.task, task_names())
        _choice("--weights", self.weights, get_args(WeightsMode))
        _choice("--input-format", self.input_format, get_args(InputFormat))
        _choice("--input-color", self.input_color, get_args(ColorOrder))
        _choice("--interpolation", self.interpolation, get_args(Interpolation))
        _choice("--emit", self.emit, get_args(Emit))
        _choice("--exporter", self.exporter, get_args(Exporter))
        if self.imgsz is not None and (len(self.imgsz) != 2 or min(self.imgsz) < 1):
            raise InputError("--imgsz", "two positive sizes (H W)",
                             "x".join(map(str, self.imgsz)))
        if self.imgsz is not None and max(self.imgsz) > MAX_SIDE:
            raise InputError("--imgsz", f"sides of at most {MAX_SIDE} pixels (H W)",
                             "x".join(map(str, self.imgsz)))
        _positive("--batch", self.batch)
        if not isinstance(self.opset, int) or not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise InputError("--opset", f"{MIN_OPSET}..{MAX_OPSET} (what the ONNX exporters "
                             "here write as asked)", self.opset)
        self.normalization()  # refuses std <= 0, non-finite values, mixed units
        if (self.norm_units is not None or self.scale != 1.0) and self.mean is None \
                and self.std is None:
            flag = "--norm-units" if self.norm_units is not None else "--scale"
            raise InputError(flag, "--mean and --std to apply to", "neither")
        _check_model_args(self.model_args, self.model)

    def normalization(self, default_mean: tuple[float, float, float] = IMAGENET_MEAN,
                      default_std: tuple[float, float, float] = IMAGENET_STD
                      ) -> Normalization:
        """--mean/--std/--norm-units/--scale by the one rule, over the model's defaults."""
        return normalization(self.mean, self.std, self.norm_units, self.scale, default_mean,
                             default_std)


def _check_model_args(args: ModelArgs, model: str) -> None:
    if not args:
        return
    from segedge.export.models.sources import model_args_refusal  # light: no torch

    refusal = model_args_refusal(model)  # file.py:Class and smp:Class take them
    if refusal is not None:
        raise InputError("--model-args", refusal, model)
    names = [pair[0] if isinstance(pair, tuple) and len(pair) == 2 else pair for pair in args]
    bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise InputError("--model-args", "key=value pairs with Python names", bad[0])
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError("--model-args", "each name once", f"{dup[0]} twice")
