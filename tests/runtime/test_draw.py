"""Drawing: palette LUT, overlay arithmetic, ignored classes, modes, legend, HUD."""

from __future__ import annotations

import numpy as np
import pytest

from segedge.runtime.draw import (
    UNKNOWN_LABEL,
    DrawConfig,
    Drawer,
    colorize,
    full_palette,
    palette_lut,
    render_legend,
)
from segedge.runtime.errors import InputError

CLASSES = ("road", "car", "sky")
PALETTE = ((128, 64, 128), (0, 0, 142), (70, 130, 180))  # RGB


def frame_and_labels() -> tuple[np.ndarray, np.ndarray]:
    frame = np.full((60, 80, 3), 100, np.uint8)
    labels = np.zeros((60, 80), np.uint8)
    labels[:, 40:] = 1
    labels[:20, :] = 2
    return frame, labels


def plain(mode: str = "overlay", **kw: object) -> Drawer:
    config = DrawConfig(mode=mode, legend=False, hud=False, **kw)  # type: ignore[arg-type]
    return Drawer(config, CLASSES, PALETTE)


def test_colorize_is_the_palette_in_bgr() -> None:
    _, labels = frame_and_labels()
    colours = colorize(labels, palette_lut(PALETTE))
    assert tuple(colours[30, 0]) == (128, 64, 128)[::-1]
    assert tuple(colours[30, 79]) == (142, 0, 0)
    assert tuple(colours[0, 0]) == (180, 130, 70)


def test_overlay_blends_with_alpha() -> None:
    frame, labels = frame_and_labels()
    out = plain(alpha=0.25).draw(frame, labels)
    expected = 0.75 * 100 + 0.25 * np.array((128, 64, 128)[::-1])
    np.testing.assert_allclose(out[30, 0], expected, atol=1)
    assert out.shape == frame.shape and out.dtype == np.uint8


def test_ignored_class_leaves_the_frame_untouched_by_name_or_index() -> None:
    frame, labels = frame_and_labels()
    for ignore in (("car",), (1,), ("1",)):
        out = plain(ignore=ignore).draw(frame, labels)  # type: ignore[arg-type]
        np.testing.assert_array_equal(out[30:, 40:], frame[30:, 40:])
        assert not np.array_equal(out[30:, :40], frame[30:, :40])
    with pytest.raises(InputError, match="--ignore-class"):
        plain(ignore=("bus",))
    with pytest.raises(InputError, match="an index below 3"):
        plain(ignore=(7,))


def test_unknown_label_is_not_drawn() -> None:
    frame, labels = frame_and_labels()
    labels[50:, :10] = UNKNOWN_LABEL
    drawer = Drawer(DrawConfig(legend=False, hud=False), CLASSES, PALETTE, unknown=True)
    out = drawer.draw(frame, labels)
    np.testing.assert_array_equal(out[50:, :10], frame[50:, :10])


def test_mask_and_side_by_side_and_contours() -> None:
    frame, labels = frame_and_labels()
    mask = plain("mask").draw(frame, labels)
    np.testing.assert_array_equal(mask, colorize(labels, palette_lut(PALETTE)))
    side = plain("side-by-side").draw(frame, labels)
    assert side.shape == (60, 160, 3)
    np.testing.assert_array_equal(side[:, :80], frame)
    contours = plain("contours").draw(frame, labels)
    changed = np.any(contours != frame, axis=2)
    assert changed[19:21, 5].all() and changed[40, 39:41].all()  # on the class boundaries
    assert not changed[45, 10] and not changed[5, 60]  # not inside regions
    assert changed.mean() < 0.2


def test_palette_override_and_short_palette() -> None:
    frame, labels = frame_and_labels()
    drawer = Drawer(DrawConfig(mode="mask", palette=((255, 0, 0),), legend=False, hud=False),
                    CLASSES, PALETTE)
    out = drawer.draw(frame, labels)
    assert tuple(out[30, 0]) == (0, 0, 255)  # class 0 from the override, BGR
    assert len(full_palette(CLASSES, ((1, 2, 3),))) == 3


def test_legend_and_hud_are_drawn() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    labels = np.zeros((240, 320), np.uint8)
    legend = render_legend(CLASSES, PALETTE)
    assert legend is not None and legend.shape[0] > 3 * 10
    drawer = Drawer(DrawConfig(mode="mask", legend=True, hud=True), CLASSES, PALETTE)
    out = drawer.draw(frame, labels, ["FPS 12.0"])
    colour = colorize(labels, palette_lut(PALETTE))
    differs = np.any(out != colour, axis=2)
    assert differs[:20, :60].any()  # HUD top-left
    assert differs[:40, -60:].any()  # legend top-right
    assert not differs[200:, 100:200].any()
    assert render_legend(tuple(str(i) for i in range(100)), full_palette(
        tuple(str(i) for i in range(100)), ())) is None  # too many classes for a legend


@pytest.mark.parametrize(("kw", "match"), [({"alpha": 1.5}, "--alpha"),
                                           ({"mode": "heatmap"}, "--visualize")])
def test_bad_config(kw: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        DrawConfig(**kw)  # type: ignore[arg-type]
