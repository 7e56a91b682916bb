"""The instance (Mask R-CNN) export pipeline: resolve -> wrap -> export -> check -> verify.

Mirrors exporter.export for task "instance" zoo entries: everything is written
in a temporary folder beside the output and renamed into place only once it
checked and passed the parity gate; the report lands beside the artifact.

Differences from the semantic path, and why:
- TorchScript exporter only (dynamo fails on torchvision's detection code),
  opset 16..17 (RoIAlign's half_pixel mode needs 16).
- Outputs are padded to ``max_detections`` with a ``count``, so every shape
  but the image's is static for TensorRT (the output dims are written static).
- The trace example is a real frame, so the traced graph has seen detections.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch

from segedge.export.config import ExportConfig
from segedge.export.frames import load_frames
from segedge.export.models.maskrcnn import (
    DEFAULT_MAX_DETECTIONS,
    OUTPUT_NAMES,
    InstanceExportWrapper,
)
from segedge.export.models.resolve import Resolved, resolve
from segedge.export.onnx import tools as onnx_tools
from segedge.export.onnx.convert import INPUT_NAME, _first_line, _quiet
from segedge.export.pipeline import output_path, value_shape
from segedge.export.report import publish, report_path, write_failed_report, write_json_atomic
from segedge.export.verify.instance import MIN_BOX_IOU, MIN_MEAN_MASK_IOU, check_instance_parity
from segedge.runtime import __version__
from segedge.runtime.errors import ExportError, InputError, VerificationError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec, OutputSpec

Log = Callable[[str], None]
MAX_OPSET = 17  # the TorchScript exporter's detection symbolics are tested up to here
MIN_OPSET = 16  # RoiAlign coordinate_transformation_mode (torchvision aligned=True)
# Ops the instance graph needs beyond a plain CNN, and what TensorRT's parser says of them.
INSTANCE_OPS = ("NonMaxSuppression", "RoiAlign", "Loop", "If", "NonZero", "TopK",
                "ScatterElements", "Resize")


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class InstanceOptions:
    """What ExportConfig does not (yet) carry for instance exports."""

    max_detections: int = DEFAULT_MAX_DETECTIONS
    box_score_threshold: float | None = None  # baked into the graph; None keeps the model's
    mask_threshold: float = 0.5  # masks leave the graph as 0/1 uint8
    verify_score: float = 0.5  # parity compares detections at or above this score
    min_mean_mask_iou: float = MIN_MEAN_MASK_IOU

    def __post_init__(self) -> None:
        if self.max_detections < 1:
            raise InputError("--max-detections", "a positive integer", self.max_detections)
        for flag, value in (("--score-threshold", self.box_score_threshold),
                            ("--mask-threshold", self.mask_threshold),
                            ("verify score", self.verify_score)):
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(flag, "a number between 0 and 1", value)


def _check_config(cfg: ExportConfig) -> int:
    if cfg.precision != "fp32":
        raise InputError("precision", "fp32 for instance models (fp16/int8 lowering of Mask "
                         "R-CNN is not implemented yet)", cfg.precision)
    if cfg.engine:
        raise InputError("--engine", "no --engine for instance models (TensorRT plan builds "
                         "for Mask R-CNN are not implemented yet; the ONNX goes to trtexec)",
                         "--engine")
    if cfg.batch != 1:
        raise InputError("--batch", "1 for instance models (detections are per image)",
                         cfg.batch)
    opset = min(cfg.opset, MAX_OPSET)
    if opset < MIN_OPSET:
        raise InputError("--opset", f"{MIN_OPSET} or newer (RoiAlign half_pixel)", cfg.opset)
    return opset


def _prefer_cached_pretrained(cfg: ExportConfig) -> ExportConfig:
    """--weights auto: use torchvision's COCO weights when already in the cache."""
    if cfg.weights != "auto" or cfg.checkpoint is not None:
        return cfg
    from torchvision.models import detection

    from segedge.export.models.weights import pretrained_cached

    enums = {"maskrcnn_resnet50_fpn": detection.MaskRCNN_ResNet50_FPN_Weights.DEFAULT,
             "maskrcnn_resnet50_fpn_v2": detection.MaskRCNN_ResNet50_FPN_V2_Weights.DEFAULT}
    enum = enums.get(cfg.model.strip().lower().replace("-", "_"))
    if enum is not None and pretrained_cached(enum):
        return dataclasses.replace(cfg, weights="pretrained")
    return cfg


def build_metadata(res: Resolved, cfg: ExportConfig, opt: InstanceOptions, opset: int,
                   model: torch.nn.Module) -> ArtifactMetadata:
    import onnxruntime

    uint8 = cfg.input_format == "uint8"
    transform = getattr(model, "transform", None)
    return ArtifactMetadata(
        model=res.name, family=res.family, classes=res.classes, palette=res.palette,
        task="instance",
        input=InputSpec(
            name=INPUT_NAME, format=cfg.input_format, layout="NHWC" if uint8 else "NCHW",
            color_order=cfg.input_color if uint8 else "RGB",
            # torchvision normalises inside the graph; a float input is plain 0..1 RGB
            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
            size=None if cfg.dynamic else res.size, batch=1, stride=1,
            dynamic_axes=("height", "width") if cfg.dynamic else (),
        ),
        output=OutputSpec(kind="instances", logits=None, labels="labels", boxes="boxes",
                          scores="scores", masks="masks", count="count",
                          max_detections=opt.max_detections),
        precision="fp32", opset=opset, exporter="torchscript",
        versions={"segedge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": onnxruntime.__version__},
        extra={"weights": res.weights, "model_color": "RGB",
               "mask_threshold": opt.mask_threshold,
               "box_score_threshold": float(getattr(getattr(model, "roi_heads", None),
                                                    "score_thresh", 0.05)),
               "internal_resize": {"min_size": list(getattr(transform, "min_size", ())),
                                   "max_size": getattr(transform, "max_size", None)},
               "masks": "uint8 0/1 at input resolution; rows >= count are zero"},
    )


def _export_torchscript(wrapper: torch.nn.Module, example: torch.Tensor, path: Path,
                        dynamic: bool, uint8: bool, opset: int) -> float:
    axes = None
    if dynamic:
        hw = {1: "height", 2: "width"} if uint8 else {2: "height", 3: "width"}
        axes = {INPUT_NAME: hw, "masks": {2: "height", 3: "width"}}
    start = time.perf_counter()
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                              dynamic_axes=axes, do_constant_folding=True)
    except Exception as err:  # noqa: BLE001 - report any exporter failure as one line
        path.unlink(missing_ok=True)
        raise ExportError(f"TorchScript export of the instance model failed: "
                          f"{_first_line(err)}") from None
    return time.perf_counter() - start


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


def tensorrt_section(model: onnx.ModelProto) -> dict[str, Any]:
    """The lint findings plus what TensorRT's parser says of the detection-specific ops."""
    from segedge.export.tensorrt import lint as trt_lint

    table = trt_lint.load_table()
    findings = trt_lint.lint(model, table)
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
    flagged = sorted({f.op_type for f in findings})
    return {"table_version": table.tensorrt_version, "source": table.source,
            "unsupported": [f.to_dict() for f in findings],
            "detection_ops": ops,
            "needs_rewrite": flagged,
            "rewrites_applied": ["NonZero inputs cast to FLOAT", "uint8 input cast to float "
                                 "before any op", "masks padded in float, cast to uint8 last",
                                 "count clamped in float"],
            "note": ("NonMaxSuppression and RoiAlign are parsed natively by TensorRT >= 8.6 "
                     "(no plugins); outputs are padded to a static count, so only the image "
                     "size is dynamic")}


def export_instance(cfg: ExportConfig, log: Log = _stderr,
                    options: InstanceOptions | None = None) -> dict[str, Any]:
    """Export a Mask R-CNN zoo entry (or checkpoint of one); returns the report."""
    opt = options or InstanceOptions()
    start = time.perf_counter()
    opset = _check_config(cfg)
    cfg = _prefer_cached_pretrained(cfg)
    torch.manual_seed(0)  # random weights: the same artifact every run (gate included)
    res = resolve(cfg)
    out = output_path(cfg, res.name)
    model = res.model.eval()
    if opt.box_score_threshold is not None:
        model.roi_heads.score_thresh = opt.box_score_threshold  # type: ignore[union-attr]
    uint8 = cfg.input_format == "uint8"
    h, w = res.size
    if h < 1 or w < 1:
        raise InputError("--imgsz", "positive sizes", f"{h}x{w}")
    notes = list(res.notes)
    if cfg.opset > MAX_OPSET:
        notes.append(f"opset {cfg.opset} lowered to {MAX_OPSET} (TorchScript exporter, "
                     "torchvision detection ops)")
    frames = load_frames(cfg.verify_images, max(cfg.verify_count, 1), res.size)
    wrapper = InstanceExportWrapper(model, opt.max_detections, cfg.input_format,
                                    cfg.input_color, opt.mask_threshold).eval()
    meta = build_metadata(res, cfg, opt, opset, model)
    from segedge.runtime.preprocess import resize_frame, to_tensor

    first, _ = resize_frame(frames.frames[0], dataclasses.replace(meta.input, size=res.size))
    example = torch.from_numpy(to_tensor([first], dataclasses.replace(meta.input,
                                                                      size=res.size)))
    with tempfile.TemporaryDirectory(prefix=".segedge-", dir=out.resolve().parent) as tmpdir:
        raw = Path(tmpdir) / "raw.onnx"
        seconds = _export_torchscript(wrapper, example, raw, cfg.dynamic, uint8, opset)
        graph = onnx.load(str(raw))
        set_static_outputs(graph, opt.max_detections, None if cfg.dynamic else res.size)
        if cfg.simplify:
            notes.append(SIMPLIFY_NOTE)
        rewrites = cast_nonzero_inputs(graph)
        onnx_tools.set_metadata(graph, meta)
        graph = onnx_tools.check(graph)
        final_tmp = Path(tmpdir) / "final.onnx"
        onnx.save(graph, str(final_tmp))
        parity = None
        if cfg.verify:
            parity = check_instance_parity(model, final_tmp, meta, frames.frames, frames.source,
                                           opt.verify_score, opt.mask_threshold)
            if parity.mean_mask_iou is None:
                notes.append("no detections on the verification frames: parity covered the "
                             "empty path only (count 0 on both sides)")
        report: dict[str, Any] = {
            "artifact": str(out), "model": res.name, "family": res.family, "task": "instance",
            "precision": "fp32", "exporter": "torchscript", "opset": opset,
            "export_seconds": round(seconds, 2),
            "simplified": False, "rewrites": rewrites,
            "weights": res.weights, "max_detections": opt.max_detections,
            "inputs": {INPUT_NAME: value_shape(graph.graph.input[0])},
            "outputs": {o.name: value_shape(o) for o in graph.graph.output},
            "parity": parity.to_dict() if parity else None,
            "gate": {"min_mean_mask_iou": opt.min_mean_mask_iou, "min_box_iou": MIN_BOX_IOU,
                     "score_threshold": opt.verify_score, "enforced": cfg.verify},
            "tensorrt": tensorrt_section(graph), "metadata": dataclasses.asdict(meta),
            "notes": notes,
        }
        if parity is not None and not parity.passed(opt.min_mean_mask_iou):
            failed = write_failed_report(out, report)
            raise VerificationError(
                f"parity gate: expected mean mask IoU >= {opt.min_mean_mask_iou} against "
                f"PyTorch, got {parity.mean_mask_iou} ({parity.matched} matched, "
                f"{parity.unmatched_reference} missing, {parity.unmatched_onnx} extra on "
                f"{parity.images} frames); no artifact written (details: {failed}; "
                "--no-verify to skip)")
        publish(final_tmp, out, report)
    report["engine"] = None
    report["total_seconds"] = round(time.perf_counter() - start, 2)
    write_json_atomic(report_path(out), report)
    if not cfg.quiet:
        log(format_instance_summary(report))
    return report


def format_instance_summary(report: dict[str, Any]) -> str:
    lines = [f"wrote {report['artifact']} ({report['size_bytes'] / 1e6:.1f} MB, torchscript "
             f"exporter, opset {report['opset']}, fp32, max {report['max_detections']} "
             "detections)"]
    par = report.get("parity")
    if par:
        miou = par["mean_mask_iou"]
        lines.append(
            f"parity vs PyTorch on {par['images']} frames ({par['source']}): "
            + (f"{par['matched']} matched, {par['unmatched_reference']} missing, "
               f"{par['unmatched_onnx']} extra, mean mask IoU {miou:.4f}, mean box IoU "
               f"{par['mean_box_iou'] or 0:.4f}" if miou is not None else
               "no detections on either side (empty path verified)"))
    else:
        lines.append("parity: not verified (--no-verify)")
    trt = report["tensorrt"]
    ops = ", ".join(f"{k} x{v['count']} ({v['parser']})" for k, v in trt["detection_ops"].items())
    lines.append(f"tensorrt: detection ops {ops or 'none'}; lint "
                 + ("clean" if not trt["unsupported"] else
                    f"{len(trt['unsupported'])} findings: {', '.join(trt['needs_rewrite'])}"))
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)


