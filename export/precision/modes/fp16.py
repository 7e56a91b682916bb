"""FP16: the ONNX transform of precision/fp16.py, gated on argmax agreement with FP32.

The lowering is here: convert (keeping the float-only inputs FP32, precision/fp16.py),
check the graph, then compare it with the FP32 graph on the eval frames (with labels
when given, else the parity frames) on every installed runtime (precision/ladder.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segedge.export.precision.modes.base import Lowered, LowerRequest, PrecisionMode

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig, PrecisionOptions
    from segedge.export.evaluation.evaluate import LabelledFrames
    from segedge.runtime.metadata import ArtifactMetadata


class FP16(PrecisionMode):
    name = "fp16"
    flag_help = ("Write an FP16 ONNX, verified against FP32 (>= 99.5% argmax agreement); also "
                 "an engine where TensorRT and a GPU exist.")

    def ungated(self, opts: PrecisionOptions) -> PrecisionOptions:
        return self._open(opts, fp16_min_agreement=0.0)

    def lower(self, req: LowerRequest) -> Lowered:
        """Convert, then gate: every runtime keeps ``fp16_min_agreement`` % with FP32."""
        import onnx

        from segedge.export.onnx import tools as onnx_tools
        from segedge.export.precision import ladder, runtimes
        from segedge.export.precision.fp16 import convert_fp16

        cfg, fp32, meta, opts = req.cfg, req.fp32, req.meta, req.cfg.precision
        result = convert_fp16(onnx.load(str(fp32)))
        new_meta = meta.with_changes(precision=self.name, extra={
            **meta.extra, "fp16": {"fp32_nodes": list(result.fp32_nodes)}})
        model = result.model
        onnx_tools.set_metadata(model, new_meta)
        model = onnx_tools.check(model)
        path = req.workdir / "fp16.onnx"
        onnx.save(model, str(path))
        frames = eval_frames(cfg, meta, req.size)
        labels = ladder.reference_labels(fp32, path, frames, meta)  # run once, read twice
        agree, ref_s, low_s = ladder.compare(labels, frames, meta, opts.ignore_index)
        section = ladder.common_section(fp32, path, frames, meta, self.name, ref_s, low_s)
        found = ladder.per_runtime(fp32, path, frames, meta, opts.ignore_index, self.name,
                                   known={runtimes.reference(): labels})
        rule = f"argmax agreement >= {opts.fp16_min_agreement}%"
        failure = ladder.runtime_failure(
            found, lambda e: e["argmax_agreement"] >= opts.fp16_min_agreement, rule,
            "FP16 gate", len(frames))
        section.update(argmax_agreement=agree, runtimes=found,
                       gate={"min_argmax_agreement": opts.fp16_min_agreement,
                             "runtimes": list(found), "passed": failure is None},
                       kept_fp32=list(result.fp32_nodes), casts=result.casts,
                       clamped_weights=result.clamped_weights,
                       folded_batchnorms=result.folded_batchnorms)
        return Lowered(path, new_meta, section, failure)


def eval_frames(cfg: ExportConfig, meta: ArtifactMetadata, size: tuple[int, int]
                ) -> LabelledFrames:
    """FP16 check frames: the eval images (with labels when given), else the parity frames."""
    from segedge.export.evaluation.evaluate import LabelledFrames
    from segedge.export.frames import load_frames
    from segedge.export.precision import calibration

    opts = cfg.precision
    if opts.eval_images:
        fs, truths = calibration.eval_frames(opts.eval_images, opts.eval_labels, opts.eval_count)
        return LabelledFrames.load(fs.frames, meta.input, fs.source, truths)
    fs = load_frames(cfg.verify.images, max(cfg.verify.count, 8), size)
    return LabelledFrames.load(fs.frames, meta.input, fs.source)
