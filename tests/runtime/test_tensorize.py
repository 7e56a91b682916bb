"""The fast tensor path must equal preprocess.to_tensor bit for bit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from segedge.runtime.metadata import InputSpec
from segedge.runtime.preprocess import prepare, to_tensor
from segedge.runtime.tensorize import prepare_one, to_tensor_fast


@pytest.mark.parametrize(("fmt", "layout", "order"),
                         list(itertools.product(("uint8", "float"), ("NHWC", "NCHW"),
                                                ("RGB", "BGR"))))
def test_equals_reference(fmt: str, layout: str, order: str) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(2)]
    spec = InputSpec(format=fmt, layout=layout, color_order=order,  # type: ignore[arg-type]
                     mean=(0.3, 0.5, 0.7), std=(0.2, 0.25, 0.3))
    ref, fast = to_tensor(images, spec), to_tensor_fast(images, spec)
    assert fast.shape == ref.shape and fast.dtype == ref.dtype
    assert fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_prepare_one_equals_prepare(resize: str) -> None:
    frame = np.random.default_rng(2).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    spec = InputSpec(size=(32, 32), resize=resize)  # type: ignore[arg-type]
    (ref, [g_ref]), (fast, g_fast) = prepare([frame], spec), prepare_one(frame, spec)
    np.testing.assert_array_equal(fast, ref)
    assert g_fast == g_ref
