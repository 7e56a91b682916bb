"""The export pipeline: resolve -> rewrite -> export -> check -> verify -> publish.

Everything is written under a temporary name in the output folder and only
renamed into place once it checked and verified, so a failed or interrupted
export never leaves a file that looks complete.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch

from segedge.export.config import ExportConfig
from segedge.export.frames import load_frames
from segedge.export.models.resolve import Resolved, resolve
from segedge.export.onnx import tools as onnx_tools
from segedge.export.onnx.convert import INPUT_NAME, dynamic_axes_for, export_onnx
from segedge.export.onnx.rewrites import apply_rewrites
from segedge.export.onnx.wrap import Baking, DeployWrapper
from segedge.export.report import (
    format_summary,
    publish,
    report_path,
    write_failed_report,
    write_json_atomic,
)
from segedge.export.verify.parity import check_parity, session
from segedge.runtime import __version__
from segedge.runtime.errors import (
    BackendUnavailableError,
    InputError,
    SegedgeError,
    ShapeError,
    VerificationError,
)
from segedge.runtime.metadata import ArtifactMetadata, InputSpec, OutputSpec

if TYPE_CHECKING:
    from segedge.export.precision.ladder import Lowered

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


def output_path(cfg: ExportConfig, name: str) -> Path:
    suffix = "" if cfg.precision == "fp32" else f"_{cfg.precision}"
    path = cfg.output or Path(f"{name.lower()}{suffix}.onnx")
    if path.suffix.lower() != ".onnx":
        raise InputError("--output", "a path ending in .onnx", str(path))
    parent = path.resolve().parent
    if not parent.is_dir():
        raise InputError("--output", "a path in an existing folder", f"no folder {parent}")
    if not os.access(parent, os.W_OK):
        raise InputError("--output", "a writable folder", f"read-only {parent}")
    return path


def check_size(res: Resolved, cfg: ExportConfig) -> None:
    h, w = res.size
    if h < 1 or w < 1 or cfg.batch < 1:
        raise InputError("--imgsz/--batch", "positive sizes", f"{h}x{w}, batch {cfg.batch}")
    s = res.stride
    if h % s or w % s:
        lo = (max(s, h // s * s), max(s, w // s * s))
        raise ShapeError(
            f"input size {h}x{w}: {res.name} needs multiples of {s} (stride {s}); "
            f"try --imgsz {lo[0]} {lo[1]} or {lo[0] + s} {lo[1] + s}"
        )


def dry_run(res: Resolved, example: torch.Tensor) -> bool:
    """One eager forward at the export size; True when the output needs upsampling."""
    try:
        with torch.no_grad():
            out = res.model(example)
    except Exception as err:  # noqa: BLE001 - user models raise anything at odd sizes
        hint = f" (it needs multiples of {res.stride})" if res.stride > 1 else ""
        raise ShapeError(
            f"input size {res.size[0]}x{res.size[1]}: {res.name} failed in PyTorch{hint}: "
            f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        ) from None
    if isinstance(out, dict):
        out = out.get("out")
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        raise InputError(res.name, "a segmentation network returning NxCxHxW logits",
                         f"output {type(out).__name__} {getattr(out, 'shape', '')}")
    if out.shape[1] != len(res.classes):
        raise InputError(f"{res.name} output channels", f"{len(res.classes)} (one per class)",
                         out.shape[1])
    return tuple(out.shape[-2:]) != tuple(example.shape[-2:])


def build_metadata(res: Resolved, cfg: ExportConfig, exporter: str, opset: int) -> ArtifactMetadata:
    uint8 = cfg.input_format == "uint8"
    kind = {"logits": "logits", "labels": "labels", "both": "both"}[cfg.emit]
    names = cfg.output_names
    import onnxruntime

    return ArtifactMetadata(
        model=res.name, family=res.family, classes=res.classes, palette=res.palette,
        input=InputSpec(
            name=INPUT_NAME, format=cfg.input_format, layout="NHWC" if uint8 else "NCHW",
            color_order=cfg.input_color if uint8 else res.model_color,
            mean=res.mean, std=res.std, size=None if cfg.dynamic else res.size,
            batch=None if cfg.dynamic else cfg.batch, stride=res.stride,
            dynamic_axes=tuple(dynamic_axes_for(uint8, cfg.dynamic).values()),
        ),
        output=OutputSpec(kind=kind,  # type: ignore[arg-type]
                          logits="logits" if "logits" in names else None,
                          labels="labels" if "labels" in names else None,
                          confidence="confidence" if "confidence" in names else None),
        precision="fp32", opset=opset, exporter=exporter,
        versions={"segedge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": onnxruntime.__version__},
        extra={"weights": res.weights, "model_color": res.model_color},
    )


def lint_tensorrt(model: onnx.ModelProto) -> dict[str, Any]:
    from segedge.export.tensorrt import lint as trt_lint

    table = trt_lint.load_table()
    findings = trt_lint.lint(model, table)
    return {"table_version": table.tensorrt_version, "source": table.source,
            "unsupported": [f.to_dict() if hasattr(f, "to_dict") else dataclasses.asdict(f)
                            for f in findings]}


def check_precision_options(cfg: ExportConfig) -> None:
    """Refuse impossible combinations before any work (one line each)."""
    if cfg.precision not in ("fp32", "fp16", "int8"):
        raise InputError("precision", "fp32, fp16 or int8", repr(cfg.precision))
    if cfg.precision == "int8" and not cfg.calib:
        raise InputError("--int8", "--calib DIR|VIDEO|GLOB (calibration frames)", "none")
    if cfg.precision != "int8" and cfg.calib:
        raise InputError("--calib", "--int8 as well", f"precision {cfg.precision}")
    if cfg.max_miou_drop is not None and cfg.eval_labels is None:
        raise InputError("--max-miou-drop", "--eval-images DIR --eval-labels DIR",
                         "no labels to measure mIoU")
    if cfg.eval_labels is not None and not cfg.eval_images:
        raise InputError("--eval-labels", "--eval-images DIR as well", "labels only")
    if cfg.engine:
        from segedge.export.tensorrt.build import tensorrt_available

        ok, why = tensorrt_available()
        if not ok:
            raise BackendUnavailableError(f"--engine: expected TensorRT and a CUDA GPU, got {why}")


def is_instance_model(name: str) -> bool:
    """Zoo entries with task "instance" (Mask R-CNN) take the instance pipeline."""
    from segedge.export.models import registry
    from segedge.export.models.user_model import is_user_ref

    return not is_user_ref(name) and name.strip().lower().replace("-", "_") in registry.names() \
        and registry.get(name).task == "instance"


def export(cfg: ExportConfig, log: Log = _stderr) -> dict[str, Any]:
    """Run the whole export; returns the report (also written beside the artifact)."""
    if is_instance_model(cfg.model):
        from segedge.export.tasks.instance import InstanceOptions, export_instance

        return export_instance(cfg, log, InstanceOptions(
            max_detections=cfg.max_detections, box_score_threshold=cfg.box_score_threshold,
            mask_threshold=cfg.mask_threshold))
    start = time.perf_counter()
    check_precision_options(cfg)
    res = resolve(cfg)
    out = output_path(cfg, res.name)
    check_size(res, cfg)
    reference = copy.deepcopy(res.model).eval()  # parity compares against the untouched net
    rewrites = apply_rewrites(res.model)
    uint8 = cfg.input_format == "uint8"
    h, w = res.size
    float_example = torch.zeros(cfg.batch, 3, h, w)
    upsample = dry_run(res, float_example)
    baking = Baking(cfg.input_format, cfg.input_color, res.model_color, res.mean, res.std,
                    upsample)
    wrapper = DeployWrapper(res.model, baking).eval()
    example = torch.randint(0, 256, (cfg.batch, h, w, 3), dtype=torch.uint8) if uint8 else \
        torch.randn(cfg.batch, 3, h, w)
    prefer = "dynamo" if cfg.exporter in ("auto", "dynamo") else "torchscript"
    notes = list(res.notes)
    with tempfile.TemporaryDirectory(prefix=".segedge-", dir=out.resolve().parent) as tmpdir:
        raw = Path(tmpdir) / "raw.onnx"
        exported = export_onnx(wrapper, example, raw, dynamic=cfg.dynamic, layout_nhwc=uint8,
                               opset=cfg.opset, prefer=prefer)
        if exported.fallback_reason:
            notes.append(f"fell back to TorchScript exporter ({exported.fallback_reason})")
        model = onnx.load(str(raw))
        onnx_tools.rename_dynamic_dims(model, dynamic_axes_for(uint8, cfg.dynamic))
        simplify_error = None
        if cfg.simplify:
            model, simplify_error = onnx_tools.simplify(model)
            if simplify_error:
                notes.append(f"simplification skipped: {simplify_error}")
        opset = onnx_tools.opset_of(model)
        meta = build_metadata(res, cfg, exported.exporter, opset)
        onnx_tools.set_metadata(model, meta)
        model = onnx_tools.check(model)
        full = Path(tmpdir) / "full.onnx"
        onnx.save(model, str(full))
        parity = None
        if cfg.verify:
            frames = load_frames(cfg.verify_images, cfg.verify_count, res.size)
            parity = check_parity(reference, full, meta, frames.frames, frames.source,
                                  res.model_color)
        onnx_tools.prune_outputs(model, cfg.output_names)
        model = onnx_tools.check(model)
        final_tmp = Path(tmpdir) / "final.onnx"
        onnx.save(model, str(final_tmp))
        _same_outputs(full, final_tmp, meta)
        lowered = None
        fp32_ok = parity is None or parity.argmax_agreement >= cfg.min_agreement
        if cfg.precision != "fp32" and fp32_ok:  # lowering starts from a verified FP32 graph
            lowered = _lower(cfg, final_tmp, meta, Path(tmpdir), out, res.size)
            final_tmp, meta = lowered.path, lowered.meta
            model = onnx.load(str(final_tmp))
            opset = meta.opset or opset
        trt = lint_tensorrt(model)
        report: dict[str, Any] = {
            "artifact": str(out), "model": res.name, "family": res.family,
            "precision": meta.precision, "exporter": exported.exporter, "opset": opset,
            "export_seconds": round(exported.seconds, 2), "simplified": cfg.simplify and not
            simplify_error, "rewrites": rewrites, "weights": res.weights,
            "inputs": {meta.input.name: value_shape(model.graph.input[0])},
            "outputs": {o.name: value_shape(o) for o in model.graph.output},
            "parity": parity.to_dict() if parity else None,
            "gate": {"min_argmax_agreement": cfg.min_agreement, "enforced": cfg.verify},
            "tensorrt": trt, "metadata": dataclasses.asdict(meta), "notes": notes,
        }
        if lowered is not None:
            report["precision_report"] = lowered.section
            if lowered.failure:
                failed = write_failed_report(out, report)
                raise VerificationError(f"{lowered.failure}; no artifact written "
                                        f"(details: {failed})")
        if parity and parity.argmax_agreement < cfg.min_agreement:
            failed = write_failed_report(out, report)
            raise VerificationError(
                f"parity gate: expected argmax agreement >= {cfg.min_agreement}% against PyTorch, "
                f"got {parity.argmax_agreement:.3f}% on {parity.images} frames; no artifact "
                f"written (details: {failed}; --no-verify to skip)"
            )
        publish(final_tmp, out, report)
    try:
        report["engine"] = _engine(cfg, out, meta, res.size)
    except SegedgeError as err:  # the ONNX stands; say in its report why there is no plan
        report["engine"] = {"plan": None, "error": str(err)}
        write_json_atomic(report_path(out), report)
        raise
    report["total_seconds"] = round(time.perf_counter() - start, 2)
    write_json_atomic(report_path(out), report)
    if not cfg.quiet:
        log("\n".join([format_summary(report), *precision_lines(report)]))
    return report


def _lower(cfg: ExportConfig, fp32: Path, meta: ArtifactMetadata, workdir: Path, out: Path,
           size: tuple[int, int]) -> Lowered:
    from segedge.export.precision import ladder as precision

    if cfg.precision == "fp16":
        return precision.lower_fp16(cfg, fp32, meta, workdir, size)
    return precision.lower_int8(cfg, fp32, meta, workdir, out)


def precision_lines(report: dict[str, Any]) -> list[str]:
    """Terminal lines for the precision check and the engine (or why there is none)."""
    lines = []
    sec = report.get("precision_report")
    if sec:
        name = sec["precision"]
        line = (f"{name} vs fp32 on {sec['frames']} frames: argmax agreement "
                f"{sec['argmax_agreement']:.3f}%")
        if "miou" in sec:
            m = sec["miou"]
            line += f", mIoU {m['fp32']:.2f} -> {m[name]:.2f} ({-m['drop']:+.2f} points)"
        lat = sec["cpu_latency_ms"]
        line += f"; CPU {lat['fp32']:.1f} -> {lat[name]:.1f} ms"
        lines.append(line)
        if sec.get("kept_fp32") and name == "int8":
            lines.append(f"kept in fp32 to meet the budget ({sec['budget']['rule']}): "
                         + ", ".join(sec["kept_fp32"]))
    eng = report.get("engine") or {}
    if eng.get("plan"):
        lines.append(f"wrote TensorRT engine {eng['plan']} ({eng['precision']}"
                     f"{', reused' if eng.get('reused') else ''})")
    elif eng.get("reason"):
        lines.append(f"no TensorRT engine built: {eng['reason']}")
    return lines


def _engine(cfg: ExportConfig, out: Path, meta: ArtifactMetadata, size: tuple[int, int]
            ) -> dict[str, Any] | None:
    """Build the plan + sidecar beside the ONNX when asked or implied (fp16/int8)."""
    if cfg.engine is False or (cfg.engine is None and cfg.precision == "fp32"):
        return None
    from segedge.export.tensorrt.build import EngineConfig, build_engine, tensorrt_available

    ok, why = tensorrt_available()
    if not ok:  # only reachable when implied: an explicit --engine was refused up front
        return {"plan": None, "reason": f"{why}; the {cfg.precision} ONNX is ready for TensorRT "
                                        "on the target (segexport --engine there)"}
    h, w = size
    stride = max(1, meta.input.stride)
    dyn = meta.input.size is None
    low = (max(stride, h // 2 // stride * stride), max(stride, w // 2 // stride * stride))
    built = build_engine(out, out.with_suffix(".plan"), EngineConfig(
        min_hw=low if dyn else None, opt_hw=(h, w) if dyn else None,
        max_hw=(h * 2, w * 2) if dyn else None,
        workspace=cfg.workspace_mib * (1 << 20) if cfg.workspace_mib else None,
        timing_cache=cfg.timing_cache, dla_core=cfg.dla_core), meta)
    return {"plan": str(built.plan), "precision": built.sidecar.precision,
            "reused": built.reused, "warnings": list(built.warnings),
            "strongly_typed": built.sidecar.strongly_typed}


def value_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _same_outputs(full: Path, pruned: Path, meta: ArtifactMetadata) -> None:
    """Pruning is dead-code removal only; prove it on one input."""
    a, b = session(full), session(pruned)
    shape = [d if isinstance(d, int) and d > 0 else s for d, s in zip(
        a.get_inputs()[0].shape, _probe_shape(meta), strict=True)]
    dtype = np.uint8 if meta.input.format == "uint8" else np.float32
    x = (np.random.default_rng(0).random(shape) * 255).astype(dtype)
    names = [o.name for o in b.get_outputs()]
    got = b.run(names, {meta.input.name: x})
    want = a.run(names, {meta.input.name: x})
    for name, g, w_ in zip(names, got, want, strict=True):
        if not np.array_equal(g, w_):
            raise VerificationError(f"output {name}: pruned graph differs from the verified one")


def _probe_shape(meta: ArtifactMetadata) -> list[int]:
    h, w = meta.input.size or (max(64, meta.input.stride * 2),) * 2
    return [1, h, w, 3] if meta.input.layout == "NHWC" else [1, 3, h, w]
