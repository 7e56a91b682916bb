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


def test_fit_into_letterboxes_and_keeps_a_fitting_image() -> None:
    from segedge.runtime.draw import fit_into, output_shape

    image = np.full((60, 160, 3), 200, np.uint8)  # side-by-side of an 80x60 frame
    same = fit_into(image, (60, 160))
    assert same is image
    boxed = fit_into(image, (60, 80))
    assert boxed.shape == (60, 80, 3)
    assert not boxed[:15].any() and not boxed[45:].any()
    assert (boxed[15:45] == 200).all()
    tall = fit_into(np.full((60, 80, 3), 50, np.uint8), (60, 160))  # pillarboxed
    assert not tall[:, :40].any() and not tall[:, 120:].any() and (tall[:, 40:120] == 50).all()
    assert output_shape((60, 80, 3), "side-by-side") == (60, 160)
    assert output_shape((60, 80, 3), "contours") == (60, 80)


def test_without_a_view_the_drawer_draws_its_config_exactly() -> None:
    """--visualize none still gets its legend (as before views existed)."""
    frame = np.zeros((240, 320, 3), np.uint8)
    labels = np.zeros((240, 320), np.uint8)
    drawer = Drawer(DrawConfig(mode="none", legend=True, hud=False), CLASSES, PALETTE)
    out = drawer.draw(frame, labels)
    assert out[:, :160].sum() == 0 and out[:, 160:].any()
    assert drawer.view is None and drawer.hud_wanted is False


def _instances() -> tuple[object, np.ndarray]:
    from segedge.runtime.tasks.instance import Instance, InstanceResult

    ids = np.zeros((60, 80), np.uint8)
    ids[10:40, 10:50] = 1
    result = InstanceResult((Instance(1, "car", 0.9, (10.0, 10.0, 49.0, 39.0), 1200),), ids)
    return result, np.full((60, 80, 3), 90, np.uint8)


def test_instance_drawer_follows_the_view() -> None:
    from segedge.runtime.tasks.instance import InstanceDrawer
    from segedge.runtime.view import ViewState

    result, frame = _instances()
    config = DrawConfig(mode="overlay", hud=False, boxes=False)
    drawer = InstanceDrawer(config, ("bg", "car"))
    state = ViewState.from_config(config)
    drawer.view = state
    state.press("c")  # contours: the outline coloured, the inside left as the frame
    out = drawer.draw(frame, result)
    assert (out[25, 30] == 90).all() and (out[10, 30] != 90).any()
    state.press("o")
    state.press("o")  # hidden: the frame, without labels
    np.testing.assert_array_equal(drawer.draw(frame, result), frame)
    state.press("s")
    assert drawer.draw(frame, result).shape == frame.shape  # letterboxed to the run's size
