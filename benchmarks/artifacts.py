"""Exported artifacts for the cells, made once per configuration and cached on disk.

Exports are the slow part of a run (seconds to minutes each), so they are
keyed by everything that changes the graph and kept in the work folder; a
cached artifact keeps the export time its report recorded.  Random weights
are seeded, so the segedge artifact and the plain-loop artifact of a model
hold the same network.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segedge.export.config import PrecisionOptions
from segedge.export.precision import modes
from segedge.runtime.errors import SegedgeError
from segedge.runtime.report import ExportReport, read_report, report_path

Log = Callable[[str], None]
WEIGHT_SEED = 0
INT8_CALIB_FRAMES = 32
INT8_HELD_FRAMES = 8


@dataclass(frozen=True)
class ArtifactRequest:
    model: str  # zoo name
    precision: str
    imgsz: tuple[int, int]
    batch: int = 1
    emit: str = "labels"  # labels: segedge's default (argmax baked in); logits: plain loop
    input_format: str = "uint8"  # uint8 NHWC (normalise baked in) | float NCHW (plain loop)
    int8_target: str = "cpu"  # cpu (ORT U8S8) | tensorrt (S8S8 Q/DQ)
    engine: bool = False  # also build a native TensorRT plan
    weights: str = "auto"
    checkpoint: str | None = None
    num_classes: int | None = None
    calib: str | None = None  # int8 calibration frames (folder, glob or video)

    def stem(self) -> str:
        h, w = self.imgsz
        parts = [self.model, f"{h}x{w}", f"b{self.batch}", self.emit, self.input_format,
                 self.precision]
        if modes.get(self.precision).calibrated:  # calibrated graphs differ by Q/DQ flavour
            parts.append(self.int8_target)
        if self.engine:
            parts.append("engine")
        extra = f"{self.weights}|{self.checkpoint}|{self.num_classes}|{self.calib}"
        parts.append(hashlib.sha1(extra.encode()).hexdigest()[:8])
        return "_".join(parts)

    def precision_options(self, path: Path) -> PrecisionOptions:
        """The export's precision options for the artifact at `path`: the mode's gate open
        (the benchmark measures accuracy instead of gating on it), calibration settings
        (frames, held-out count, cache beside the artifact) for calibrated modes."""
        mode = modes.get(self.precision)
        calib: dict[str, Any] = {}
        if mode.calibrated:
            calib = {"calib": self.calib, "calib_count": INT8_CALIB_FRAMES,
                     "eval_count": INT8_HELD_FRAMES,
                     "calib_cache": path.with_suffix(".calib.json")}
        opts = PrecisionOptions(mode=self.precision, int8_target=self.int8_target,
                                **calib)  # type: ignore[arg-type]
        return mode.ungated(opts)


@dataclass(frozen=True)
class Artifact:
    path: Path
    size_bytes: int
    export_s: float | None
    cached: bool
    weights: str
    agreement_vs_fp32: float | None = None  # argmax agreement of fp16/int8 against fp32
    plan: Path | None = None


class ArtifactError(SegedgeError):
    """An export a cell needed failed (the cell is recorded as failed with this message)."""


class ArtifactStore:
    """Exports on demand into ``workdir``; failures are remembered so they are not retried."""

    def __init__(self, workdir: Path, log: Log | None = None, fresh: bool = False) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = log or (lambda _msg: None)
        self.fresh = fresh
        self._done: dict[ArtifactRequest, Artifact | str] = {}

    def get(self, req: ArtifactRequest) -> Artifact:
        if req not in self._done:
            try:
                self._done[req] = self._make(req)
            except SegedgeError as err:
                self._done[req] = f"export failed: {err}"
            except Exception as err:  # noqa: BLE001 - torch/onnx errors: one line for the table
                first = (str(err).strip().splitlines() or [""])[0][:200]
                self._done[req] = f"export failed: {type(err).__name__}: {first}"
        got = self._done[req]
        if isinstance(got, str):
            raise ArtifactError(got)
        return got

    def _make(self, req: ArtifactRequest) -> Artifact:
        path = self.workdir / f"{req.stem()}.onnx"
        found = read_report(path) if not self.fresh and path.is_file() else None
        if found is not None and found.ok and (not req.engine or _plan(found)):
            return _artifact(path, found, cached=True)
        self.log(f"exporting {path.name}")
        report = export(req, path)
        return _artifact(path, ExportReport.from_dict(report_path(path), report), cached=False)


def export(req: ArtifactRequest, path: Path) -> dict[str, Any]:
    import torch

    from segedge.export.config import EngineOptions, ExportConfig, VerifyOptions
    from segedge.export.pipeline import export as run_export

    cfg = ExportConfig(
        model=req.model, output=path, weights=req.weights,  # type: ignore[arg-type]
        checkpoint=Path(req.checkpoint) if req.checkpoint else None,
        num_classes=req.num_classes, imgsz=req.imgsz, batch=req.batch,
        input_format=req.input_format, emit=req.emit,  # type: ignore[arg-type]
        quiet=True, verify=VerifyOptions(enabled=False),
        precision=req.precision_options(path),
        engine=EngineOptions(build=req.engine or None))
    torch.manual_seed(WEIGHT_SEED)
    start = time.perf_counter()
    report = run_export(cfg, log=lambda _m: None)
    report.setdefault("total_seconds", round(time.perf_counter() - start, 2))
    return report


def _plan(report: ExportReport) -> Path | None:
    return report.plan if report.plan is not None and report.plan.is_file() else None


def _artifact(path: Path, report: ExportReport, cached: bool) -> Artifact:
    return Artifact(path=path, size_bytes=path.stat().st_size,
                    export_s=report.total_seconds, cached=cached, weights=report.weights,
                    agreement_vs_fp32=report.agreement_vs_fp32, plan=_plan(report))
