"""What an export task is, and the registry that picks one.

The export pipeline (export/pipeline.py) is one sequence for every task:
resolve -> prepare -> torch.onnx.export -> finish the graph -> metadata ->
check -> verify -> publishable graph -> precision -> lint -> publish -> engine.
A task (semantic label maps, instance detections, ...) supplies only what
differs: option limits, the deploy wrapper and its outputs, graph fix-ups,
metadata fields, the parity check and its gate, and its report lines.  A new
task is a new file here plus one ``register_task`` line; nothing else branches on
the task name.  The runtime side (post-processing, drawing, stats) is
``segedge.runtime.tasks``, keyed by the same names as ``ArtifactMetadata.task``.

This module stays light (no torch at import): the config and the CLI list and
validate task names through it; task modules load on first use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from segedge.runtime.errors import InputError
from segedge.runtime.registry import Registry

if TYPE_CHECKING:
    import onnx
    import torch
    from torch import nn

    from segedge.export.config import ExportConfig
    from segedge.export.frames import FrameSet
    from segedge.export.models.resolve import Resolved
    from segedge.export.onnx.convert import ExportSpec
    from segedge.runtime.metadata import ArtifactMetadata

# name -> "module:Class" (runtime/registry.py); imported lazily (task modules import torch /
# torchvision).  Messages and --task choices list them in registration order.
TASKS: Registry[type[ExportTask[Any]]] = Registry(
    "task", unknown=lambda known, name: InputError(
        "task", "one of " + ", ".join(task_names()), repr(name)))


def register_task(name: str, target: str) -> None:
    """One line per task: ``register_task("panoptic", "pkg.module:PanopticTask")``."""
    TASKS.register(name, target)
DEFAULT_TASK = "semantic"  # user models (file.py:Class) unless --task says otherwise


class Parity(Protocol):
    """A task's parity result: JSON-able for the report."""

    images: int
    source: str

    def to_dict(self) -> dict[str, Any]: ...


P = TypeVar("P", bound=Parity)


@dataclass(frozen=True)
class Prepared:
    """A resolved model made ready to export by its task."""

    wrapper: nn.Module  # what the exporter traces (pre/post-processing baked in)
    example: torch.Tensor  # the trace input
    reference: nn.Module  # what parity compares against (untouched by export rewrites)
    spec: ExportSpec  # output names, dynamic axes, opset, exporters in order
    size: tuple[int, int]  # the export size (H, W), also for dynamic graphs
    rewrites: list[str] = field(default_factory=list)  # what was changed for the export
    notes: list[str] = field(default_factory=list)  # said in the report and the summary
    frames: FrameSet | None = None  # verification frames, when preparing already loaded them


@dataclass(frozen=True)
class Finished:
    """The exported graph after the task's fix-ups."""

    model: onnx.ModelProto
    simplified: bool
    rewrites: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ExportTask(ABC, Generic[P]):
    """Everything the export pipeline needs to know that differs between tasks.

    Generic in the task's parity result P (what `verify` returns and `gate_failure` reads).
    """

    name: ClassVar[str]
    seed: ClassVar[int | None] = None  # torch seed before resolve (reproducible random weights)

    @abstractmethod
    def check(self, cfg: ExportConfig) -> None:
        """Refuse options this task cannot honour, before any work (one line each)."""

    @abstractmethod
    def prepare(self, res: Resolved, cfg: ExportConfig) -> Prepared:
        """Check the resolved model and wrap it for export."""

    @abstractmethod
    def finish_graph(self, model: onnx.ModelProto, cfg: ExportConfig, prep: Prepared
                     ) -> Finished:
        """Fix up the raw exported graph (names, static shapes, simplification)."""

    @abstractmethod
    def metadata(self, res: Resolved, cfg: ExportConfig, prep: Prepared, exporter: str,
                 opset: int) -> ArtifactMetadata:
        """The artifact's self-description (this task's fields)."""

    @abstractmethod
    def verify(self, prep: Prepared, path: Path, meta: ArtifactMetadata, cfg: ExportConfig
               ) -> P:
        """Compare the checked ONNX at `path` with PyTorch on real frames."""

    @abstractmethod
    def gate_failure(self, parity: P, cfg: ExportConfig) -> str | None:
        """Why `parity` fails this task's gate (one clause), or None when it passes."""

    @abstractmethod
    def gate(self, cfg: ExportConfig) -> dict[str, Any]:
        """The gate's settings, for the report."""

    @abstractmethod
    def parity_line(self, parity: dict[str, Any]) -> str:
        """The summary line's text after "parity vs PyTorch on N frames (source): "."""

    def publishable(self, model: onnx.ModelProto, verified: Path, workdir: Path,
                    meta: ArtifactMetadata, cfg: ExportConfig) -> tuple[onnx.ModelProto, Path]:
        """The graph to publish, derived from the verified one; default: that one itself."""
        return model, verified

    def parity_notes(self, parity: P) -> list[str]:
        """Notes the parity result calls for (e.g. what it could not cover)."""
        return []

    def parity_warnings(self, parity: P) -> list[str]:
        """Warnings it calls for (printed even with --quiet), e.g. degenerate masks."""
        return []

    def tensorrt_extra(self, model: onnx.ModelProto, table: Any, findings: list[Any]
                       ) -> dict[str, Any]:
        """Task-specific additions to the report's TensorRT section (lint table, findings)."""
        return {}

    def report_fields(self, cfg: ExportConfig) -> dict[str, Any]:
        """Task-specific top-level report fields."""
        return {}

    def header_extra(self, report: dict[str, Any]) -> str:
        """Appended inside the parentheses of the summary's "wrote ..." line."""
        return ""

    def lint_line(self, trt: dict[str, Any]) -> str:
        unsupported = trt["unsupported"]
        return "tensorrt lint: " + ("clean" if not unsupported else
                                    f"{len(unsupported)} unsupported: " +
                                    ", ".join(sorted({u['op_type'] for u in unsupported})))


def versions() -> dict[str, str]:
    """Library versions recorded in every artifact's metadata."""
    import onnx
    import onnxruntime
    import torch

    from segedge.runtime import __version__

    return {"segedge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def task_names() -> tuple[str, ...]:
    return tuple(e.name for e in TASKS.entries())


def get_task(name: str) -> ExportTask[Any]:
    """The task object registered under `name` (one-line InputError for unknown names)."""
    task: ExportTask[Any] = TASKS.load(name)()
    return task


def task_name_for(cfg: ExportConfig) -> str:
    """--task when given (it must agree with a zoo entry), else the zoo entry's, else semantic."""
    from segedge.export.models.sources import fixed_task

    zoo = fixed_task(cfg.model)  # unknown zoo names: one line with the nearest ones
    if zoo is None:  # file.py:Class and library models
        return cfg.task or DEFAULT_TASK
    if cfg.task is not None and cfg.task != zoo:
        raise InputError("--task", f"{zoo} for {cfg.model} (its zoo entry's task)", cfg.task)
    return zoo


def task_for(cfg: ExportConfig) -> ExportTask[Any]:
    return get_task(task_name_for(cfg))


register_task("semantic", "segedge.export.tasks.semantic:SemanticTask")
register_task("instance", "segedge.export.tasks.instance:InstanceTask")
