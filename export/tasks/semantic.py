"""The semantic task: a network returning NxCxHxW logits becomes a label-map ONNX.

What it owns: the stride check and the eager dry run, the deploy wrapper with
the baked pre/post-processing (logits, labels, confidence), the dynamo-first
exporter order, dynamic-dim names and onnxslim, the metadata (output kind and
names), the argmax-agreement parity gate, and pruning the graph to the outputs
asked for (proved to change nothing).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import torch
from torch import nn

from segedge.export.config import ExportConfig
from segedge.export.frames import FrameSet, load_frames, load_labelled_frames
from segedge.export.models.resolve import Resolved
from segedge.export.onnx import tools as onnx_tools
from segedge.export.onnx.convert import INPUT_NAME, ExportSpec, dynamic_axes_for, exporter_order
from segedge.export.onnx.rewrites import apply_rewrites
from segedge.export.onnx.wrap import OUTPUT_NAMES, Baking, DeployWrapper
from segedge.export.tasks.base import ExportTask, Finished, Prepared, versions
from segedge.export.verify.parity import Parity, check_parity
from segedge.export.verify.torch_ref import pick_logits
from segedge.runtime.errors import InputError, ShapeError, VerificationError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec, OutputSpec

_EMITTED = {"logits": ("logits",), "labels": ("labels",), "both": ("logits", "labels")}


def output_names(cfg: ExportConfig) -> list[str]:
    """The graph outputs the user asked for (--emit, --confidence)."""
    return [*_EMITTED[cfg.emit], *(["confidence"] if cfg.confidence else [])]


def check_size(res: Resolved) -> None:
    """The input size must be a multiple of the network's stride (named in the error)."""
    h, w = res.size
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
            raw = res.model(example)
    except Exception as err:  # noqa: BLE001 - user models raise anything at odd sizes
        hint = f" (it needs multiples of {res.stride})" if res.stride > 1 else ""
        raise ShapeError(
            f"input size {res.size[0]}x{res.size[1]}: {res.name} failed in PyTorch{hint}: "
            f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        ) from None
    out = pick_logits(raw)
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        raise InputError(res.name, "a segmentation network returning NxCxHxW logits",
                         f"output {type(out).__name__} {getattr(out, 'shape', '')}")
    if out.shape[1] != len(res.classes):
        raise InputError(f"{res.name} output channels", f"{len(res.classes)} (one per class)",
                         out.shape[1])
    return tuple(out.shape[-2:]) != tuple(example.shape[-2:])


class SemanticTask(ExportTask[Parity]):
    name: ClassVar[str] = "semantic"

    def check(self, cfg: ExportConfig) -> None:
        """Every option applies to label-map networks; the stride is checked in prepare."""

    def prepare(self, res: Resolved, cfg: ExportConfig) -> Prepared:
        check_size(res)
        reference = nn.Module.eval(copy.deepcopy(res.model))  # parity: the untouched net
        rewrites = apply_rewrites(res.model)
        uint8 = cfg.input_format == "uint8"
        h, w = res.size
        upsample = dry_run(res, torch.zeros(cfg.batch, 3, h, w))
        baking = Baking(cfg.input_format, cfg.input_color, res.model_color, res.mean, res.std,
                        upsample)
        example = torch.randint(0, 256, (cfg.batch, h, w, 3), dtype=torch.uint8) if uint8 \
            else torch.randn(cfg.batch, 3, h, w)
        out_axes: dict[str, dict[int, str]] = {}
        if cfg.dynamic:
            maps = {0: "batch", 1: "height", 2: "width"}
            out_axes = {"logits": {0: "batch", 2: "height", 3: "width"}, "labels": maps,
                        "confidence": maps}
        spec = ExportSpec(output_names=OUTPUT_NAMES, input_axes=dynamic_axes_for(uint8,
                                                                                 cfg.dynamic),
                          output_axes=out_axes, opset=cfg.opset,
                          exporters=exporter_order(cfg.exporter))
        return Prepared(wrapper=DeployWrapper(res.model, baking).eval(), example=example,
                        reference=reference, spec=spec, size=res.size, rewrites=rewrites,
                        notes=list(res.notes))

    def finish_graph(self, model: onnx.ModelProto, cfg: ExportConfig, prep: Prepared
                     ) -> Finished:
        onnx_tools.rename_dynamic_dims(model, prep.spec.input_axes)
        if not cfg.simplify:
            return Finished(model, simplified=False)
        model, error = onnx_tools.simplify(model)
        return Finished(model, simplified=error is None,
                        notes=[f"simplification skipped: {error}"] if error else [])

    def metadata(self, res: Resolved, cfg: ExportConfig, prep: Prepared, exporter: str,
                 opset: int) -> ArtifactMetadata:
        uint8 = cfg.input_format == "uint8"
        names = output_names(cfg)
        return ArtifactMetadata(
            model=res.name, family=res.family, classes=res.classes, palette=res.palette,
            task="semantic",
            input=InputSpec(
                name=INPUT_NAME, format=cfg.input_format, layout="NHWC" if uint8 else "NCHW",
                color_order=cfg.input_color if uint8 else res.model_color,
                mean=res.mean, std=res.std, size=None if cfg.dynamic else res.size,
                batch=None if cfg.dynamic else cfg.batch, stride=res.stride,
                dynamic_axes=tuple(prep.spec.input_axes.values()),
            ),
            output=OutputSpec(kind=cfg.emit,
                              logits="logits" if "logits" in names else None,
                              labels="labels" if "labels" in names else None,
                              confidence="confidence" if "confidence" in names else None),
            precision="fp32", opset=opset, exporter=exporter,
            versions=versions(), extra=_extra(res, cfg),
        )

    def verify(self, prep: Prepared, path: Path, meta: ArtifactMetadata, cfg: ExportConfig
               ) -> Parity:
        frames = prep.frames or verification_frames(cfg, prep.size)
        # PyTorch is fed in the colour order it was trained on (recorded in the metadata)
        return check_parity(prep.reference, path, meta, frames.frames, frames.source,
                            str(meta.extra["model_color"]),
                            truths=list(frames.truths) if frames.truths is not None else None,
                            labels_source=frames.labels_source,
                            ignore_index=cfg.precision.ignore_index)

    def parity_warnings(self, parity: Parity) -> list[str]:
        return list(parity.warnings)

    def gate_failure(self, parity: Parity, cfg: ExportConfig) -> str | None:
        gate = cfg.verify.min_agreement
        if parity.failure is not None:  # --verify-labels say the preprocessing is wrong
            return parity.failure
        if parity.argmax_agreement >= gate:
            return None
        return (f"parity gate: expected argmax agreement >= {gate}% against PyTorch, "
                f"got {parity.argmax_agreement:.3f}% on {parity.images} frames")

    def gate(self, cfg: ExportConfig) -> dict[str, Any]:
        return {"min_argmax_agreement": cfg.verify.min_agreement, "enforced": cfg.verify.enabled}

    def parity_line(self, parity: dict[str, Any]) -> str:
        mad = parity.get("max_abs_diff")
        diff = f", max |dlogit| {mad:.2e}" if mad is not None else ""
        return f"argmax agreement {parity['argmax_agreement']:.3f}%{diff}"

    def publishable(self, model: onnx.ModelProto, verified: Path, workdir: Path,
                    meta: ArtifactMetadata, cfg: ExportConfig) -> tuple[onnx.ModelProto, Path]:
        """Prune to the outputs asked for; the verified graph had all three."""
        onnx_tools.prune_outputs(model, output_names(cfg))
        model = onnx_tools.check(model)
        pruned = workdir / "final.onnx"
        onnx.save(model, str(pruned))
        _same_outputs(verified, pruned, meta)
        return model, pruned


def verification_frames(cfg: ExportConfig, size: tuple[int, int]) -> FrameSet:
    """--verify-images (with --verify-labels: their label maps too), else generated scenes."""
    if cfg.verify.labels is not None and cfg.verify.images:
        return load_labelled_frames(cfg.verify.images, cfg.verify.labels, cfg.verify.count)
    return load_frames(cfg.verify.images, cfg.verify.count, size)


def _extra(res: Resolved, cfg: ExportConfig) -> dict[str, Any]:
    """Metadata extras: weights, training colour order, how the normalisation was given,
    and for dynamic graphs the export size (ONNX Runtime's TensorRT provider builds its
    optimisation profile around it)."""
    extra: dict[str, Any] = {"weights": res.weights, "model_color": res.model_color}
    norm = res.normalization
    if norm is not None and (norm.units != "unit" or norm.scale != 1.0):
        extra["normalization"] = norm.to_dict()  # the user's form; mean/std hold the result
    if cfg.dynamic:
        extra["imgsz"] = [int(res.size[0]), int(res.size[1])]
    return extra


def _same_outputs(full: Path, pruned: Path, meta: ArtifactMetadata) -> None:
    """Pruning is dead-code removal only; prove it on one input."""
    a, b = onnx_tools.session(full), onnx_tools.session(pruned)
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
