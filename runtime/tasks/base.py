"""What a runtime task is (semantic, instance, ...) and the registry keyed by its name.

Semantic and instance artifacts differ in their outputs, how those outputs
become a per-frame result, how a result is drawn, what it adds to the run's
stats and which per-pixel map the mask sink saves.  A RuntimeTask owns all
of that, so the backend, the Segmenter and the pipeline ask the task named
by ``ArtifactMetadata.task`` and never branch on it themselves.  A new task
(panoptic, depth) is a new module here plus one ``register_task`` line
(the generic lazy registry of runtime/registry.py).

This module stays import-light (no cv2): backends import it to check outputs.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import numpy as np

from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.registry import Entry, Registry

if TYPE_CHECKING:
    from segedge.runtime.draw import DrawConfig
    from segedge.runtime.preprocess import Geometry
    from segedge.runtime.view import ViewState

PostprocessMode = Literal["exact", "fast"]


@dataclass(frozen=True)
class DecodeOptions:
    """How outputs become a result: logits upsampling mode and the score threshold.

    Semantic: pixels whose class probability is below ``score_threshold`` become
    unknown (None: keep all).  Instance: detections below it are dropped (None:
    the task's default).
    """

    postprocess: PostprocessMode = "exact"
    score_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.postprocess not in ("exact", "fast"):
            raise InputError("--postprocess", "exact or fast", repr(self.postprocess))
        if self.score_threshold is not None and not 0.0 <= self.score_threshold <= 1.0:
            raise InputError("--score-threshold", "a probability between 0 and 1",
                             self.score_threshold)


class Lazy:
    """A value computed on first access (thread-safe); the inputs are released after."""

    def __init__(self, compute: Callable[[], Any] | None = None, value: Any = None) -> None:
        self._compute, self._value = compute, value
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._compute is not None:
            with self._lock:
                if self._compute is not None:
                    self._value, self._compute = self._compute(), None
        return self._value


class FrameResult(Protocol):
    """One frame decoded by a task (frame resolution)."""

    @property
    def mask(self) -> np.ndarray:
        """The per-pixel map the mask sink saves: class labels, or instance ids."""
        ...

    @property
    def confidence(self) -> np.ndarray | None:
        """Per-pixel probability of the winning class, where the task has one."""
        ...

    @property
    def instances(self) -> tuple[Any, ...] | None:
        """Detections, where the task has them."""
        ...


class FrameDrawer(Protocol):
    """Draws a task's results; built once per run (or per Segmenter) and reused.

    ``view``: a window's ViewState (runtime/view.py, set by ``attach_view``) read per
    frame; None draws exactly the DrawConfig.  ``hud_wanted``: whether the next frame
    shows the HUD (the pipeline computes the HUD lines only then).  These three are
    optional for a new task's drawer: without them the window keys leave it alone.
    """

    config: DrawConfig
    view: ViewState | None

    @property
    def hud_wanted(self) -> bool: ...

    def draw(self, frame: np.ndarray, result: Any,
             hud: Sequence[str] | None = None) -> np.ndarray:
        """The picture a run shows and records (mode, legend, HUD from DrawConfig)."""
        ...

    def overlay(self, frame: np.ndarray, result: Any, alpha: float) -> np.ndarray:
        """A plain blend of the result over the frame (the Python API's overlay)."""
        ...


class FrameStats(Protocol):
    """What the frames of a run add to its stats JSON (``extra``)."""

    def add(self, index: int, result: Any) -> None: ...

    def extra(self) -> dict[str, Any]: ...


class NoFrameStats:
    """For tasks whose frames add nothing beyond the stage timings."""

    def add(self, index: int, result: Any) -> None:
        pass

    def extra(self) -> dict[str, Any]:
        return {}


class Decoder(Protocol):
    """Outputs of one artifact (batch of one) -> that task's FrameResult at frame size."""

    def __call__(self, outputs: dict[str, np.ndarray], geom: Geometry, *,
                 confidence: bool = False) -> Any: ...


class RuntimeTask(ABC):
    """Everything that differs between tasks at run time; stateless, one per name."""

    name: ClassVar[str]
    output_kinds: ClassVar[tuple[str, ...]]  # OutputSpec.kind values this task reads
    # Its outputs are per-pixel class scores/labels (logits, labels, confidence): what the
    # argmax-agreement gates, DeepStream's nvinfer (network-type=2) and a plan's output
    # tensors (segdeploy) assume.  Asked instead of comparing task names.
    label_maps: ClassVar[bool] = False
    # Its results are detections (``Segmenter.detect`` / ``is_instance``).
    detections: ClassVar[bool] = False

    @abstractmethod
    def output_names(self, meta: ArtifactMetadata) -> list[str]:
        """The graph outputs a run fetches, named by the metadata."""

    @abstractmethod
    def check_output_names(self, meta: ArtifactMetadata, graph_outputs: Collection[str],
                           source: str) -> None:
        """Raise ArtifactError unless the graph has every output the metadata names."""

    @abstractmethod
    def decoder(self, meta: ArtifactMetadata, options: DecodeOptions) -> Decoder:
        """``decode(outputs, geom, *, confidence=False) -> FrameResult`` for one artifact;
        ``confidence=True`` keeps what computing the confidence lazily needs."""

    @abstractmethod
    def drawer(self, config: DrawConfig, meta: ArtifactMetadata,
               options: DecodeOptions) -> FrameDrawer:
        """A drawer for this artifact's results."""

    def stats(self, options: DecodeOptions) -> FrameStats:
        return NoFrameStats()

    def check_outputs(self, meta: ArtifactMetadata, graph_outputs: Collection[str],
                      source: str) -> None:
        """The metadata's output kind fits this task and the graph has those outputs."""
        if meta.output.kind not in self.output_kinds:
            kinds = " or ".join(repr(k) for k in self.output_kinds)
            raise ArtifactError(f"{source}: expected {kinds} outputs for task {meta.task!r}, "
                                f"got {meta.output.kind!r} outputs")
        self.check_output_names(meta, graph_outputs, source)


def _check_task(entry: Entry, task: Any) -> None:
    if not isinstance(task, RuntimeTask) or task.name != entry.name:
        raise ArtifactError(f"task {entry.name!r}: expected a RuntimeTask named {entry.name!r} "
                            f"at {entry.module}.{entry.attr}, got {task!r}")


# name (= ArtifactMetadata.task) -> "module:TASK"; imported on first use: backends import
# this registry, not cv2.
TASKS: Registry[RuntimeTask] = Registry("task", check=_check_task)


def register_task(name: str, module: str, attr: str = "TASK") -> None:
    TASKS.register(name, f"{module}:{attr}")


def task_names() -> list[str]:
    return TASKS.names()


def get_task(name: str, source: str = "metadata") -> RuntimeTask:
    """The task named by an artifact's metadata; an unknown name is an ArtifactError."""
    if name not in TASKS:
        raise ArtifactError(f"{source}: expected task one of {', '.join(task_names())}, "
                            f"got {name!r}")
    return TASKS.load(name)


register_task("semantic", "segedge.runtime.tasks.semantic")
register_task("instance", "segedge.runtime.tasks.instance")
