"""preprocess.to_tensor (the fast cv2 path) must equal the plain numpy formulation bit for bit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segedge.runtime.metadata import InputSpec
from segedge.runtime.preprocess import prepare, resize_frame, to_tensor


def numpy_reference(images_bgr: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """The obvious numpy version: flip view, normalise in NHWC, transposing copy."""
    batch = np.stack(images_bgr)
    if spec.color_order == "RGB":
        batch = batch[..., ::-1]
    if spec.format == "uint8":
        if spec.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)
    mean = np.asarray(spec.mean, np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
    x = (batch.astype(np.float32) - mean) * inv_std
    if spec.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


@pytest.mark.parametrize(("fmt", "layout", "order"),
                         list(itertools.product(("uint8", "float"), ("NHWC", "NCHW"),
                                                ("RGB", "BGR"))))
def test_equals_reference(fmt: str, layout: str, order: str) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(2)]
    spec = InputSpec(format=fmt, layout=layout, color_order=order,  # type: ignore[arg-type]
                     mean=(0.3, 0.5, 0.7), std=(0.2, 0.25, 0.3))
    ref, fast = numpy_reference(images, spec), to_tensor(images, spec)
    assert fast.shape == ref.shape and fast.dtype == ref.dtype
    assert fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_prepare_equals_resize_then_reference(resize: str) -> None:
    frame = np.random.default_rng(2).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    spec = InputSpec(size=(32, 32), resize=resize)  # type: ignore[arg-type]
    image, g_ref = resize_frame(frame, spec)
    fast, [g_fast] = prepare([frame], spec)
    np.testing.assert_array_equal(fast, numpy_reference([image], spec))
    assert g_fast == g_ref
