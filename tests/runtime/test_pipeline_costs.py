"""The cheaper per-frame stages give exactly the pixels of the plain OpenCV calls they
replace: height-only resize as one plane, colorize as three 1-channel LUTs, the tensor as a
view of the resized frame (never of the caller's), and the resize timed on its own."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segedge.runtime.draw import colorize, palette_lut
from segedge.runtime.metadata import InputSpec, default_palette
from segedge.runtime.preprocess import prepare, stretch


@pytest.mark.parametrize(("src", "dst"), [
    ((540, 960), (544, 960)),  # the dash-cam at a stride-32 network size
    ((540, 960), (352, 960)),
    ((37, 64), (96, 64)),
    ((540, 960), (544, 640)),  # width changes: the ordinary 3-channel path
])
def test_stretch_is_cv2_resize_linear_pixel_for_pixel(src: tuple[int, int],
                                                      dst: tuple[int, int]) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (*src, 3), dtype=np.uint8)
    want = cv2.resize(frame, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    got = stretch(frame, *dst)
    assert got.shape == (*dst, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)
    # a non-contiguous frame (a crop) takes the ordinary path and still matches
    crop = frame[:, : src[1] - 1]
    want = cv2.resize(crop, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(stretch(crop, *dst), want)


def test_colorize_is_the_three_channel_lut_for_every_label() -> None:
    lut = palette_lut(default_palette(256))
    labels = np.arange(256, dtype=np.uint8).repeat(3).reshape(48, 16)
    want = cv2.LUT(cv2.merge([labels, labels, labels]), lut)
    np.testing.assert_array_equal(colorize(labels, lut), want)


BGR_UINT8 = InputSpec(format="uint8", layout="NHWC", color_order="BGR", size=(64, 96))


def test_the_tensor_views_the_resized_frame_and_never_the_callers() -> None:
    frame = np.random.default_rng(1).integers(0, 256, (60, 96, 3), dtype=np.uint8)
    timings: dict[str, float] = {}
    tensor, (geom,) = prepare([frame], BGR_UINT8, timings)
    assert tensor.shape == (1, 64, 96, 3) and geom.net_hw == (64, 96)
    np.testing.assert_array_equal(tensor[0], stretch(frame, 64, 96))
    assert not np.shares_memory(tensor, frame)
    assert timings["resize"] >= 0.0 and set(timings) == {"resize"}
    same_size = np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    tensor, _ = prepare([same_size], BGR_UINT8)
    assert not np.shares_memory(tensor, same_size)  # no resize: copied, not aliased
    np.testing.assert_array_equal(tensor[0], same_size)
    rgb = InputSpec(format="uint8", layout="NHWC", color_order="RGB", size=(64, 96))
    tensor, _ = prepare([frame], rgb)
    np.testing.assert_array_equal(tensor[0], stretch(frame, 64, 96)[..., ::-1])
