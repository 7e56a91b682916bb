"""Run a whole benchmark: the matrix of cells, then the end-to-end runs.

Decisions (skip or measure) come from `plan`, artifacts from `artifacts`,
measurements from `measure` in a fresh process each; this module only
walks the plan in order, shows progress and collects records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segedge.benchmarks import e2e, env, isolate
from segedge.benchmarks.artifacts import Artifact, ArtifactError, ArtifactRequest, ArtifactStore
from segedge.benchmarks.cells import Cell, Record, attach_ratios
from segedge.benchmarks.jobs import ModelJob, Needs, SkipCell
from segedge.benchmarks.measure import measure_model
from segedge.benchmarks.plan import ModelPlan, Planner
from segedge.runtime.errors import SegedgeError
from segedge.runtime.precisions import is_reference, reference
from segedge.runtime.progress import progress

Log = Callable[[str], None]


@dataclass(frozen=True)
class SuiteConfig:
    plans: tuple[ModelPlan, ...]
    e2e: tuple[e2e.E2EPlan, ...] = ()
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    frame_source: str | None = None  # video/image the cells are timed on
    workdir: Path = Path.home() / ".cache" / "segedge" / "bench"
    isolated: bool = True
    fresh: bool = False
    settle_s: float = 0.0  # wait up to this long before each measurement for idle CPUs
    settle_budget_s: float = 0.0  # at most this much waiting in the whole run
    min_idle: float = 0.85
    progress: bool = True
    command: str = ""


@dataclass
class SuiteResult:
    records: list[Record]
    e2e: list[dict[str, Any]]
    environment: dict[str, Any]
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "environment": self.environment,
                "records": [r.to_dict() for r in self.records], "e2e": self.e2e}


def weights_kind(plan: ModelPlan) -> str:
    """'random', 'pretrained ...' or 'checkpoint ...' without building the network."""
    if plan.is_artifact:
        return "artifact"
    if plan.checkpoint:
        return f"checkpoint {plan.checkpoint}"
    if plan.weights == "random":
        return "random"
    from segedge.export.models import registry
    from segedge.export.models.weights import choose_weights

    spec = registry.get(plan.model)
    chosen = choose_weights(spec.weights, plan.weights)  # type: ignore[arg-type]
    return "random" if chosen == "random" or spec.weights is None \
        else f"pretrained ({spec.weights})"


class Suite:
    def __init__(self, cfg: SuiteConfig, log: Log | None = None) -> None:
        self.cfg = cfg
        self.log = log or (lambda _m: None)
        self.store = ArtifactStore(cfg.workdir / "artifacts", self.log, cfg.fresh)
        self.planner = Planner()
        self._bar: Any = None
        self._settle_left = cfg.settle_budget_s

    def settle(self) -> float | None:
        """Wait (within the budgets) for a quiet moment; the idle share, or None when off."""
        if self.cfg.settle_s <= 0:
            return None
        idle, waited = env.wait_for_idle(self.cfg.min_idle,
                                         min(self.cfg.settle_s, max(self._settle_left, 1.0)))
        self._settle_left -= max(0.0, waited - env.IDLE_WINDOW_S)
        return idle

    def _tick(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(label[:60])
            self._bar.update(1)

    def run(self) -> SuiteResult:
        start = time.perf_counter()
        environment = env.environment(self.cfg.threads)
        work = [(plan, cell) for plan in self.cfg.plans for cell in plan.cells()]
        total = len(work) + sum(p.steps() for p in self.cfg.e2e)
        records: list[Record] = []
        summaries: list[dict[str, Any]] = []
        with progress(total=total, unit="cell", quiet=not self.cfg.progress) as bar:
            self._bar = bar
            for plan, cell in work:
                bar.set_description_str(cell.label()[:60])
                records.append(self.cell(plan, cell))
                bar.update(1)
            for e2e_plan in self.cfg.e2e:
                try:
                    recs, summary = e2e.run_e2e(e2e_plan, self.store, self.cfg.isolated,
                                                self._tick, self.settle)
                    records.extend(recs)
                    summaries.append(summary)
                except (SegedgeError, isolate.CellFailed, SkipCell) as err:
                    status = "skipped" if isinstance(err, SkipCell) else "failed"
                    rec = e2e.skipped(e2e_plan, str(err))
                    rec.status = status
                    records.append(rec)
            self._bar = None
        attach_ratios(records)
        return SuiteResult(records, summaries,
                           env.finish(environment, time.perf_counter() - start),
                           self.cfg.command)

    def cell(self, plan: ModelPlan, cell: Cell) -> Record:
        decision = self.planner.decide(plan, cell)
        weights = weights_kind(plan)
        if decision.skip or decision.needs is None:
            return Record.for_cell(cell, status="skipped", reason=decision.skip or "",
                                   weights=weights)
        try:
            art = self._artifact(plan, cell, decision.needs)
        except ArtifactError as err:
            return Record.for_cell(cell, status="failed", reason=str(err), weights=weights)
        job = self._job(plan, cell, art, weights, self._reference(plan, cell, decision.needs))
        idle = self.settle()
        try:
            out = isolate.call(measure_model, job, self.cfg.isolated)
        except SkipCell as why:
            return Record.for_cell(cell, status="skipped", reason=str(why), weights=weights)
        except isolate.CellFailed as err:
            return Record.for_cell(cell, status="failed", reason=str(err), weights=weights)
        rec = Record.for_cell(cell, warmup=plan.warmup, threads=self._threads(cell),
                              isolated=self.cfg.isolated, weights=weights, idle_before=idle,
                              artifact=str(art.plan or art.path) if art else None,
                              export_s=art.export_s if art else None,
                              export_cached=art.cached if art else None,
                              agreement_vs_fp32=art.agreement_vs_fp32 if art else None)
        for key, value in out.items():
            setattr(rec, key, value)
        if plan.eval_images and not job.eval_images:
            rec.accuracy_note = "random weights: mIoU would be meaningless"
        return rec

    def _threads(self, cell: Cell) -> int:
        """segedge's thread count; baselines with their own rule (plain-ort: ONNX Runtime's
        default) report what they really used instead (Loaded.threads)."""
        return self.cfg.threads

    def _reference(self, plan: ModelPlan, cell: Cell, needs: Needs) -> str | None:
        """The FP32 labels artifact a Needs.reference row measures its agreement against."""
        if not needs.reference:
            return None
        if plan.is_artifact:
            from segedge.benchmarks.plan import artifact_metadata

            path = Path(plan.model)
            return str(path) if is_reference(artifact_metadata(path).precision) else None
        assert cell.imgsz is not None
        try:
            return str(self.store.get(ArtifactRequest(
                model=plan.model, precision=reference().name, imgsz=cell.imgsz, batch=cell.batch,
                weights=plan.weights, checkpoint=plan.checkpoint,
                num_classes=plan.num_classes)).path)
        except ArtifactError:
            return None

    def _artifact(self, plan: ModelPlan, cell: Cell, needs: Needs) -> Artifact | None:
        if needs.kind == "torch":
            return None
        if plan.is_artifact:
            path = Path(plan.model)
            return Artifact(path=path, size_bytes=path.stat().st_size, export_s=None,
                            cached=True, weights="artifact",
                            plan=path if needs.kind == "plan" else None)
        assert cell.imgsz is not None  # plans resolve sizes before expanding
        return self.store.get(ArtifactRequest(
            model=plan.model, precision=needs.precision, imgsz=cell.imgsz, batch=cell.batch,
            emit=needs.emit, input_format=needs.input_format, int8_target=needs.int8_target,
            engine=needs.kind == "plan", weights=plan.weights, checkpoint=plan.checkpoint,
            num_classes=plan.num_classes, calib=plan.calib))

    def _job(self, plan: ModelPlan, cell: Cell, art: Artifact | None, weights: str,
             reference: str | None = None) -> ModelJob:
        assert cell.imgsz is not None
        labelled = bool(plan.eval_images and plan.eval_labels) and weights != "random"
        artifact = None if art is None else str(art.plan or art.path)
        return ModelJob(
            backend=cell.backend, precision=cell.precision, model=plan.model, artifact=artifact,
            imgsz=cell.imgsz, batch=cell.batch, iters=plan.iters, warmup=plan.warmup,
            threads=self._threads(cell), frame_source=self.cfg.frame_source,
            weights=plan.weights, checkpoint=plan.checkpoint, num_classes=plan.num_classes,
            eval_images=plan.eval_images if labelled else None,
            eval_labels=plan.eval_labels if labelled else None,
            max_seconds=plan.max_seconds, cache_dir=str(self.cfg.workdir / "trt_cache"),
            reference_artifact=reference)
