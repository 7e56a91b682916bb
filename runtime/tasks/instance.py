"""Instance segmentation: decode padded detections, map them to the frame, draw, record.

An instance artifact returns detections padded to ``max_detections`` with a
``count``; only the first ``count`` rows are real.  Decoding keeps those at
or above the score threshold, maps boxes and masks from network to frame
pixels, and paints one instance-id map (0 background, k = k-th instance,
highest score on top) that the mask sink writes as a PNG.  Each frame adds
its detections (class, score, box, area) to the run's stats.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from segedge.runtime.draw import (
    FONT,
    DrawConfig,
    draw_hud,
    fit_into,
    output_shape,
    resolve_classes,
    text_scale,
    view_choice,
)
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.preprocess import Geometry, labels_to_frame
from segedge.runtime.tasks.base import DecodeOptions, RuntimeTask
from segedge.runtime.view import ViewState

DEFAULT_SCORE_THRESHOLD = 0.5
MAX_INSTANCE_FRAMES = 100_000  # per-frame instance records kept for the stats JSON


@dataclass(frozen=True)
class Instance:
    """One detection in frame pixels; ``mask_area`` counts its visible pixels."""

    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    mask_area: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["score"] = round(self.score, 4)
        d["box"] = [round(v, 1) for v in self.box]
        return d


@dataclass(frozen=True, eq=False)
class InstanceResult:
    """Instances of one frame and their id map (HxW, frame size; 0 is background)."""

    instances: tuple[Instance, ...]
    ids: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.ids

    @property
    def confidence(self) -> None:
        return None

    def to_dicts(self) -> list[dict[str, Any]]:
        return [i.to_dict() for i in self.instances]

    def __len__(self) -> int:
        return len(self.instances)


def check_threshold(score_threshold: float | None) -> float:
    value = DEFAULT_SCORE_THRESHOLD if score_threshold is None else float(score_threshold)
    if not 0.0 <= value <= 1.0:
        raise InputError("--score-threshold", "a probability between 0 and 1", value)
    return value


def _output(outputs: dict[str, np.ndarray], name: str | None, what: str) -> np.ndarray:
    if not name or name not in outputs:
        raise ArtifactError(f"instance outputs: expected {what} output {name!r}, got "
                            f"{sorted(outputs)}")
    return outputs[name]


def decode(outputs: dict[str, np.ndarray], meta: ArtifactMetadata, geom: Geometry,
           score_threshold: float | None = None) -> InstanceResult:
    """Padded network outputs (batch of one) -> instances at frame resolution."""
    out = meta.output
    threshold = check_threshold(score_threshold)
    count = int(np.asarray(_output(outputs, out.count, "count")).reshape(-1)[0])
    boxes = _output(outputs, out.boxes, "boxes")[0][:count]
    labels = _output(outputs, out.labels, "labels")[0][:count]
    scores = _output(outputs, out.scores, "scores")[0][:count]
    masks = _output(outputs, out.masks, "masks")[0][:count]
    keep = np.nonzero(scores >= threshold)[0]
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    nh, nw = geom.net_hw
    dtype = np.uint8 if len(keep) < 255 else np.uint16
    ids_net = np.zeros(masks.shape[-2:] if len(masks) else (nh, nw), dtype)
    for rank in range(len(keep) - 1, -1, -1):  # lowest score first: the best ends on top
        mask = masks[keep[rank]].reshape(ids_net.shape)
        ids_net[mask > 0] = rank + 1
    if ids_net.shape != (nh, nw):
        ids_net = cv2.resize(ids_net, (nw, nh), interpolation=cv2.INTER_NEAREST)
    ids = labels_to_frame(ids_net, geom)
    areas = np.bincount(ids.ravel(), minlength=len(keep) + 1)
    fh, fw = geom.frame_hw
    instances = []
    for rank, i in enumerate(keep):
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        box = ((x0 - geom.pad_left) / geom.scale_x, (y0 - geom.pad_top) / geom.scale_y,
               (x1 - geom.pad_left) / geom.scale_x, (y1 - geom.pad_top) / geom.scale_y)
        box = (min(max(box[0], 0.0), fw), min(max(box[1], 0.0), fh),
               min(max(box[2], 0.0), fw), min(max(box[3], 0.0), fh))
        cls = int(labels[i])
        name = meta.classes[cls] if 0 <= cls < len(meta.classes) else f"class_{cls}"
        instances.append(Instance(cls, name, float(scores[i]), box, int(areas[rank + 1])))
    return InstanceResult(tuple(instances), ids)


def instance_colours(n: int) -> np.ndarray:
    """n distinct BGR colours (golden-ratio hues), stable per instance rank."""
    hues = ((np.arange(n) * 0.618033988749895) % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], 1)
    return cv2.cvtColor(hsv.reshape(n, 1, 3), cv2.COLOR_HSV2BGR).reshape(n, 3)


class InstanceDrawer:
    """Colour per instance, outline, optional box, "class score" label, HUD."""

    def __init__(self, config: DrawConfig, classes: Sequence[str]) -> None:
        self.config = config
        self.classes = list(classes)
        self.boxes = config.boxes
        self.lut = np.zeros((256, 1, 3), np.uint8)
        self.lut[1:, 0] = instance_colours(255)
        self._hidden = set(resolve_classes(config.ignore, classes))
        self.view: ViewState | None = None  # set by attach_view: keys in a window change it

    @property
    def hud_wanted(self) -> bool:
        return self.view.current().hud if self.view is not None else self.config.hud

    def draw(self, frame: np.ndarray, result: InstanceResult,
             hud: Sequence[str] | None = None) -> np.ndarray:
        view = self.view.current() if self.view is not None else None
        mode, _legend, hud_on = view_choice(self.config, view)
        if view is not None and view.hidden:  # the window's o key hid the segmentation
            out = frame.copy()
        else:
            out = self._render(frame, result, mode, self.config.alpha)
        if view is not None:  # a key changed the layout: every sink keeps its frame size
            out = fit_into(out, output_shape(frame.shape, self.config.mode))
        if hud and hud_on:
            draw_hud(out, hud, text_scale(frame.shape[1]))
        return out

    def overlay(self, frame: np.ndarray, result: InstanceResult, alpha: float) -> np.ndarray:
        return self._render(frame, result, "overlay", alpha)

    def _render(self, frame: np.ndarray, result: InstanceResult, mode: str,
                alpha: float) -> np.ndarray:
        ids = result.ids
        visible = [k for k, inst in enumerate(result.instances, start=1)
                   if inst.class_id not in self._hidden]
        if len(visible) != len(result.instances):
            ids = np.where(np.isin(ids, visible), ids, 0).astype(ids.dtype)
        ids8 = (np.where(ids > 0, (ids - 1) % 255 + 1, 0).astype(np.uint8)
                if ids.dtype != np.uint8 else ids)
        colours = cv2.LUT(cv2.merge([ids8, ids8, ids8]), self.lut)
        if mode == "mask":
            out = colours
        elif mode == "none":
            out = frame.copy()
        elif mode == "contours":
            out = frame.copy()
            edges = cv2.morphologyEx(ids8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            cv2.copyTo(colours, (edges > 0).view(np.uint8), out)
        else:
            out = cv2.addWeighted(frame, 1.0 - alpha, colours, alpha, 0.0)
            cv2.copyTo(frame, (ids8 == 0).view(np.uint8), out)
            edges = cv2.morphologyEx(ids8, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
            cv2.copyTo(colours, (edges > 0).view(np.uint8), out)
            if mode == "side-by-side":
                out = cv2.hconcat([frame, out])
        scale = text_scale(frame.shape[1])
        for k in visible:
            self._label(out, result.instances[k - 1], self.lut[(k - 1) % 255 + 1, 0], scale)
        return out

    def _label(self, image: np.ndarray, inst: Instance, colour: np.ndarray,
               scale: float) -> None:
        x0, y0, x1, y1 = (int(round(v)) for v in inst.box)
        bgr = tuple(int(c) for c in colour)
        if self.boxes:
            cv2.rectangle(image, (x0, y0), (x1, y1), bgr, 1 if scale < 0.5 else 2)
        text = f"{inst.class_name} {inst.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
        ty = y0 - 3 if y0 - th - base - 3 >= 0 else min(y0 + th + 3, image.shape[0] - 1)
        cv2.rectangle(image, (x0, ty - th - 2), (x0 + tw + 4, ty + base - 1), bgr, -1)
        cv2.putText(image, text, (x0 + 2, ty - 1), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


class InstanceStats:
    """Per-frame detections for the stats JSON (the first MAX_INSTANCE_FRAMES frames)."""

    def __init__(self, score_threshold: float, max_frames: int = MAX_INSTANCE_FRAMES) -> None:
        self.score_threshold = score_threshold
        self.max_frames = max_frames
        self.total = 0
        self.frames: list[dict[str, Any]] = []

    def add(self, index: int, result: InstanceResult) -> None:
        self.total += len(result)
        if len(self.frames) < self.max_frames:
            self.frames.append({"frame": index, "count": len(result),
                                "instances": result.to_dicts()})

    def extra(self) -> dict[str, Any]:
        return {"instances": {"score_threshold": self.score_threshold, "total": self.total,
                              "frames_recorded": len(self.frames), "frames": self.frames}}


class InstanceTask(RuntimeTask):
    name: ClassVar[str] = "instance"
    output_kinds: ClassVar[tuple[str, ...]] = ("instances",)
    detections: ClassVar[bool] = True

    def output_names(self, meta: ArtifactMetadata) -> list[str]:
        out = meta.output
        return [n for n in (out.boxes, out.labels, out.scores, out.masks, out.count) if n]

    def check_output_names(self, meta: ArtifactMetadata, graph_outputs: Collection[str],
                           source: str) -> None:
        named = self.output_names(meta)
        missing = [n for n in named if n not in graph_outputs]
        if len(named) != 5 or missing:
            raise ArtifactError(f"{source}: expected instance outputs boxes, labels, scores, "
                                f"masks, count (from metadata), got {sorted(graph_outputs)}")

    def decoder(self, meta: ArtifactMetadata, options: DecodeOptions) -> InstanceDecoder:
        return InstanceDecoder(meta, options)

    def drawer(self, config: DrawConfig, meta: ArtifactMetadata,
               options: DecodeOptions) -> InstanceDrawer:
        return InstanceDrawer(config, meta.classes)

    def stats(self, options: DecodeOptions) -> InstanceStats:
        return InstanceStats(check_threshold(options.score_threshold))


class InstanceDecoder:
    """Outputs of one instance artifact -> detections at or above the score threshold."""

    def __init__(self, meta: ArtifactMetadata, options: DecodeOptions) -> None:
        self.meta = meta
        self.threshold = check_threshold(options.score_threshold)

    def __call__(self, outputs: dict[str, np.ndarray], geom: Geometry, *,
                 confidence: bool = False) -> InstanceResult:
        return decode(outputs, self.meta, geom, self.threshold)


TASK = InstanceTask()
