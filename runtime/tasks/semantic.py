"""Semantic segmentation: one class label per pixel (logits, labels or both outputs).

Labels come from the graph's label output when it has one (argmax inside the
graph) or from its logits (upsample-then-argmax ``exact``, or argmax-then-
nearest ``fast``).  Confidence (the winning class's probability) costs a
softmax over every class, so it is computed only when something reads it:
the score threshold, or ``result.confidence`` in the Python API.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from segedge.runtime.draw import UNKNOWN_LABEL, DrawConfig, Drawer
from segedge.runtime.errors import ArtifactError
from segedge.runtime.metadata import ArtifactMetadata, OutputSpec
from segedge.runtime.preprocess import Geometry, labels_to_frame, logits_to_labels
from segedge.runtime.tasks.base import DecodeOptions, Lazy, RuntimeTask
from segedge.runtime.view import ViewState


def softmax_max(logits: np.ndarray) -> np.ndarray:
    """Probability of the winning class per pixel, from CxHxW logits."""
    x = logits.astype(np.float32, copy=False)
    top = x.max(0)
    total = np.exp(x - top).sum(0)
    return (1.0 / total).astype(np.float32)


@dataclass(frozen=True, eq=False)
class SemanticResult:
    """Labels (HxW uint8, frame size; 255 = below the score threshold), confidence lazily."""

    labels: np.ndarray
    _confidence: Lazy = field(default_factory=Lazy, repr=False)

    @property
    def mask(self) -> np.ndarray:
        return self.labels

    @property
    def confidence(self) -> np.ndarray | None:
        """HxW float32, computed on first access (None: the artifact cannot give it)."""
        return self._confidence.get()

    @property
    def instances(self) -> None:
        return None


class SemanticDecoder:
    """Outputs of one semantic artifact (batch of one) -> labels at frame size."""

    def __init__(self, meta: ArtifactMetadata, options: DecodeOptions) -> None:
        out = meta.output
        self.out: OutputSpec = out
        self.mode = options.postprocess
        self.threshold = options.score_threshold
        self.use_labels = bool(out.labels) and (
            out.kind == "labels" or options.postprocess == "fast" or not out.logits)

    def __call__(self, outputs: dict[str, np.ndarray], geom: Geometry, *,
                 confidence: bool = False) -> SemanticResult:
        out = self.out
        if self.use_labels:
            raw = outputs[out.labels or ""][0]
            if raw.ndim == 3 and raw.shape[0] == 1:
                raw = raw[0]
            if raw.ndim != 2 or raw.dtype.kind not in "iub":
                raise ArtifactError(f"output {out.labels!r}: expected integer labels [N,H,W] "
                                    f"(metadata kind {out.kind!r}), got {raw.dtype} "
                                    f"{list(outputs[out.labels or ''].shape)}")
            labels = labels_to_frame(np.ascontiguousarray(raw.astype(np.uint8, copy=False)),
                                     geom)
        else:
            logits = outputs[out.logits or ""][0]
            if logits.ndim != 3 or logits.dtype.kind != "f" or not 0 < logits.shape[0] <= 256:
                raise ArtifactError(f"output {out.logits!r}: expected float logits [N,C,H,W] "
                                    f"with C <= 256 (metadata kind {out.kind!r}), got "
                                    f"{logits.dtype} {list(outputs[out.logits or ''].shape)}")
            labels, _ = logits_to_labels(logits, geom, self.mode)
        if self.threshold is not None:
            conf = self.confidence(outputs, geom)
            if conf is not None:
                labels = labels.copy()
                labels[conf < self.threshold] = UNKNOWN_LABEL
            return SemanticResult(labels, Lazy(value=conf))
        if confidence:
            return SemanticResult(labels, Lazy(lambda: self.confidence(outputs, geom)))
        return SemanticResult(labels)

    def confidence(self, outputs: dict[str, np.ndarray], geom: Geometry) -> np.ndarray | None:
        """The graph's confidence output, else the softmax of its logits, else None."""
        out = self.out
        if out.confidence and out.confidence in outputs:
            return labels_to_frame(outputs[out.confidence][0].astype(np.float32), geom)
        if out.logits and out.logits in outputs:
            return labels_to_frame(softmax_max(outputs[out.logits][0]), geom)
        return None


class SemanticDrawer:
    """The class-palette Drawer, fed the result's labels."""

    def __init__(self, config: DrawConfig, meta: ArtifactMetadata,
                 options: DecodeOptions) -> None:
        unknown = (options.score_threshold is not None if config.unknown is None
                   else config.unknown)
        self.drawer = Drawer(config, meta.classes, meta.palette, unknown=unknown)
        self.config = config

    @property
    def view(self) -> ViewState | None:
        """The window's view (set by attach_view); None: draw the config."""
        return self.drawer.view

    @view.setter
    def view(self, view: ViewState | None) -> None:
        self.drawer.view = view

    @property
    def hud_wanted(self) -> bool:
        return self.drawer.hud_wanted

    def draw(self, frame: np.ndarray, result: SemanticResult,
             hud: Sequence[str] | None = None) -> np.ndarray:
        return self.drawer.draw(frame, result.labels, hud)

    def overlay(self, frame: np.ndarray, result: SemanticResult, alpha: float) -> np.ndarray:
        return self.drawer.overlay(frame, result.labels, alpha)


class SemanticTask(RuntimeTask):
    name: ClassVar[str] = "semantic"
    output_kinds: ClassVar[tuple[str, ...]] = ("logits", "labels", "both")
    label_maps: ClassVar[bool] = True

    def output_names(self, meta: ArtifactMetadata) -> list[str]:
        out = meta.output
        return [n for n in (out.logits, out.labels, out.confidence) if n]

    def check_output_names(self, meta: ArtifactMetadata, graph_outputs: Collection[str],
                           source: str) -> None:
        out = meta.output
        named = self.output_names(meta)
        wanted = {"logits": out.logits, "labels": out.labels, "both": out.labels}[out.kind]
        missing = [n for n in named if n not in graph_outputs]
        if not wanted or missing:
            raise ArtifactError(f"{source}: expected graph outputs {named} for kind "
                                f"{out.kind!r} (from metadata), got {sorted(graph_outputs)}")

    def decoder(self, meta: ArtifactMetadata, options: DecodeOptions) -> SemanticDecoder:
        return SemanticDecoder(meta, options)

    def drawer(self, config: DrawConfig, meta: ArtifactMetadata,
               options: DecodeOptions) -> SemanticDrawer:
        return SemanticDrawer(config, meta, options)


TASK = SemanticTask()
