"""The one export pipeline, for every task and precision.

resolve -> task.prepare (wrap, outputs) -> torch.onnx.export -> task.finish_graph
-> metadata -> check -> task.verify (parity gate) -> task.publishable ->
precision mode lowering -> TensorRT lint -> publish -> optional engine.

What differs between semantic and instance models lives in export/tasks/,
what differs between fp32 / fp16 / int8 in export/precision/modes/; this file
names neither.  Every output is checked for writability before the model is
built; everything is written in a work folder beside the output and only
renamed into place once it checked and verified (its report first), so a
failed or interrupted export (SIGTERM included, also one whose exception a
finalizer or a library swallowed: runtime/interrupts.py) never leaves a file
that looks complete, and work folders of a SIGKILLed export are removed by the next one
(export/workspace.py).  The user's model code runs under `user_code`: its
sys.exit() or self-raised KeyboardInterrupt is one error line, never exit 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import torch

from segedge.export.config import ExportConfig
from segedge.export.models import sources
from segedge.export.models.resolve import resolve
from segedge.export.models.user_model import user_code
from segedge.export.onnx import tools as onnx_tools
from segedge.export.onnx.convert import export_onnx
from segedge.export.precision.modes import LowerRequest, PrecisionMode
from segedge.export.report import (
    format_summary,
    publish,
    report_path,
    write_failed_report,
    write_report,
)
from segedge.export.tasks.base import ExportTask, task_for
from segedge.export.workspace import check_outputs, sweep_stale, work_dir, writing
from segedge.runtime.errors import (
    BackendUnavailableError,
    SegedgeError,
    VerificationError,
)
from segedge.runtime.interrupts import KeptSignals
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.precisions import GRAPH_HINT, PrecisionSpec, for_hint

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    """The default log: the summary goes to stderr, stdout stays free for data."""
    print(msg, file=sys.stderr)


def model_name(cfg: ExportConfig) -> str:
    """The name the artifact is called after, known before the model is built."""
    return sources.model_name(cfg.model)  # zoo entry, file.py:Class or library model


def output_path(cfg: ExportConfig, name: str) -> Path:
    """--output, else ./<model><precision suffix>.onnx; checked writable (with its reports)."""
    path = cfg.output or Path(f"{name.lower()}{cfg.precision.spec.suffix}.onnx")
    check_outputs(cfg, path)
    return path


def value_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def lint_section(model: onnx.ModelProto, task: ExportTask[Any]) -> dict[str, Any]:
    """The report's TensorRT section: lint findings (+ what the task adds)."""
    from segedge.export.tensorrt import lint as trt_lint

    table = trt_lint.load_table()
    findings = trt_lint.lint(model, table)
    return {"table_version": table.tensorrt_version, "source": table.source,
            "unsupported": [f.to_dict() if hasattr(f, "to_dict") else dataclasses.asdict(f)
                            for f in findings],
            **task.tensorrt_extra(model, table, findings)}


def wants_engine(cfg: ExportConfig, mode: PrecisionMode) -> bool:
    """--engine / --no-engine, else what the precision mode implies."""
    return cfg.engine.build if cfg.engine.build is not None else mode.implies_engine


def require_engine_backend(cfg: ExportConfig) -> None:
    """An explicit --engine needs TensorRT and a GPU here: refuse before any work."""
    if not cfg.engine.build:
        return
    from segedge.export.tensorrt.build import tensorrt_available

    ok, why = tensorrt_available()
    if not ok:
        raise BackendUnavailableError(f"--engine: expected TensorRT and a CUDA GPU, got {why}")


def export(cfg: ExportConfig, log: Log = stderr_log) -> dict[str, Any]:
    """Run the whole export; returns the report (also written beside the artifact)."""
    start = time.perf_counter()
    task = task_for(cfg)
    task.check(cfg)
    mode = cfg.precision.spec
    require_engine_backend(cfg)
    out = output_path(cfg, model_name(cfg))  # every output writable, before any work
    swept = sweep_stale(out.resolve().parent)  # left by SIGKILLed exports (owner gone)
    notes = [f"removed {len(swept)} work folder(s) left by killed exports: "
             + ", ".join(p.name for p in swept)] if swept else []
    # the user's model code may print ("Training from scratch!!"): stdout stays free for data;
    # a Ctrl-C / SIGTERM that a finalizer or a library swallows still stops it (innermost, so
    # the SIGINT it hands on is user_code's)
    kept = KeptSignals()
    with user_code(cfg.model), contextlib.redirect_stdout(sys.stderr), kept.guard():
        report = _export(cfg, task, mode, out, notes, kept)
    report["total_seconds"] = round(time.perf_counter() - start, 2)
    write_report(report_path(out), report, f"{out} stands; its report misses the final "
                                           "timings")
    if not cfg.quiet:
        from segedge.runtime.report import ExportReport

        summary = ExportReport.from_dict(report_path(out), report).precision_lines()
        log("\n".join([format_summary(report, task), *summary]))
    elif report["warnings"]:  # --quiet silences the summary, not what may be wrong
        log("\n".join(f"warning: {w}" for w in report["warnings"]))
    return report


def _export(cfg: ExportConfig, task: ExportTask[Any], mode: PrecisionMode, out: Path,
            notes: list[str], kept: KeptSignals) -> dict[str, Any]:
    """resolve ... publish ... engine; `notes` start the report's notes; a signal ``kept``
    recorded raises before anything is written beside the output."""
    if task.seed is not None:
        torch.manual_seed(task.seed)
    res = resolve(cfg)
    prep = task.prepare(res, cfg)
    notes = [*notes, *prep.notes]
    warnings: list[str] = []
    # a write that fails in the work folder (disk full) is one line naming it, exit 4
    with work_dir(out.resolve().parent) as work, \
            writing(work, f"no artifact written at {out}"):
        raw = work / "raw.onnx"
        exported = export_onnx(prep.wrapper, prep.example, raw, prep.spec)
        if exported.note:  # which exporter wrote it, and the first line of why the other failed
            notes.append(exported.note)
        finished = task.finish_graph(onnx.load(str(raw)), cfg, prep)
        notes += finished.notes
        opset = onnx_tools.opset_of(finished.model)
        if opset != cfg.opset and not any("opset" in n for n in notes):
            notes.append(f"opset {cfg.opset} asked, {opset} written by the {exported.exporter} "
                         "exporter")
        meta = task.metadata(res, cfg, prep, exported.exporter, opset)
        meta = meta.with_changes(input=dataclasses.replace(  # the training pipeline's resize
            meta.input, interpolation=cfg.interpolation))
        onnx_tools.set_metadata(finished.model, meta)
        model = onnx_tools.check(finished.model)
        verified = work / "verified.onnx"
        onnx.save(model, str(verified))
        parity = task.verify(prep, verified, meta, cfg) if cfg.verify.enabled else None
        gate_failure = None
        if parity is not None:
            notes += task.parity_notes(parity)
            warnings += task.parity_warnings(parity)
            gate_failure = task.gate_failure(parity, cfg)
        model, final_tmp = task.publishable(model, verified, work, meta, cfg)
        lowered = None
        if gate_failure is None:  # lowering starts from a verified FP32 graph
            lowered = mode.lower(LowerRequest(cfg, final_tmp, meta, work, out, prep.size))
        if lowered is not None:
            final_tmp, meta = lowered.path, lowered.meta
            model = onnx.load(str(final_tmp))
            opset = meta.opset or opset
        report: dict[str, Any] = {
            "artifact": str(out), "model": res.name, "family": res.family, "task": task.name,
            "precision": meta.precision, "exporter": exported.exporter, "opset": opset,
            "export_seconds": round(exported.seconds, 2), "simplified": finished.simplified,
            "rewrites": [*prep.rewrites, *exported.rewrites, *finished.rewrites],
            "weights": res.weights,
            "model_args": {k: v for k, v in cfg.model_args},
            **task.report_fields(cfg),
            "inputs": {meta.input.name: value_shape(model.graph.input[0])},
            "outputs": {o.name: value_shape(o) for o in model.graph.output},
            "parity": parity.to_dict() if parity is not None else None,
            "gate": task.gate(cfg), "tensorrt": lint_section(model, task),
            "metadata": dataclasses.asdict(meta), "notes": notes, "warnings": warnings,
        }
        failed = gate_failure is not None or (lowered is not None and bool(lowered.failure))
        if cfg.verify.bf16 and not failed:  # on by default: segrun may use the fastest
            # verified precision (a graph that failed its own gate is never published)
            report.update(reduced_precision_sections(cfg, task.name, final_tmp, meta,
                                                     prep.size))
        kept.raise_pending()  # interrupted: no report, no artifact (even if it was swallowed)
        if lowered is not None:
            report["precision_report"] = lowered.section
            if lowered.failure:
                failed = write_failed_report(out, report)
                raise VerificationError(f"{lowered.failure}; no artifact written "
                                        f"(details: {failed})")
        if gate_failure is not None:
            failed = write_failed_report(out, report)
            raise VerificationError(f"{gate_failure}; no artifact written (details: {failed}; "
                                    "--no-verify to skip)")
        publish(final_tmp, out, report)
    try:
        report["engine"] = engine_section(cfg, mode, out, meta, prep.size)
    except SegedgeError as err:  # the ONNX stands; say in its report why there is no plan
        report["engine"] = {"plan": None, "error": str(err)}
        write_report(report_path(out), report, f"{out} stands; its report misses why no "
                                               "engine was built")
        raise
    return report


def reduced_precision_sections(cfg: ExportConfig, task: str, artifact: Path,
                               meta: ArtifactMetadata, size: tuple[int, int]
                               ) -> dict[str, dict[str, Any]]:
    """Each CPU challenger's reduced inference precisions (OpenVINO: bf16, and f16 where the CPU
    runs it natively) gated against the artifact at its own precision (FP32, or the FP16/INT8
    graph) on the reference runtime, on the verification frames, as ``{backend: {hint:
    section}}`` in the report (runtime.report reads it; the auto chooser times what passed).
    The verification frames are read and their reference labels computed once for all."""
    from segedge.runtime.backends.auto_probe import challengers
    from segedge.runtime.backends.base import descriptor

    out: dict[str, dict[str, Any]] = {}
    reference: list[Any] = []
    for name in challengers():
        entry = descriptor(name)
        reduced = [h for h in entry.precisions if h != GRAPH_HINT]
        native = entry.native_precisions() if entry.available()[0] and reduced else ()
        sections = {h: hint_section(cfg, task, artifact, meta, size, name, h, reference)
                    for h in reduced if _always_reported(for_hint(h)) or h in native}
        if sections:
            out[name] = sections
    return out


def _always_reported(spec: PrecisionSpec | None) -> bool:
    """bf16 is gated, or said why not, in every report (runtime.precisions)."""
    return spec is not None and spec.always_reported


def _cpu_features(hint: str) -> str:
    """What a CPU needs to run ``hint`` natively, for the reason a gate was not checked."""
    spec = for_hint(hint)
    return spec.cpu_features if spec is not None and spec.cpu_features else "kernels"


def hint_section(cfg: ExportConfig, task: str, artifact: Path, meta: ArtifactMetadata,
                 size: tuple[int, int], backend: str, hint: str,
                 reference: list[Any] | None = None,
                 min_agreement: float | None = None) -> dict[str, Any]:
    """``backend`` at inference precision ``hint`` vs the reference CPU backend (ONNX Runtime)
    running the artifact at its own precision, on the verification frames; ``reference``
    caches the prepared frames and their reference label maps between hints;
    ``min_agreement`` is the gate (default the config's FP16_MIN_AGREEMENT).  Not checked
    (and said why) where the backend or the CPU cannot run ``hint``."""
    from segedge.runtime.tasks import get_task as runtime_task

    if not runtime_task(task).label_maps:  # agreement of label maps: the task says if it has them
        return {"checked": False, "reason": f"{hint} gate is for label maps, not task {task!r}"}
    from segedge.runtime.backends.auto_cache import cpu_candidates
    from segedge.runtime.backends.base import BackendOptions, descriptor

    entry = descriptor(backend)
    ok, why = entry.available()
    if not ok:
        return {"checked": False, "reason": why}
    if hint not in entry.native_precisions():
        return {"checked": False, "reason": f"this CPU has no native {hint} "
                                            f"({_cpu_features(hint)})"}
    from segedge.export.config import FP16_MIN_AGREEMENT
    from segedge.export.evaluation.evaluate import labels_from_outputs
    from segedge.export.verify.compare import agreement

    threshold = FP16_MIN_AGREEMENT if min_agreement is None else min_agreement
    ref_name = cpu_candidates()[0]
    cache: list[Any] = [] if reference is None else reference
    if not cache:  # frames read and reference labels computed once for every hint
        cache += _reference_labels(cfg, artifact, meta, size, ref_name)
    tensors, labels = cache
    reduced = entry.open(artifact, BackendOptions(precision_hint=hint))
    try:
        got = [labels_from_outputs(reduced.infer(t), meta) for t in tensors]
    finally:
        reduced.close()
    share = round(agreement(got, labels), 3)
    return {"checked": True, "runtime": f"{backend} CPU {hint} vs {ref_name} "
                                        f"{meta.precision or 'fp32'}",
            "frames": len(tensors), "argmax_agreement": share,
            "gate": {"min_argmax_agreement": threshold, "passed": share >= threshold}}


def _reference_labels(cfg: ExportConfig, artifact: Path, meta: ArtifactMetadata,
                      size: tuple[int, int], ref_name: str) -> tuple[list[Any], list[Any]]:
    """The verification frames prepared for the graph and their label maps from the artifact
    as written (its own precision) on the reference CPU backend: what every reduced-precision
    hint is compared against."""
    from segedge.export.evaluation.evaluate import labels_from_outputs
    from segedge.export.frames import load_frames
    from segedge.runtime.backends.base import BackendOptions, descriptor
    from segedge.runtime.preprocess import prepare

    frames = load_frames(cfg.verify.images, cfg.verify.count, size).frames
    tensors = [prepare([image], meta.input)[0] for image in frames]  # backends pad a batch
    fp32 = descriptor(ref_name).open(artifact, BackendOptions(provider="cpu"))
    try:
        labels = [labels_from_outputs(fp32.infer(t), meta) for t in tensors]
    finally:
        fp32.close()
    return tensors, labels


def engine_section(cfg: ExportConfig, mode: PrecisionMode, out: Path, meta: ArtifactMetadata,
                 size: tuple[int, int]) -> dict[str, Any] | None:
    """Build the plan + sidecar beside the ONNX when asked or implied by the precision."""
    if not wants_engine(cfg, mode):
        return None
    from segedge.export.tensorrt.build import EngineConfig, build_engine, tensorrt_available

    ok, why = tensorrt_available()
    if not ok:  # only reachable when implied: an explicit --engine was refused up front
        return {"plan": None, "reason": f"{why}; the {mode.name} ONNX is ready for TensorRT "
                                        "on the target (segexport --engine there)"}
    from segedge.export.tensorrt.build import quantization_refusal

    refusal = quantization_refusal(out, meta)  # e.g. --int8-target cpu: U8 Q/DQ
    if refusal is not None:
        return {"plan": None, "reason": refusal}
    dyn = meta.input.size is None
    low, opt, high = meta.input.default_profile(*size)
    opts = cfg.engine
    built = build_engine(out, out.with_suffix(".plan"), EngineConfig(
        min_hw=low if dyn else None, opt_hw=opt if dyn else None, max_hw=high if dyn else None,
        workspace=opts.workspace_mib * (1 << 20) if opts.workspace_mib else None,
        timing_cache=opts.timing_cache, dla_core=opts.dla_core,
        **({} if opts.profiles is None else {"dynamic_profiles": opts.profiles})), meta)
    return {"plan": str(built.plan), "precision": built.sidecar.precision,
            "reused": built.reused, "warnings": list(built.warnings),
            "strongly_typed": built.sidecar.strongly_typed}
