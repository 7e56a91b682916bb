"""Turning label maps into pictures, with OpenCV primitives only.

Everything per pixel goes through cv2 (LUT, addWeighted, copyTo,
morphology), which runs in C without the GIL, so drawing overlaps inference
in the pipeline instead of competing with it for the interpreter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cv2
import numpy as np

from segedge.runtime.errors import InputError
from segedge.runtime.metadata import default_palette
from segedge.runtime.view import PICTURE_MODES

if TYPE_CHECKING:
    from segedge.runtime.view import View, ViewState

VisualizeMode = Literal["overlay", "mask", "side-by-side", "contours", "none"]
VISUALIZE_MODES: tuple[str, ...] = (*PICTURE_MODES, "none")  # --visualize's choices
UNKNOWN_LABEL = 255  # pixels below --score-threshold
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_LEGEND_CLASSES = 40

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class DrawConfig:
    mode: VisualizeMode = "overlay"
    alpha: float = 0.5
    palette: tuple[RGB, ...] | None = None  # RGB; overrides the artifact's
    ignore: tuple[int | str, ...] = ()  # class indices or names never drawn
    legend: bool = True
    hud: bool = True
    contour_thickness: int = 2
    boxes: bool = True  # instance models: draw each detection's box
    # labels without a colour (255 = below --score-threshold) show the frame unchanged;
    # None: only when a score threshold can produce them
    unknown: bool | None = None

    def __post_init__(self) -> None:
        if self.mode not in VISUALIZE_MODES:
            raise InputError("--visualize", f"one of {', '.join(VISUALIZE_MODES)}",
                             repr(self.mode))
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError("--alpha", "a number between 0 and 1", self.alpha)
        if self.contour_thickness < 1:
            raise InputError("contour thickness", "a positive integer", self.contour_thickness)


def full_palette(classes: Sequence[str], palette: Sequence[RGB]) -> list[RGB]:
    """The artifact's palette, extended with default colours if it is too short."""
    colours = [tuple(int(v) for v in c) for c in palette][: len(classes)]
    if len(colours) < len(classes):
        colours += list(default_palette(classes))[len(colours):]
    return colours  # type: ignore[return-value]


def resolve_classes(names: Sequence[int | str], classes: Sequence[str]) -> tuple[int, ...]:
    """Class indices from indices or names (``--ignore-class road --ignore-class 0``)."""
    out = []
    for name in names:
        if isinstance(name, int) or str(name).isdigit():
            index = int(name)
            if not 0 <= index < max(len(classes), 1):
                raise InputError("--ignore-class", f"an index below {len(classes)}", index)
        elif name in classes:
            index = list(classes).index(str(name))
        else:
            raise InputError("--ignore-class", f"a class index or one of {', '.join(classes)}",
                             repr(name))
        out.append(index)
    return tuple(out)


def palette_lut(palette: Sequence[RGB], hidden: Sequence[int] = ()) -> np.ndarray:
    """256-entry BGR lookup table for cv2.LUT; hidden and unknown labels map to black."""
    lut = np.zeros((256, 1, 3), np.uint8)
    for label, (r, g, b) in enumerate(palette[:256]):
        lut[label, 0] = (b, g, r)
    for label in hidden:
        if 0 <= label < 256:
            lut[label, 0] = 0
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """HxW uint8 labels -> HxWx3 BGR colours.

    Three single-channel cv2.LUT calls and a merge: the same pixels as one
    3-channel LUT over merged labels, 2.7x cheaper (0.84 against 2.26 ms per
    960x540 frame measured here), since OpenCV vectorises only the 1-channel table.
    """
    return cv2.merge([cv2.LUT(labels, np.ascontiguousarray(lut[:, :, c])) for c in range(3)])


def render_legend(classes: Sequence[str], palette: Sequence[RGB],
                  hidden: Sequence[int] = (), scale: float = 0.45) -> np.ndarray | None:
    """Pre-rendered legend patch (BGR), pasted onto each frame by a slice copy."""
    rows = [(name, palette[i]) for i, name in enumerate(classes) if i not in hidden]
    if not rows or len(rows) > MAX_LEGEND_CLASSES:
        return None
    (_tw, th), base = cv2.getTextSize("Mg", FONT, scale, 1)
    line = th + base + 6
    width = max(cv2.getTextSize(name, FONT, scale, 1)[0][0] for name, _ in rows) + line + 12
    patch = np.full((line * len(rows) + 6, width, 3), 32, np.uint8)
    for i, (name, (r, g, b)) in enumerate(rows):
        y = 3 + i * line
        cv2.rectangle(patch, (4, y + 2), (4 + line - 6, y + line - 4), (b, g, r), -1)
        cv2.putText(patch, name, (line + 4, y + th + 3), FONT, scale, (240, 240, 240), 1,
                    cv2.LINE_AA)
    return patch


class Drawer:
    """Draws one frame; built once per run so the LUT and legend are computed once."""

    def __init__(self, config: DrawConfig, classes: Sequence[str], palette: Sequence[RGB],
                 unknown: bool = False) -> None:
        self.config = config
        colours = full_palette(classes, config.palette or palette)
        hidden = resolve_classes(config.ignore, classes)
        self.lut = palette_lut(colours, hidden)
        skip = np.zeros(256, np.uint8)
        skip[[h for h in hidden if 0 <= h < 256]] = 255
        skip[len(colours):] = 255
        self._skip_lut = skip
        self._needs_skip = bool(hidden) or unknown
        self._kernel = np.ones((config.contour_thickness + 1,) * 2, np.uint8)
        self._legend_args = (list(classes), colours, hidden)
        self._legends: dict[float, np.ndarray | None] = {}
        self.legend = render_legend(classes, colours, hidden) if config.legend else None
        self.view: ViewState | None = None  # set by attach_view: keys in a window change it

    @property
    def hud_wanted(self) -> bool:
        """Whether the next frame shows the HUD (the config's, or the window's h key)."""
        return self.view.current().hud if self.view is not None else self.config.hud

    def legend_for(self, width: int, show: bool | None = None) -> np.ndarray | None:
        """Legend sized to the frame (cached per size), so small frames stay readable."""
        if not (self.config.legend if show is None else show):
            return None
        scale = text_scale(width)
        if scale not in self._legends:
            self._legends[scale] = render_legend(*self._legend_args, scale=scale)
        return self._legends[scale]

    def skip_mask(self, labels: np.ndarray) -> np.ndarray | None:
        """255 where a pixel must show the frame unchanged (ignored class or unknown)."""
        if not self._needs_skip:
            return None
        mask = cv2.LUT(labels, self._skip_lut)
        return mask if cv2.countNonZero(mask) else None

    def overlay(self, frame: np.ndarray, labels: np.ndarray,
                alpha: float | None = None) -> np.ndarray:
        a = self.config.alpha if alpha is None else alpha
        out = cv2.addWeighted(frame, 1.0 - a, colorize(labels, self.lut), a, 0.0)
        skip = self.skip_mask(labels)
        if skip is not None:
            cv2.copyTo(frame, skip, out)
        return out

    def contours(self, frame: np.ndarray, labels: np.ndarray) -> np.ndarray:
        edges = cv2.morphologyEx(labels, cv2.MORPH_GRADIENT, self._kernel)
        edges = cv2.compare(edges, np.zeros_like(edges), cv2.CMP_GT)
        skip = self.skip_mask(labels)
        if skip is not None:
            edges = cv2.bitwise_and(edges, cv2.bitwise_not(skip))
        out = frame.copy()
        cv2.copyTo(colorize(labels, self.lut), edges, out)
        return out

    def draw(self, frame: np.ndarray, labels: np.ndarray,
             hud: Sequence[str] | None = None) -> np.ndarray:
        view = self.view.current() if self.view is not None else None
        mode, legend_on, hud_on = view_choice(self.config, view)
        if mode == "overlay":
            out = self.overlay(frame, labels)
        elif mode == "mask":
            out = colorize(labels, self.lut)
        elif mode == "side-by-side":
            out = cv2.hconcat([frame, self.overlay(frame, labels)])
        elif mode == "contours":
            out = self.contours(frame, labels)
        else:
            out = frame.copy()
        if view is not None:  # a key changed the layout: every sink keeps its frame size
            out = fit_into(out, output_shape(frame.shape, self.config.mode))
        hidden = view is not None and view.hidden  # segmentation hidden: no legend either
        legend = None if hidden else self.legend_for(out.shape[1], legend_on)
        if legend is not None:
            paste_top_right(out, legend)
        if hud and hud_on:
            draw_hud(out, hud, text_scale(out.shape[1]))
        return out


def view_choice(config: DrawConfig, view: View | None) -> tuple[str, bool, bool]:
    """(mode, legend, hud) of this frame: the window's view where there is one, else the
    config's (mode "none" = the plain frame: a view that hides the segmentation)."""
    if view is None:
        return config.mode, config.legend, config.hud
    return ("none" if view.hidden else view.mode), view.legend, view.hud


def output_shape(frame_shape: Sequence[int], mode: str) -> tuple[int, int]:
    """(height, width) of the picture ``mode`` draws for a frame: side-by-side is twice
    as wide.  Files and streams are opened at the run's first size and keep it."""
    height, width = int(frame_shape[0]), int(frame_shape[1])
    return height, width * 2 if mode == "side-by-side" else width


def fit_into(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``image`` scaled to fit (height, width), centred on black; unchanged when it fits.

    A window key that switches to side-by-side (or back) changes the picture's width;
    video files and network encoders take one frame size, so the picture is letterboxed.
    """
    height, width = int(shape[0]), int(shape[1])
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1
                       else cv2.INTER_LINEAR)
    out = np.zeros((height, width, *image.shape[2:]), image.dtype)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y : y + nh, x : x + nw] = small
    return out


def text_scale(width: int) -> float:
    """Font scale for a frame width: legible at 320 px, not shouting at 1920 px."""
    return round(min(0.7, max(0.3, width / 1400)), 2)


def paste_top_right(image: np.ndarray, patch: np.ndarray, margin: int = 8) -> None:
    h, w = patch.shape[:2]
    if h + 2 * margin > image.shape[0] or w + 2 * margin > image.shape[1] // 2:
        return  # does not fit: skip rather than cover the picture
    x = image.shape[1] - w - margin
    image[margin : margin + h, x : x + w] = patch


def draw_hud(image: np.ndarray, lines: Sequence[str], scale: float = 0.5,
             bottom: bool = False) -> None:
    """White text on a darkened box, top-left (the HUD) or bottom-left (key hints)."""
    (_, th), base = cv2.getTextSize("Mg", FONT, scale, 1)
    step = th + base + 4
    width = max(cv2.getTextSize(s, FONT, scale, 1)[0][0] for s in lines) + 12
    height = step * len(lines) + 6
    top = max(0, image.shape[0] - height) if bottom else 0
    region = image[top : top + height, :width]
    region[:] = region // 3  # darken behind the text so it reads on any frame
    for i, text in enumerate(lines):
        cv2.putText(image, text, (6, top + 4 + th + i * step), FONT, scale, (255, 255, 255),
                    1, cv2.LINE_AA)
