"""INT8 as an ONNX transform: static post-training quantization to a Q/DQ graph.

Why ONNX Runtime's quantization tools and not NVIDIA ModelOpt's ONNX PTQ:
they ship with the runtime segedge already depends on (ModelOpt is a large
extra install, offline boxes rarely have it), run and are checked on a CPU,
and give per-node control (``nodes_to_exclude`` / ``nodes_to_quantize``),
which the per-layer sensitivity search needs, plus MinMax, Entropy and
Percentile calibration with reusable ranges.  Configured as below they emit
the explicit-quantization form TensorRT 10/11 consumes.

The Q/DQ flavour depends on the target (measured here):

* ``tensorrt`` (default): S8S8, symmetric activations and per-channel
  symmetric weights, Q/DQ only on the inputs of compute layers (NVIDIA's
  recommended placement; TensorRT fuses the rest).
* ``cpu``: U8S8 (asymmetric uint8 activations) with outputs quantized too, so
  ONNX Runtime's CPU provider fuses QLinearConv; 1.3-2.8x faster there than
  S8S8, but not what TensorRT wants.  Only compute layers (Conv, Gemm,
  MatMul) are quantized, never Concat / PReLU / Add / BatchNormalization.

Portability (the same artifact on ONNX Runtime, OpenVINO and TensorRT):
ONNX Runtime's CPU provider *emulates* Q/DQ (dequantize, FP32 op, quantize),
so any placement "works" there; OpenVINO and TensorRT fuse Q/DQ into real
INT8 kernels and only accept the forms those kernels have.  Measured on an
ESPNet-shaped CamVid model (tools/espnet_lite.py, PReLU + Concat + BN +
dilated branches): with ONNX Runtime's default "quantize every op" placement
in U8 asymmetric form, OpenVINO 2026.4 *crashes* compiling the graph (an
asymmetric uint8 Q/DQ on a Concat output feeding BatchNorm + PReLU; symmetric
or Conv-only placements compile), and the same placement also quantized the
input normalisation constant 1/(std x 255) and the BatchNorm statistics to
INT8.  So both flavours put Q/DQ only where a fusing runtime has an INT8
kernel: on compute-layer inputs (plus pools and residual Adds for TensorRT,
per NVIDIA's placement guide), weights per-channel symmetric, never on the
uint8 input path (the normalisation nodes are excluded) nor on the head.
The gate then checks the artifact on both runtimes (precision/runtimes.py).
With these forms the trained ESPNet-shaped model agrees with FP32 on 98.21 %
(ONNX Runtime) and 98.20 % (OpenVINO f32) of CamVid val pixels (TensorRT
flavour), 99.44 / 99.39 % (cpu flavour).

Weight scales per *output* channel, always said explicitly (graph.weight_axes):
ConvTranspose weights are [Cin, Cout/group, kH, kW], so a per-channel scale on
axis 0 is per input channel; ONNX Runtime emulates any axis exactly, a fused
INT8 deconvolution applies scales per output channel.  ONNX Runtime's own
default is axis 1 for ConvTranspose, right for group 1 but not for a grouped
one (no single axis is per output channel there: per-tensor).  The graph lint
(graph.qdq_axis_problems) refuses any other axis on Conv/ConvTranspose/Gemm/
MatMul weights.  Measured with OpenVINO 2026.4: an axis-0 ConvTranspose is not
miscomputed there, it silently runs as an FP32 deconvolution (not fused); the
axis-1 form runs as an INT8 kernel.  On the published ESPNet layout rebuilt and
trained on CamVid (tools/espnet_lite.py:ESPNet, three 2x2 stride-2 ConvTranspose,
the classifier one of them) every placement that compiles agrees alike on both
runtimes (TensorRT flavour 98.14 / 98.15 %, cpu 99.34 / 99.35 %, minmax, 64
frames; ONNX Runtime's quantize_static S8S8 defaults 98.10 / 97.99 %), and the
old cpu flavour / U8S8 defaults crash OpenVINO: the 98 % vs 73 % split of the
published checkpoint was not reproduced on these weights.

OpenVINO 2026.4 miscomputes one S8S8 form: a Concat output quantized with symmetric
int8 Q/DQ and read by an INT8 Conv (15 % mean relative error against ONNX Runtime's
exact emulation on a synthetic Concat -> Conv; uint8 asymmetric there is exact).  On
the CamVid ESPNet (the decoder's Concat -> 3x3 conv) that one layer took OpenVINO's
agreement with FP32 from 98.9 to 97.3 % while ONNX Runtime stayed at 98.8 %, so the
``tensorrt`` flavour keeps compute layers that read a Concat in float
(graph.concat_fed_nodes); TensorRT loses one fused layer per such Concat.

The output head and, for ``cpu``, the classifier stay FP32: quantizing the
logits would turn argmax near-ties into flipped labels for no speed gain.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    create_calibrator,
    quant_pre_process,
    quantize_static,
)
from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

from segedge.export.onnx.portable import exclusive_pool_padding
from segedge.export.precision import histograms
from segedge.export.precision.graph import (
    COMPUTE_OPS,
    classifier_nodes,
    compute_nodes,
    concat_fed_nodes,
    ensure_node_names,
    head_nodes,
    input_nodes,
    qdq_axis_problems,
    weight_axes,
)
from segedge.export.precision.modes.int8 import CalibMethod, Int8Target
from segedge.runtime.errors import ExportError

# Keys: precision.modes.int8.CALIB_METHODS / INT8_TARGETS (the CLI's choices; a test holds
# them equal).
METHODS: dict[str, CalibrationMethod] = {
    "minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
TRT_OPS = (*sorted(COMPUTE_OPS), "MaxPool", "AveragePool", "GlobalAveragePool", "Add")
CHUNK = 8  # minmax: at most this many frames per collect pass
# activations one minmax collect pass may hold (ORT keeps every output of a pass; minmax
# outputs are reduced in the graph, so a pass is small).  The histogram methods never hold
# more than one frame (1024x512 real-time nets: 100-400 MB; ddrnet23_slim 292 MB): they
# stream through precision/histograms.py
ACTIVATION_BUDGET = 1 << 29  # 512 MiB: ddrnet23_slim 1024x512 peaked 3.0 GB at 1 GiB


@dataclass(frozen=True)
class Flavour:
    activation: QuantType
    symmetric_activations: bool
    op_types: tuple[str, ...] | None  # None: everything ONNX Runtime can quantize
    inputs_only: bool  # Q/DQ on layer inputs only (TensorRT placement)
    keep_classifier: bool  # classifier stays FP32


FLAVOURS: dict[str, Flavour] = {
    "tensorrt": Flavour(QuantType.QInt8, True, TRT_OPS, True, False),
    "cpu": Flavour(QuantType.QUInt8, False, tuple(sorted(COMPUTE_OPS)), False, True),
}


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """quant_pre_process drops temp files in the working directory: keep them in ours."""
    old = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice (root logger), prints progress to stdout, and its
    sessions print C++ warnings to stderr ("Removing initializer ... not used by any node",
    about 70 on one published model): all silenced while quantizing."""
    import warnings

    import onnxruntime

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    onnxruntime.set_default_logger_severity(3)  # errors only
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        onnxruntime.set_default_logger_severity(2)  # ORT's default (warnings)
        root.setLevel(level)


def preprocess(fp32: Path, workdir: Path) -> Path:
    """quant_pre_process (ORT optimisation + shape inference) with unique node names and
    padded average pooling rewritten for OpenVINO (onnx/portable.exclusive_pool_padding)."""
    src, out = fp32.resolve(), (workdir / "pre.onnx").resolve()  # before the chdir
    try:
        with _inside(workdir), _quiet():
            quant_pre_process(str(src), str(out), skip_symbolic_shape=True)
    except Exception as err:  # noqa: BLE001 - ORT raises many types
        raise ExportError(f"INT8 pre-processing failed: {type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0][:200]}") from None
    model = onnx.load(str(out))
    ensure_node_names(model)
    # after ORT's optimiser (which would fold an explicit Pad back into the pooling): padded
    # average pooling as a mean over real taps, which OpenVINO's int8 path gets right
    exclusive_pool_padding(model)
    onnx.save(model, str(out))
    return out


class _Reader(CalibrationDataReader):
    """Feeds frames; `tick` runs once a frame has been *run* (asked for the next one)."""

    def __init__(self, tensors: Sequence[np.ndarray], input_name: str,
                 tick: Callable[[], None]) -> None:
        self._it = iter(tensors)
        self._name = input_name
        self._tick = tick
        self._pending = False

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pending:
            self._pending = False
            self._tick()
        tensor = next(self._it, None)
        if tensor is None:
            return None
        self._pending = True
        return {self._name: tensor}


def activation_bytes(calibrator: Any, tensor: np.ndarray, input_name: str) -> int:
    """Bytes one frame's calibrated activations take (measured on one frame): sizes chunks."""
    outs = calibrator.infer_session.run(None, {input_name: tensor})
    size = int(sum(getattr(o, "nbytes", 0) for o in outs))
    del outs
    return size


def chunk_for(per_frame: int, budget: int = ACTIVATION_BUDGET) -> int:
    """Frames per collect pass: ORT keeps every activation of a pass in memory at once."""
    return max(1, min(CHUNK, budget // max(per_frame, 1)))


@dataclass(frozen=True)
class Calibrated:
    data: TensorsData
    frames: int  # frames the ranges were computed on (fewer when the bound stopped it)
    chunk: int  # frames per collect pass
    activation_mb: float  # one frame's calibrated activations
    # histogram methods: elements per tensor per frame histogrammed (None: all; minmax: None)
    sample: int | None = None


def calibrate(pre: Path, tensors: Sequence[np.ndarray], input_name: str, method: CalibMethod,
              workdir: Path, tick: Callable[[], None] = lambda: None) -> TensorsData:
    """Activation ranges over the calibration tensors, collected a chunk at a time."""
    return calibrate_bounded(pre, tensors, input_name, method, workdir, tick).data


def calibrate_bounded(pre: Path, tensors: Sequence[np.ndarray], input_name: str,
                      method: CalibMethod, workdir: Path,
                      tick: Callable[[], None] = lambda: None,
                      budget: int = ACTIVATION_BUDGET,
                      sample: int | None | Literal["auto"] = "auto") -> Calibrated:
    """Ranges streamed over the frames.  `tick` runs after every frame and may raise
    steps.BoundReached: the ranges of the frames collected so far are then returned
    (``frames`` says how many).

    minmax: ORT's calibrator in chunks sized so one pass's activations (reduced in the
    graph) stay within `budget` bytes.  percentile / entropy: one frame at a time through
    precision/histograms.py (exact min/max, histograms of at most `sample` elements per
    tensor and frame; "auto": histograms.sample_cap(frames), None: every element).
    """
    if not tensors:
        raise ExportError("INT8 calibration: expected at least one calibration frame, got none")
    try:
        with _quiet():
            calibrator = create_calibrator(
                pre, augmented_model_path=str(workdir / "augmented.onnx"),
                calibrate_method=METHODS[method], providers=["CPUExecutionProvider"],
                extra_options={})
            if method == "minmax":
                return _minmax(calibrator, tensors, input_name, tick, budget)
            cap = histograms.sample_cap(len(tensors)) if sample == "auto" else sample
            got = histograms.stream_ranges(calibrator, tensors, input_name, tick, cap)
            return Calibrated(got.data, got.frames, 1, round(got.activation_bytes / 2**20, 1),
                              cap)
    except ValueError as err:  # e.g. np.histogram "Too many bins for data range"
        raise ExportError(
            f"INT8 calibration ({method}): expected activations with a usable range, got "
            f"{str(err).strip().splitlines()[0][:120]!r} (degenerate, e.g. random weights); "
            "try --calib-method minmax or a trained model"
        ) from None


def _minmax(calibrator: Any, tensors: Sequence[np.ndarray], input_name: str,
            tick: Callable[[], None], budget: int) -> Calibrated:
    """ORT's MinMax calibrator (ReduceMin/Max in the graph) over chunks of frames."""
    from segedge.export.precision.steps import BoundReached

    done = 0
    per_frame = activation_bytes(calibrator, tensors[0], input_name)
    chunk = chunk_for(per_frame, budget)
    for start in range(0, len(tensors), chunk):
        part = tensors[start:start + chunk]
        try:
            calibrator.collect_data(_Reader(part, input_name, tick))
            done += len(part)
        except BoundReached:
            # the frames of the interrupted pass are dropped with it; keep earlier
            calibrator.clear_collected_data()
            if done == 0:
                raise ExportError(
                    "INT8 calibration: expected at least one calibration pass "
                    "within the time bound, got none (raise the bound or lower "
                    "--calib-count)") from None
            break
    return Calibrated(calibrator.compute_data(), done, chunk, round(per_frame / 2**20, 1))


def write_ranges(data: TensorsData, path: Path) -> Path:
    save_tensors_data(data, path)
    return path


@dataclass(frozen=True)
class Quantizer:
    """A pre-processed graph with its ranges: each `quantize` call is a cheap re-quantization."""

    pre: Path
    ranges: Path
    target: Int8Target
    method: CalibMethod
    # never quantized: the head (+ classifier for ``cpu``; Concat-fed layers for S8S8)
    fixed_fp32: tuple[str, ...]
    candidates: tuple[str, ...]  # compute layers the sensitivity search may keep in FP32
    # weight initializer -> its output-channel axis (None: per-tensor), see graph.weight_axes
    axes: tuple[tuple[str, int | None], ...] = ()
    per_channel: bool = True  # per-channel weight scales (else per-tensor everywhere)

    @classmethod
    def open(cls, pre: Path, ranges: Path, target: Int8Target, method: CalibMethod,
             per_channel: bool = True) -> Quantizer:
        model = onnx.load(str(pre), load_external_data=False)
        fixed = head_nodes(model) + input_nodes(model)  # never Q/DQ on the uint8 input path
        if FLAVOURS[target].keep_classifier:
            fixed += classifier_nodes(model)
        if FLAVOURS[target].symmetric_activations:  # OpenVINO miscomputes these in INT8
            fixed += [n for n in concat_fed_nodes(model) if n not in set(fixed)]
        candidates = tuple(n for n in compute_nodes(model) if n not in set(fixed))
        return cls(pre, ranges, target, method, tuple(fixed), candidates,
                   tuple(sorted(weight_axes(model).items())), per_channel)

    def _weight_overrides(self) -> dict[str, list[dict[str, Any]]]:
        """Every compute weight's axis said explicitly: ONNX Runtime's defaults are per-op
        (ConvTranspose axis 1 even when grouped, where no one axis is per output channel)."""
        if not self.per_channel:
            return {}
        return {name: [{"axis": axis}] if axis is not None else [{"symmetric": True}]
                for name, axis in self.axes}

    def quantize(self, out: Path, exclude: Iterable[str] = (),
                 only: Iterable[str] | None = None) -> Path:
        """Write the Q/DQ model; `exclude` stays FP32, `only` quantizes just those nodes."""
        flavour = FLAVOURS[self.target]
        extra: dict[str, Any] = {"ActivationSymmetric": flavour.symmetric_activations,
                                 "WeightSymmetric": True,
                                 "TensorQuantOverrides": self._weight_overrides()}
        if flavour.inputs_only:
            extra["OpTypesToExcludeOutputQuantization"] = list(flavour.op_types or ())
            extra["QuantizeBias"] = False  # TensorRT has no INT32 DequantizeLinear
        try:
            with _quiet():
                quantize_static(
                    str(self.pre), str(out), calibration_data_reader=None,
                    quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(flavour.op_types) if flavour.op_types else None,
                    per_channel=self.per_channel, activation_type=flavour.activation,
                    weight_type=QuantType.QInt8, calibrate_method=METHODS[self.method],
                    nodes_to_quantize=list(only) if only is not None else None,
                    nodes_to_exclude=[*self.fixed_fp32, *exclude],
                    calibration_cache_path=self.ranges, extra_options=extra)
        except Exception as err:  # noqa: BLE001 - ORT raises many types
            raise ExportError(f"INT8 quantization failed: {type(err).__name__}: "
                              f"{str(err).strip().splitlines()[0][:200]}") from None
        problems = qdq_axis_problems(onnx.load(str(out), load_external_data=False))
        if problems:  # a fused INT8 kernel would read these scales on the wrong channels
            raise ExportError(f"INT8 placement: expected weight scales per output channel, "
                              f"got {len(problems)} layer(s) otherwise: {problems[0]}")
        return out


def int8_layers(model: onnx.ModelProto) -> list[str]:
    """Compute layers whose activation *and* weight are dequantized: the ones OpenVINO and
    TensorRT run as INT8 kernels (one side alone runs in float there)."""
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS
            and len(n.input) > 1 and n.input[0] in dq_out and n.input[1] in dq_out]


def quantized_layers(model: onnx.ModelProto) -> list[str]:
    """Compute layers reading a DequantizeLinear'd weight: the ones running in INT8."""
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in COMPUTE_OPS
            and len(n.input) > 1 and n.input[1] in dq_out]
