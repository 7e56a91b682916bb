"""What a run measures: per-model plans, expanded into cells, decided before any work.

Skips are decided up front (backend absent, precision meaningless there,
artifact of another kind), so a run on a laptop and a run on a Jetson
produce the same rows, each either measured or carrying its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from segedge.benchmarks import backends
from segedge.benchmarks.cells import PRECISIONS, Cell, expand
from segedge.benchmarks.jobs import Needs
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.precisions import precision as precision_spec

ARTIFACT_SUFFIXES = (".onnx", ".plan", ".engine")
# Every row segbench knows: baselines, each runtime backend's rows (its descriptor), peers.
DEFAULT_BACKENDS = backends.default_rows()


@dataclass(frozen=True)
class ModelPlan:
    """One model's share of the matrix, with its data (labels, calibration) and budgets."""

    model: str  # zoo name or artifact path
    sizes: tuple[tuple[int, int] | None, ...] = (None,)
    batches: tuple[int, ...] = (1,)
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    precisions: tuple[str, ...] = PRECISIONS
    eval_images: str | None = None
    eval_labels: str | None = None
    calib: str | None = None
    iters: int = 100
    warmup: int = 10
    max_seconds: float | None = None  # per cell, after at least MIN_ITERS iterations
    weights: str = "auto"
    checkpoint: str | None = None
    num_classes: int | None = None
    skip_reason: str | None = None  # data this plan needs is absent: every cell says so

    def __post_init__(self) -> None:
        if self.skip_reason is not None and not self.skip_reason.strip():
            raise ValueError("ModelPlan.skip_reason: expected a reason or None, got ''")

    @property
    def is_artifact(self) -> bool:
        return Path(self.model).suffix.lower() in ARTIFACT_SUFFIXES

    def cells(self) -> list[Cell]:
        sizes = tuple(self.resolved_size(s) for s in self.sizes)
        return expand([self.model], self.backends, self.precisions, sizes, self.batches)

    def resolved_size(self, size: tuple[int, int] | None) -> tuple[int, int]:
        if size is not None:
            return size
        if self.is_artifact:
            meta = artifact_metadata(Path(self.model))
            if meta.input.size is None:
                raise InputError("--imgsz", f"a size for the dynamic-size {self.model}", "none")
            return (int(meta.input.size[0]), int(meta.input.size[1]))
        from segedge.export.models import registry

        return registry.get(self.model).default_size


@dataclass(frozen=True)
class Decision:
    """Either the artifact a cell needs, or why it is skipped."""

    needs: Needs | None = None
    skip: str | None = None


def artifact_metadata(path: Path) -> ArtifactMetadata:
    if not path.is_file():
        raise InputError("MODEL_OR_ARTIFACT", "a zoo name or an existing artifact file",
                         f"no such file {path}")
    if path.suffix.lower() == ".onnx":
        from segedge.export.onnx.tools import read_metadata

        meta = read_metadata(path)
        if meta is None:
            raise InputError(str(path), "an ONNX exported by segexport (segedge metadata)",
                             "no metadata")
        return meta
    from segedge.runtime.sidecar import read_sidecar

    return read_sidecar(path).metadata


@dataclass
class Planner:
    """Caches backend probes; decides each cell."""

    _probes: dict[str, str | None] = field(default_factory=dict)

    def probe(self, backend: str) -> str | None:
        if backend not in self._probes:
            self._probes[backend] = backends.get(backend).probe()
        return self._probes[backend]

    def decide(self, plan: ModelPlan, cell: Cell) -> Decision:
        if plan.skip_reason:
            return Decision(skip=plan.skip_reason)
        why = self.probe(cell.backend)
        if why:
            return Decision(skip=why)
        needed = backends.get(cell.backend).needs(cell.precision)
        if isinstance(needed, str):
            return Decision(skip=needed)
        if plan.is_artifact:
            return self._given(plan, needed)
        if precision_spec(needed.precision).calibrated and not plan.calib:
            return Decision(skip=f"{needed.precision} needs calibration frames (--calib or "
                                 "--video)")
        return Decision(needs=needed)

    @staticmethod
    def _given(plan: ModelPlan, needed: Needs) -> Decision:
        path = Path(plan.model)
        suffix = path.suffix.lower()
        if needed.kind == "torch":
            return Decision(skip="needs a zoo model name, got an exported artifact")
        if needed.kind == "plan" and suffix not in (".plan", ".engine"):
            return Decision(skip="needs a TensorRT plan, got an ONNX file")
        if needed.kind == "onnx" and suffix != ".onnx":
            return Decision(skip="needs an ONNX file, got a TensorRT plan")
        meta = artifact_metadata(path)
        if meta.precision != needed.precision:
            return Decision(skip=f"the artifact is {meta.precision}, not {needed.precision}")
        if needed.emit == "logits" and (meta.input.format != "float" or not meta.output.logits):
            return Decision(skip="needs a float-input graph with logits (segexport --emit logits "
                                 "--input-format float)")
        return Decision(needs=needed)
