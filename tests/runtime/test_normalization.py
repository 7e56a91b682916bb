"""The one mean/std rule of segexport and segrun: y = (x - M) / S * K, stored in 0..1 units."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime.cli_parse import foreign_hints
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD, InputSpec
from segedge.runtime.normalization import (
    Normalization,
    infer_units,
    normalization,
    parse_numbers,
    parse_scale,
)
from segedge.runtime.preprocess import to_tensor

PIXEL_MEAN = (123.675, 116.28, 103.53)  # ImageNet's, in pixel units
PIXEL_STD = (58.395, 57.12, 57.375)


def runtime_input(norm: Normalization, bgr: np.ndarray) -> np.ndarray:
    """What segedge's preprocessing feeds a float graph, from the stored 0..1 fields."""
    spec = InputSpec(format="float", layout="NCHW", color_order="BGR", mean=norm.unit_mean,
                     std=norm.unit_std, size=bgr.shape[:2])
    return to_tensor([bgr], spec)[0].transpose(1, 2, 0)


@pytest.mark.parametrize("norm", [
    Normalization(IMAGENET_MEAN, IMAGENET_STD),
    Normalization(PIXEL_MEAN, PIXEL_STD, "pixel"),
    Normalization(PIXEL_MEAN, PIXEL_STD, "pixel", scale=1 / 255),  # (x - m) / s / 255
    Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), scale=2.0),
    Normalization((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "pixel"),  # raw pixel values
])
def test_the_stored_fields_reproduce_the_rule(norm: Normalization) -> None:
    """y = (x - M) / S * K computed by hand == what the runtime computes from the metadata."""
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    k = 255.0 if norm.units == "unit" else 1.0
    by_hand = (pixels.astype(np.float64) - np.array(norm.mean) * k) / (
        np.array(norm.std) * k) * norm.scale
    np.testing.assert_allclose(norm.apply(pixels), by_hand, rtol=1e-12)
    np.testing.assert_allclose(runtime_input(norm, pixels), by_hand, rtol=2e-6, atol=2e-5)
    back = Normalization.from_unit(norm.unit_mean, norm.unit_std)  # what an artifact says
    np.testing.assert_allclose(back.apply(pixels), by_hand, rtol=1e-12, atol=1e-9)


def test_pixel_and_unit_forms_of_one_convention_store_the_same_fields() -> None:
    pixel = Normalization(PIXEL_MEAN, PIXEL_STD, "pixel")
    assert pixel.unit_mean == pytest.approx(IMAGENET_MEAN, abs=1e-12)
    assert pixel.unit_std == pytest.approx(IMAGENET_STD, abs=1e-12)
    unit = Normalization(IMAGENET_MEAN, IMAGENET_STD)
    assert unit.unit_mean == IMAGENET_MEAN and unit.unit_std == IMAGENET_STD  # exact
    authors = Normalization((72.39, 82.91, 73.16), (45.32, 46.15, 44.91), "pixel", 1 / 255)
    assert authors.offset == pytest.approx((72.39, 82.91, 73.16))
    assert authors.divisor == pytest.approx((45.32 * 255, 46.15 * 255, 44.91 * 255))
    assert authors.unit_std == pytest.approx((45.32, 46.15, 44.91))  # std in 0..1 units > 1


def test_units_omitted_follow_the_mean() -> None:
    assert infer_units((0.485, 0.456, 0.406)) == "unit"
    assert infer_units(PIXEL_MEAN) == "pixel" and infer_units(None) == "unit"
    inferred = normalization(PIXEL_MEAN, PIXEL_STD)
    assert inferred.units == "pixel" and inferred.inferred
    assert inferred.note() == ("--mean 123.675,116.28,103.53 has values above 1: mean and std "
                               "read in pixel units (--norm-units pixel)")
    # a 0..1 mean with a std above 1 is the (x - m) / s / 255 form written in 0..1 units
    mixed = normalization((0.28, 0.33, 0.29), (45.3, 46.2, 44.9))
    assert mixed.units == "unit" and mixed.unit_std == (45.3, 46.2, 44.9)
    defaults = normalization(None, None, default_mean=(0.5, 0.5, 0.5), default_std=(0.2,) * 3)
    assert defaults.unit_mean == (0.5, 0.5, 0.5) and defaults.note() is None


@pytest.mark.parametrize(("make", "message"), [
    (lambda: normalization(None, (0.2, 0.0, 0.2)),
     "--std: expected positive per-channel values, got (0.2, 0.0, 0.2)"),
    (lambda: normalization(None, (0.2, -1.0, 0.2), "pixel"),
     "--mean: expected both --mean and --std in pixel units, got only the other one"),
    (lambda: normalization((0.5, math.nan, 0.5), None),
     "--mean: expected finite per-channel values, got (0.5, nan, 0.5)"),
    (lambda: normalization(None, (math.inf, 1.0, 1.0)),
     "--std: expected finite per-channel values, got (inf, 1.0, 1.0)"),
    (lambda: normalization(PIXEL_MEAN, PIXEL_STD, "unit"),
     "--mean: expected 0..1 values in 0..1 units (pixel values need --norm-units pixel), "
     "got 123.675,116.28,103.53"),
    (lambda: normalization(PIXEL_MEAN, IMAGENET_STD),
     "--std: expected pixel units like --mean (a mean value above 1 means pixel units; give "
     "--norm-units to say which), got 0.229,0.224,0.225"),
    (lambda: normalization(IMAGENET_MEAN, IMAGENET_STD, scale=0.0),
     "--scale: expected a positive finite number (e.g. 1/255), got 0.0"),
    (lambda: parse_scale("1/0"), "--scale: expected a positive number or fraction (e.g. "
                                 "1/255), got '1/0'"),
    (lambda: parse_numbers("--mean", "1,2"), "--mean: expected three comma-separated numbers, "
                                             "got '1,2'"),
])
def test_impossible_values_are_refused_in_one_line(make: object, message: str) -> None:
    with pytest.raises(InputError) as err:
        make()  # type: ignore[operator]
    assert str(err.value) == message


def test_scale_takes_fractions() -> None:
    assert parse_scale("1/255") == pytest.approx(1 / 255, rel=1e-15)
    assert parse_scale("0.5") == 0.5


def test_segrun_reads_foreign_flags_by_the_same_rule() -> None:
    """segrun's --mean/--std give exactly what segexport stores for the same words."""
    model = Path("foreign.onnx")
    legacy = foreign_hints(model, "123.675,116.28,103.53", "58.395,57.12,57.375", None, False,
                           None)
    assert legacy is not None  # the 0..255 form segrun always accepted still works
    assert legacy.input.mean == pytest.approx(IMAGENET_MEAN, abs=1e-12)
    assert legacy.input.std == pytest.approx(IMAGENET_STD, abs=1e-12)
    authors = foreign_hints(model, "72.39,82.91,73.16", "45.32,46.15,44.91", None, True, None,
                            "pixel", "1/255")
    want = normalization((72.39, 82.91, 73.16), (45.32, 46.15, 44.91), "pixel", 1 / 255)
    assert authors is not None and authors.input.color_order == "BGR"
    assert authors.input.mean == want.unit_mean and authors.input.std == want.unit_std
    # before this rule a pixel std beside a 0..1 mean was divided by 255 on its own
    mixed = foreign_hints(model, "0.28,0.33,0.29", "45.3,46.2,44.9", None, False, None)
    assert mixed is not None and mixed.input.std == (45.3, 46.2, 44.9)
    with pytest.raises(InputError, match="^--std: expected positive per-channel values"):
        foreign_hints(model, None, "0,0,0", None, False, None)
    with pytest.raises(InputError, match="^--scale: expected --mean and --std to apply to"):
        foreign_hints(model, None, None, None, False, None, None, "1/255")
