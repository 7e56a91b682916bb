"""preprocess.logits_to_labels (cv2 argmax) must equal the numpy formulation, ties included."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from segedge.runtime.preprocess import (
    Geometry,
    argmax_channels,
    labels_to_frame,
    logits_to_labels,
)


def numpy_reference(logits: np.ndarray, geom: Geometry, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The obvious numpy version: argmax(0), or an HxWxC upsample then argmax(2)."""
    if mode == "fast" or (geom.frame_hw == geom.net_hw and not geom.letterbox):
        labels = logits.argmax(0).astype(np.uint8)
        conf = logits.max(0).astype(np.float32)
        return labels_to_frame(labels, geom), labels_to_frame(conf, geom)
    hwc = logits.transpose(1, 2, 0).astype(np.float32)
    if geom.letterbox:
        ch, cw = geom.content_hw
        hwc = hwc[geom.pad_top : geom.pad_top + ch, geom.pad_left : geom.pad_left + cw]
    fh, fw = geom.frame_hw
    channels = [cv2.resize(np.ascontiguousarray(hwc[..., i : i + 4]), (fw, fh),
                           interpolation=cv2.INTER_LINEAR) for i in range(0, hwc.shape[2], 4)]
    up = np.concatenate([c.reshape(fh, fw, -1) for c in channels], axis=2)
    return up.argmax(2).astype(np.uint8), up.max(2)


GEOMETRIES = {
    "same size": Geometry((36, 60), (36, 60), 1.0, 1.0),
    "stride rounding": Geometry((35, 59), (36, 60), 36 / 35, 60 / 59),
    "downscaled": Geometry((90, 150), (36, 60), 0.4, 0.4),
    "letterbox": Geometry((20, 50), (36, 60), 0.5, 0.5, 8, 5, True),
}


@pytest.mark.parametrize("classes", [1, 3, 21])
@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
def test_equals_reference(classes: int, mode: str, geometry: str) -> None:
    rng = np.random.default_rng(classes)
    logits = rng.standard_normal((classes, 36, 60)).astype(np.float32)
    if classes > 1:
        logits[1, :4] = logits[0, :4]  # ties: the first class must win
    geom = GEOMETRIES[geometry]
    ref_labels, ref_max = numpy_reference(logits, geom, mode)
    labels, best = logits_to_labels(logits, geom, mode)
    assert labels.dtype == np.uint8 and labels.shape == geom.frame_hw
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(best, ref_max)


def test_float16_logits() -> None:
    logits = np.random.default_rng(0).standard_normal((5, 8, 8)).astype(np.float16)
    labels, _ = logits_to_labels(logits, Geometry((8, 8), (8, 8), 1.0, 1.0))
    np.testing.assert_array_equal(labels, logits.argmax(0))


def test_ties_pick_the_first_class() -> None:
    planes = [np.full((2, 2), 1.0, np.float32), np.full((2, 2), 1.0, np.float32),
              np.array([[0.0, 2.0], [1.0, 1.0]], np.float32)]
    labels, best = argmax_channels(planes)
    np.testing.assert_array_equal(labels, [[0, 2], [0, 0]])
    np.testing.assert_array_equal(best, [[1.0, 2.0], [1.0, 1.0]])


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        logits_to_labels(np.zeros((2, 4, 4), np.float32), GEOMETRIES["same size"], "slow")
