"""The instance task (Mask R-CNN): padded detections out, matched against PyTorch's.

What it owns, and why it differs from the semantic task:
- TorchScript exporter only (dynamo fails on torchvision's detection code),
  opset 16..17 (RoIAlign's half_pixel mode needs 16); FP32 only, no engine
  build, batch 1 (detections are per image), for now.
- Outputs are padded to ``max_detections`` with a ``count``, so every shape
  but the image's is static for TensorRT (the output dims are written static).
- The trace example is a real frame, so the traced graph has seen detections.
- Parity matches detections (class, box IoU) and gates on mean mask IoU.
Pretrained weights are export/models' business (``resolve()``'s --weights rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import onnx
import torch

from segedge.export.config import ExportConfig
from segedge.export.frames import load_frames
from segedge.export.models.maskrcnn import OUTPUT_NAMES, InstanceExportWrapper
from segedge.export.models.resolve import Resolved
from segedge.export.onnx.convert import INPUT_NAME, ExportSpec
from segedge.export.tasks.base import ExportTask, Finished, Prepared, versions
from segedge.export.verify.instance import MIN_BOX_IOU, InstanceParity, check_instance_parity
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec, OutputSpec
from segedge.runtime.preprocess import resize_frame, to_tensor

MAX_OPSET = 17  # the TorchScript exporter's detection symbolics are tested up to here
MIN_OPSET = 16  # RoiAlign coordinate_transformation_mode (torchvision aligned=True)
# Ops the instance graph needs beyond a plain CNN, and what TensorRT's parser says of them.
INSTANCE_OPS = ("NonMaxSuppression", "RoiAlign", "Loop", "If", "NonZero", "TopK",
                "ScatterElements", "Resize")


class InstanceTask(ExportTask[InstanceParity]):
    name: ClassVar[str] = "instance"
    seed: ClassVar[int | None] = 0  # random weights: the same artifact every run (gate too)

    def check(self, cfg: ExportConfig) -> None:
        if cfg.precision.spec.lowers:
            raise InputError("precision", "fp32 for instance models (fp16/int8 lowering of "
                             "Mask R-CNN is not implemented yet)", cfg.precision.mode)
        if cfg.engine.build:
            raise InputError("--engine", "no --engine for instance models (TensorRT plan "
                             "builds for Mask R-CNN are not implemented yet; the ONNX goes to "
                             "trtexec)", "--engine")
        if cfg.batch != 1:
            raise InputError("--batch", "1 for instance models (detections are per image)",
                             cfg.batch)
        given = [flag for flag, on in (("--mean", cfg.mean is not None),
                                       ("--std", cfg.std is not None),
                                       ("--norm-units", cfg.norm_units is not None),
                                       ("--scale", cfg.scale != 1.0)) if on]
        if given:
            raise InputError("/".join(given), "no normalisation flags for instance models "
                             "(torchvision's Mask R-CNN normalises inside, with its own "
                             "mean/std)", " ".join(given))
        if cfg.verify.labels is not None:
            raise InputError("--verify-labels", "a semantic model (instance parity matches "
                             "detections; it has no label maps to score)", cfg.verify.labels)
        if _opset(cfg) < MIN_OPSET:
            raise InputError("--opset", f"{MIN_OPSET} or newer (RoiAlign half_pixel)",
                             cfg.opset)

    def prepare(self, res: Resolved, cfg: ExportConfig) -> Prepared:
        model = res.model.eval()
        roi_heads = getattr(model, "roi_heads", None)
        if roi_heads is None or not hasattr(model, "transform"):
            raise InputError(res.name, "a torchvision Mask R-CNN (roi_heads, transform) for "
                             "the instance task", type(model).__name__)
        opt = cfg.instance
        if opt.box_score_threshold is not None:
            roi_heads.score_thresh = opt.box_score_threshold
        notes = list(res.notes)
        if cfg.opset > MAX_OPSET:
            notes.append(f"opset {cfg.opset} lowered to {MAX_OPSET} (TorchScript exporter, "
                         "torchvision detection ops)")
        frames = load_frames(cfg.verify.images, cfg.verify.count, res.size)
        wrapper = InstanceExportWrapper(model, opt.max_detections, cfg.input_format,
                                        cfg.input_color, opt.mask_threshold).eval()
        static = _input_spec(cfg, res.size)
        first, _ = resize_frame(frames.frames[0], static)
        example = torch.from_numpy(to_tensor([first], static))
        axes: dict[int, str] = {}
        if cfg.dynamic:
            axes = {1: "height", 2: "width"} if cfg.input_format == "uint8" else \
                {2: "height", 3: "width"}
        spec = ExportSpec(output_names=OUTPUT_NAMES, input_axes=axes,
                          output_axes={"masks": {2: "height", 3: "width"}} if axes else {},
                          opset=_opset(cfg), exporters=("torchscript",))
        return Prepared(wrapper=wrapper, example=example, reference=model, spec=spec,
                        size=res.size, notes=notes, frames=frames)

    def finish_graph(self, model: onnx.ModelProto, cfg: ExportConfig, prep: Prepared
                     ) -> Finished:
        set_static_outputs(model, cfg.instance.max_detections,
                           None if cfg.dynamic else prep.size)
        rewrites = cast_nonzero_inputs(model)
        return Finished(model, simplified=False, rewrites=rewrites,
                        notes=[SIMPLIFY_NOTE] if cfg.simplify else [])

    def metadata(self, res: Resolved, cfg: ExportConfig, prep: Prepared, exporter: str,
                 opset: int) -> ArtifactMetadata:
        model, opt = prep.reference, cfg.instance
        transform = getattr(model, "transform", None)
        return ArtifactMetadata(
            model=res.name, family=res.family, classes=res.classes, palette=res.palette,
            task="instance",
            input=_input_spec(cfg, None if cfg.dynamic else res.size),
            output=OutputSpec(kind="instances", logits=None, labels="labels", boxes="boxes",
                              scores="scores", masks="masks", count="count",
                              max_detections=opt.max_detections),
            precision="fp32", opset=opset, exporter=exporter, versions=versions(),
            extra={"weights": res.weights, "model_color": "RGB",
                   "mask_threshold": opt.mask_threshold,
                   "box_score_threshold": float(getattr(getattr(model, "roi_heads", None),
                                                        "score_thresh", 0.05)),
                   "internal_resize": {"min_size": list(getattr(transform, "min_size", ())),
                                       "max_size": getattr(transform, "max_size", None)},
                   "masks": "uint8 0/1 at input resolution; rows >= count are zero"},
        )

    def verify(self, prep: Prepared, path: Path, meta: ArtifactMetadata, cfg: ExportConfig
               ) -> InstanceParity:
        frames = prep.frames or load_frames(cfg.verify.images, cfg.verify.count, prep.size)
        return check_instance_parity(prep.reference, path, meta, frames.frames, frames.source,
                                     cfg.instance.verify_score, cfg.instance.mask_threshold)

    def parity_notes(self, parity: InstanceParity) -> list[str]:
        if parity.mean_mask_iou is None:
            return ["no detections on the verification frames: parity covered the empty path "
                    "only (count 0 on both sides)"]
        return []

    def gate_failure(self, parity: InstanceParity, cfg: ExportConfig) -> str | None:
        need = cfg.instance.min_mean_mask_iou
        if parity.passed(need):
            return None
        return (f"parity gate: expected mean mask IoU >= {need} against PyTorch, got "
                f"{parity.mean_mask_iou} ({parity.matched} matched, "
                f"{parity.unmatched_reference} missing, {parity.unmatched_onnx} extra on "
                f"{parity.images} frames)")

    def gate(self, cfg: ExportConfig) -> dict[str, Any]:
        return {"min_mean_mask_iou": cfg.instance.min_mean_mask_iou, "min_box_iou": MIN_BOX_IOU,
                "score_threshold": cfg.instance.verify_score, "enforced": cfg.verify.enabled}

    def report_fields(self, cfg: ExportConfig) -> dict[str, Any]:
        return {"max_detections": cfg.instance.max_detections}

    def header_extra(self, report: dict[str, Any]) -> str:
        return f", max {report['max_detections']} detections"

    def parity_line(self, parity: dict[str, Any]) -> str:
        miou = parity["mean_mask_iou"]
        if miou is None:
            return "no detections on either side (empty path verified)"
        return (f"{parity['matched']} matched, {parity['unmatched_reference']} missing, "
                f"{parity['unmatched_onnx']} extra, mean mask IoU {miou:.4f}, mean box IoU "
                f"{parity['mean_box_iou'] or 0:.4f}")

    def tensorrt_extra(self, model: onnx.ModelProto, table: Any, findings: list[Any]
                       ) -> dict[str, Any]:
        """What TensorRT's parser says of the detection-specific ops."""
        counts: dict[str, int] = {}

        def walk(graph: onnx.GraphProto) -> None:
            for node in graph.node:
                counts[node.op_type] = counts.get(node.op_type, 0) + 1
                for attr in node.attribute:
                    for g in [attr.g, *attr.graphs]:
                        walk(g)

        walk(model.graph)
        ops = {}
        for op in INSTANCE_OPS:
            if counts.get(op):
                rule = table.supported.get(op)
                ops[op] = {"count": counts[op], "parser": "supported" if rule is not None else
                           "not supported",
                           "restrictions": getattr(rule, "restrictions", None) if rule else
                           table.unsupported.get(op)}
        return {"detection_ops": ops,
                "needs_rewrite": sorted({f.op_type for f in findings}),
                "rewrites_applied": ["NonZero inputs cast to FLOAT", "uint8 input cast to float "
                                     "before any op", "masks padded in float, cast to uint8 "
                                     "last", "count clamped in float"],
                "note": ("NonMaxSuppression and RoiAlign are parsed natively by TensorRT >= 8.6 "
                         "(no plugins); outputs are padded to a static count, so only the "
                         "image size is dynamic")}

    def lint_line(self, trt: dict[str, Any]) -> str:
        ops = ", ".join(f"{k} x{v['count']} ({v['parser']})"
                        for k, v in trt["detection_ops"].items())
        return (f"tensorrt: detection ops {ops or 'none'}; lint "
                + ("clean" if not trt["unsupported"] else
                   f"{len(trt['unsupported'])} findings: {', '.join(trt['needs_rewrite'])}"))


def _opset(cfg: ExportConfig) -> int:
    return min(cfg.opset, MAX_OPSET)


def _input_spec(cfg: ExportConfig, size: tuple[int, int] | None) -> InputSpec:
    """torchvision normalises inside the graph: a float input is plain 0..1 RGB."""
    uint8 = cfg.input_format == "uint8"
    return InputSpec(
        name=INPUT_NAME, format=cfg.input_format, layout="NHWC" if uint8 else "NCHW",
        color_order=cfg.input_color if uint8 else "RGB", mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0), size=size, batch=1, stride=1,
        dynamic_axes=("height", "width") if cfg.dynamic else ())


def set_static_outputs(model: onnx.ModelProto, n: int, size: tuple[int, int] | None) -> None:
    """Write the padded output shapes into the graph (the tracer leaves N symbolic).

    The Pad+Slice really produce exactly n rows; shape inference just cannot
    see through the slice, and TensorRT wants the static count in the I/O.
    """
    h, w = size if size is not None else ("height", "width")
    shapes: dict[str, list[int | str]] = {
        "boxes": [1, n, 4], "labels": [1, n], "scores": [1, n], "masks": [1, n, h, w],
        "count": [1]}
    for value in model.graph.output:
        want = shapes.get(value.name)
        if want is None:
            continue
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in want:
            dim = dims.add()
            if isinstance(d, int):
                dim.dim_value = d
            else:
                dim.dim_param = d


SIMPLIFY_NOTE = ("not simplified: onnxslim breaks the mask paste loop of Mask R-CNN (measured: "
                 "mask IoU 0 against PyTorch with every box right)")


def cast_nonzero_inputs(model: onnx.ModelProto) -> list[str]:
    """TensorRT's NonZero takes FP32/FP16 only; torchvision feeds it BOOL masks.

    Insert a Cast to FLOAT in front of every non-float NonZero input (same
    result: nonzero positions of 0/1 are those of False/True).
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    nodes: list[onnx.NodeProto] = []
    count = 0
    for node in model.graph.node:
        if node.op_type == "NonZero" and types.get(node.input[0]) not in floats:
            cast_out = f"{node.input[0]}_as_float_{count}"
            nodes.append(onnx.helper.make_node("Cast", [node.input[0]], [cast_out],
                                               name=f"{node.name}_cast_float",
                                               to=onnx.TensorProto.FLOAT))
            node.input[0] = cast_out
            count += 1
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return [f"cast {count} non-float NonZero inputs to FLOAT (TensorRT NonZero: FP32/FP16)"] \
        if count else []
