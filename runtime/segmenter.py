"""Python API: ``Segmenter(path)(frame_bgr)`` -> label map at frame resolution.

The pipeline uses the same three steps (preprocess, infer, decode) on
separate threads, so the API and ``segrun`` produce identical labels.  What
differs between semantic and instance artifacts is the task's business
(runtime.tasks); the Segmenter only asks the task named by the metadata.

The metadata is checked where it is used (runtime.contract): the input spec
on opening, and the first preprocess, inference and decode, so an artifact
whose metadata lies fails with one line naming what it promised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self

import numpy as np

from segedge.runtime.backends.auto import label, open_auto, rebind
from segedge.runtime.backends.base import Backend, BackendOptions, open_backend
from segedge.runtime.contract import check_input_spec, describe_input, describe_outputs, guarded
from segedge.runtime.draw import DrawConfig, colorize, palette_lut
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.preprocess import Geometry, prepare
from segedge.runtime.tasks import (
    DecodeOptions,
    FrameDrawer,
    FrameResult,
    get_task,
    task_names,
)
from segedge.runtime.tasks.base import PostprocessMode
from segedge.runtime.tasks.instance import InstanceResult
from segedge.runtime.tasks.semantic import softmax_max

__all__ = ["PostprocessMode", "SegmentationResult", "Segmenter", "softmax_max"]

# The API's overlay: a plain blend; labels without a colour show the frame.
API_DRAW = DrawConfig(legend=False, hud=False, unknown=True)


@dataclass(frozen=True, eq=False)
class SegmentationResult:
    """One frame: ``labels`` (HxW, frame size), ``confidence`` (HxW float32, computed on
    first access), ``timings`` (ms); instance artifacts add ``instances`` and ``labels``
    holds their id map (0 background)."""

    result: FrameResult
    timings: dict[str, float]
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...] = field(repr=False)
    _paint: Callable[[np.ndarray, Any, float], np.ndarray] | None = field(
        default=None, repr=False)

    @property
    def labels(self) -> np.ndarray:
        return self.result.mask

    @property
    def confidence(self) -> np.ndarray | None:
        return self.result.confidence

    @property
    def instances(self) -> tuple[Any, ...] | None:
        return self.result.instances

    def colorize(self) -> np.ndarray:
        """BGR colour image of the labels (unknown labels black)."""
        return colorize(self.labels, palette_lut(self.palette))

    def overlay(self, frame_bgr: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The result blended over the frame, drawn by the Segmenter's one drawer."""
        if self._paint is None:
            raise InputError("overlay", "a result made by a Segmenter", "a bare result")
        return self._paint(frame_bgr, self.result, alpha)

    def class_fractions(self) -> dict[str, float]:
        counts = np.bincount(self.labels.ravel(), minlength=256)[: len(self.classes)]
        total = max(1, self.labels.size)
        return {name: float(c) / total for name, c in zip(self.classes, counts, strict=True)}


def merge_options(options: BackendOptions | None, **given: Any) -> BackendOptions:
    """``options`` with the keyword arguments given (not None) applied on top.

    A keyword that contradicts a value ``options`` already sets is an error, not a
    silent choice of one of them.
    """
    base = options or BackendOptions()
    defaults = BackendOptions()
    known = {f.name for f in fields(BackendOptions)}
    changes: dict[str, Any] = {}
    for name, value in given.items():
        if name not in known:
            raise InputError("Segmenter option", f"one of {', '.join(sorted(known))}",
                             repr(name))
        if value is None:
            continue
        current = getattr(base, name)
        if current != getattr(defaults, name) and current != value:
            raise InputError(name, f"one value (the {name} argument or options.{name})",
                             f"{value!r} and {current!r}")
        changes[name] = value
    return replace(base, **changes) if changes else base


class Segmenter:
    """One loaded artifact; call it on BGR frames.

    ``provider``, ``threads``, ``precision_hint`` (OpenVINO) and ``hints`` (metadata
    for a foreign ONNX) may be given directly or inside ``options``; both together
    must agree.  ``backend="auto"`` picks the fastest verified backend here by
    measuring (runtime.backends.auto); ``backend_reason`` says what it picked and why.
    """

    def __init__(self, model: str | Path, *, backend: str = "auto",
                 provider: str | None = None, threads: int | None = None,
                 postprocess: PostprocessMode = "exact",
                 score_threshold: float | None = None,
                 hints: ArtifactMetadata | None = None,
                 precision_hint: str | None = None,
                 options: BackendOptions | None = None) -> None:
        self.decode_options = DecodeOptions(postprocess, score_threshold)
        self.options = merge_options(options, provider=provider, threads=threads,
                                     metadata=hints, precision_hint=precision_hint)
        self.backend: Backend
        self._source = str(model)
        if backend == "auto":  # measured once per artifact and machine (backends.auto)
            # opened in the asked mode where nothing is timed (a plan, a GPU); CPU candidates
            # are probed in latency mode (one call's time is what it compares), then switched
            choice = open_auto(model, self.options, opener=open_backend)
            self.backend, self.backend_reason = choice.backend, choice.reason
            self.use_mode(self.options.mode)
        else:
            self.backend = open_backend(model, backend, self.options)
            self.backend_reason = f"{label(self.backend)}: --backend {backend}"
        self.metadata: ArtifactMetadata = self.backend.metadata
        self._input_hws: set[tuple[int, int]] = set()
        try:
            check_input_spec(self.metadata.input, self._source)
            self.task = get_task(self.metadata.task, self._source)
            self._decode = self.task.decoder(self.metadata, self.decode_options)
        except BaseException:
            self.backend.close()
            raise
        # Until each step has succeeded once, a library error there means the metadata lied.
        self._checked = {"preprocess": False, "infer": False, "decode": False}
        self._drawer: FrameDrawer | None = None
        self._drawer_lock = threading.Lock()

    def use_mode(self, mode: str) -> None:
        """Run the backend in ``mode`` (latency | throughput, ``BackendOptions.mode``): a
        backend that switches itself (``use_mode``: TensorRT adds or frees execution slots on
        the engine it holds) is asked to; one that says what it was opened with (``options``)
        in another mode is reopened with the same options in this one; one without modes is
        kept as it is."""
        opened = getattr(self.backend, "options", None)
        if not isinstance(opened, BackendOptions) or opened.mode == mode:
            return
        switch = getattr(self.backend, "use_mode", None)
        if callable(switch):  # no second copy of the model (a GPU's memory) while switching
            switch(mode)
            return
        fresh = open_backend(self._source, self.backend.name, replace(opened, mode=mode))
        old, self.backend = self.backend, fresh
        rebind(old, fresh)  # the auto verdict that chose it follows (its run-end check)
        old.close()

    @property
    def input_hw(self) -> tuple[int, int] | None:
        """The network input size every preprocessed frame had (None: none yet, or several
        sizes on a dynamic artifact); the auto chooser's run-end check compares it."""
        return next(iter(self._input_hws)) if len(self._input_hws) == 1 else None

    @property
    def mode(self) -> PostprocessMode:
        return self.decode_options.postprocess

    @property
    def score_threshold(self) -> float | None:
        return self.decode_options.score_threshold

    @property
    def is_instance(self) -> bool:
        """Its task gives detections (``detect``); asked of the task, not its name."""
        return self.task.detections

    @property
    def classes(self) -> tuple[str, ...]:
        return self.metadata.classes

    @property
    def palette(self) -> tuple[tuple[int, int, int], ...]:
        return self.metadata.palette

    @property
    def active(self) -> str:
        return self.backend.active

    def preprocess(self, frame_bgr: np.ndarray, timings: dict[str, float] | None = None
                   ) -> tuple[np.ndarray, Geometry]:
        """Frame -> (input tensor, geometry); ``timings`` receives the resize's ms."""
        spec = self.metadata.input
        if self._checked["preprocess"]:
            tensor, (geom,) = prepare([frame_bgr], spec, timings)
        else:
            shape = list(getattr(frame_bgr, "shape", []))
            tensor, (geom,) = guarded(lambda: prepare([frame_bgr], spec, timings),
                                      self._source,
                                      f"frames to fit its {describe_input(spec)}",
                                      f"frame {shape}")
            self._checked["preprocess"] = True
        if len(self._input_hws) < 2:
            h = 1 if spec.layout == "NHWC" else 2
            self._input_hws.add((int(tensor.shape[h]), int(tensor.shape[h + 1])))
        return tensor, geom

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if self._checked["infer"]:
            return self.backend.infer(tensor)
        outputs = guarded(lambda: self.backend.infer(tensor), self._source,
                          f"a graph that takes its {describe_input(self.metadata.input)}",
                          f"fed {list(tensor.shape)} {tensor.dtype}")
        self._checked["infer"] = True
        return outputs

    @property
    def static_batch(self) -> int | None:
        """Frames every inference call must hold (the artifact's fixed batch), or None
        when its batch dimension is dynamic (runtime.metadata: ``InputSpec.batch``)."""
        return self.metadata.input.batch

    def infer_many(self, tensors: Sequence[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Several preprocessed frames (a batch of one each, one shape) in ONE inference call:
        several streams share the model this way.  A static batch is filled by repeating the
        last frame and the padding is dropped; the outputs come back one dict per frame."""
        n = len(tensors)
        if n == 0:
            raise InputError("infer_many", "one or more tensors", "none")
        if n == 1 and self.static_batch in (None, 1):
            return [self.infer(tensors[0])]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) != 1 or any(t.shape[0] != 1 for t in tensors):
            raise InputError("infer_many", "tensors of one shape with a batch of one each",
                             sorted(shapes))
        static = self.static_batch
        if static is not None and n > static:
            raise InputError("infer_many", f"at most {static} frames (the artifact's static "
                             "batch)", n)
        parts = list(tensors) + [tensors[-1]] * ((static or n) - n)
        outputs = self.infer(np.concatenate(parts))
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] < n:
                raise ArtifactError(f"{self._source}: expected output {name!r} with a batch of "
                                    f"{len(parts)}, got shape {list(value.shape)}")
        return [{name: value[i:i + 1] for name, value in outputs.items()} for i in range(n)]

    def decode(self, outputs: dict[str, np.ndarray], geom: Geometry, *,
               confidence: bool = False) -> Any:
        """Network outputs (batch of one) -> the task's result at frame size.

        ``confidence=True`` keeps what a later ``result.confidence`` needs (computed
        then, not here); with a score threshold it is computed here anyway.
        """
        if self._checked["decode"]:
            return self._decode(outputs, geom, confidence=confidence)
        out = self.metadata.output
        result = guarded(lambda: self._decode(outputs, geom, confidence=confidence),
                         self._source, f"{out.kind!r} outputs for the {self.task.name} task",
                         f"the graph gave {describe_outputs(outputs)}")
        self._checked["decode"] = True
        return result

    def drawer(self) -> FrameDrawer:
        """The drawer behind ``result.overlay``: built on first use, then reused."""
        if self._drawer is None:
            with self._drawer_lock:
                if self._drawer is None:
                    self._drawer = self.task.drawer(API_DRAW, self.metadata,
                                                    self.decode_options)
        return self._drawer

    def _paint(self, frame_bgr: np.ndarray, result: Any, alpha: float) -> np.ndarray:
        return self.drawer().overlay(frame_bgr, result, alpha)

    def _run(self, frame_bgr: np.ndarray) -> tuple[Any, dict[str, float]]:
        t0 = time.perf_counter()
        tensor, geom = self.preprocess(frame_bgr)
        t1 = time.perf_counter()
        outputs = self.infer(tensor)
        t2 = time.perf_counter()
        result = self.decode(outputs, geom, confidence=True)
        t3 = time.perf_counter()
        return result, {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3,
                        "postprocess": (t3 - t2) * 1e3}

    def detect(self, frame_bgr: np.ndarray) -> InstanceResult:
        """Instance artifacts: one frame -> instances (class, score, box, mask area) + id map."""
        if not self.is_instance:
            tasks = " or ".join(repr(n) for n in task_names() if get_task(n).detections)
            raise InputError("model", f"an instance segmentation artifact (task {tasks})",
                             f"task {self.metadata.task!r}")
        result, timings = self._run(frame_bgr)
        result.timings.update(timings)
        return result

    def __call__(self, frame_bgr: np.ndarray) -> SegmentationResult:
        result, timings = self._run(frame_bgr)
        return SegmentationResult(result, timings, self.classes, self.palette, self._paint)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
