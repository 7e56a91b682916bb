"""The one input-normalisation rule of segexport and segrun (torch-free).

The network input is, per channel,

    y = (x - M) / S * K

with x the pixel value 0..255 in the model's colour order.  Users give mean
and std in one of two units, plus an optional scale K:

- ``unit`` (0..1, torchvision's convention): M = 255 * mean, S = 255 * std;
- ``pixel`` (0..255, Caffe and many repositories): M = mean, S = std;
- ``K`` (``--scale``, default 1) covers conventions that divide again after the
  std, e.g. ``(BGR - mean) / std / 255`` is pixel units with K = 1/255.

Units omitted: 0..1 units, unless a mean value exceeds 1 (impossible in 0..1
units): then both are read in pixel units, as segrun always read such values.
Artifacts store the result in the existing 0..1 fields (``InputSpec.mean`` /
``std``): mean01 = M / 255 and std01 = S / (K * 255), so the runtime's
preprocessing and the graph baked by segexport need no change and an artifact
exported before this rule means what it meant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from segedge.runtime.errors import InputError

NormUnits = Literal["unit", "pixel"]
NORM_UNITS: tuple[str, ...] = get_args(NormUnits)
Triple = tuple[float, float, float]
PIXEL_MAX = 255.0

RULE = ("Network input y = (x - M) / S * K for pixel values x (0..255): 0..1 units "
        "(torchvision) give M = 255*mean, S = 255*std; --norm-units pixel gives M = mean, "
        "S = std; --scale K (default 1, e.g. 1/255 for (x - mean) / std / 255). Units "
        "omitted: 0..1, or pixel when a mean value exceeds 1.")


def _fmt(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def check_triple(flag: str, values: Sequence[float] | None) -> Triple | None:
    """Three finite numbers (None passes through); one line naming the flag otherwise."""
    if values is None:
        return None
    values = tuple(values)
    if len(values) != 3:
        raise InputError(flag, "three per-channel values", values)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
        raise InputError(flag, "finite per-channel values", values)
    return (float(values[0]), float(values[1]), float(values[2]))


def parse_numbers(flag: str, text: str) -> Triple:
    """``0.485,0.456,0.406`` or ``123.7 116.3 103.5``: three numbers, as given."""
    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(flag, "three comma-separated numbers", repr(text))
    checked = check_triple(flag, values)
    assert checked is not None
    return checked


def parse_scale(text: str, flag: str = "--scale") -> float:
    """``0.5`` or a fraction ``1/255``; finite and > 0."""
    try:
        num, _, den = text.partition("/")
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise InputError(flag, "a positive number or fraction (e.g. 1/255)", repr(text)) from None
    check_scale(value, flag)
    return value


def check_scale(value: float, flag: str = "--scale") -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InputError(flag, "a positive finite number (e.g. 1/255)", value)


def infer_units(mean: Sequence[float] | None) -> NormUnits:
    """Units omitted: pixel when a mean value exceeds 1 (impossible in 0..1 units), else unit."""
    return "pixel" if mean is not None and max(mean) > 1.0 else "unit"


@dataclass(frozen=True)
class Normalization:
    """mean/std as the user gave them, in `units`, with scale K; see the module docstring."""

    mean: Triple
    std: Triple
    units: NormUnits = "unit"
    scale: float = 1.0
    inferred: bool = False  # units were not given: read from the mean's range

    def __post_init__(self) -> None:
        if self.units not in NORM_UNITS:
            raise InputError("--norm-units", "one of " + ", ".join(NORM_UNITS), repr(self.units))
        check_triple("--mean", self.mean)
        check_triple("--std", self.std)
        if min(self.std) <= 0:
            raise InputError("--std", "positive per-channel values", tuple(self.std))
        check_scale(self.scale)
        if self.units == "unit" and not all(0.0 <= m <= 1.0 for m in self.mean):
            raise InputError("--mean", "0..1 values in 0..1 units (pixel values need "
                             "--norm-units pixel)", _fmt(self.mean))
        if self.inferred and self.units == "pixel" and max(self.std) < 1.0:
            raise InputError("--std", "pixel units like --mean (a mean value above 1 means "
                             "pixel units; give --norm-units to say which)",
                             _fmt(self.std))

    @property
    def offset(self) -> Triple:
        """M, in pixel values."""
        k = PIXEL_MAX if self.units == "unit" else 1.0
        return (self.mean[0] * k, self.mean[1] * k, self.mean[2] * k)

    @property
    def divisor(self) -> Triple:
        """S / K, in pixel values: y = (x - M) / divisor."""
        k = (PIXEL_MAX if self.units == "unit" else 1.0) / self.scale
        return (self.std[0] * k, self.std[1] * k, self.std[2] * k)

    @property
    def unit_mean(self) -> Triple:
        """What InputSpec.mean stores: M / 255 (0..1 input returned exactly as given)."""
        if self.units == "unit":
            return self.mean
        return (self.mean[0] / PIXEL_MAX, self.mean[1] / PIXEL_MAX, self.mean[2] / PIXEL_MAX)

    @property
    def unit_std(self) -> Triple:
        """What InputSpec.std stores: S / (K * 255) (0..1 input with K = 1 exactly as given)."""
        k = self.scale * (1.0 if self.units == "unit" else PIXEL_MAX)
        if k == 1.0:
            return self.std
        return (self.std[0] / k, self.std[1] / k, self.std[2] / k)

    @classmethod
    def from_unit(cls, mean: Sequence[float], std: Sequence[float]) -> Normalization:
        """What an artifact's metadata says (0..1 units, scale 1)."""
        return cls(tuple(mean), tuple(std))  # type: ignore[arg-type]

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """y for HxWx3 (or ...x3) pixel values in the model's colour order, float64."""
        x = np.asarray(pixels, np.float64)
        return (x - np.array(self.offset)) / np.array(self.divisor)

    def note(self) -> str | None:
        """What the report says when the units were read from the values."""
        if not self.inferred or self.units == "unit":
            return None
        return (f"--mean {_fmt(self.mean)} has values above 1: mean and std read in pixel "
                "units (--norm-units pixel)")

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "units": self.units,
                "scale": self.scale, "units_inferred": self.inferred,
                "offset": [round(v, 6) for v in self.offset],
                "divisor": [round(v, 6) for v in self.divisor], "rule": "y = (x - offset) / "
                "divisor, x in 0..255"}


def normalization(mean: Sequence[float] | None, std: Sequence[float] | None,
                  units: NormUnits | None = None, scale: float = 1.0,
                  default_mean: Sequence[float] = (0.485, 0.456, 0.406),
                  default_std: Sequence[float] = (0.229, 0.224, 0.225)) -> Normalization:
    """The flags (--mean, --std, --norm-units, --scale) -> one Normalization.

    A value not given comes from the model's defaults (0..1 units); pixel units
    need both, since a default cannot be in the user's units.
    """
    mean_t, std_t = check_triple("--mean", mean), check_triple("--std", std)
    resolved = units or infer_units(mean_t)
    if resolved == "pixel" and (mean_t is None or std_t is None):
        missing = "--mean" if mean_t is None else "--std"
        raise InputError(missing, "both --mean and --std in pixel units", "only the other one")
    return Normalization(mean_t or tuple(default_mean),  # type: ignore[arg-type]
                         std_t or tuple(default_std),  # type: ignore[arg-type]
                         resolved, scale, inferred=units is None and mean_t is not None)
