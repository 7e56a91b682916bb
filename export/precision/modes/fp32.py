"""FP32: the verified export itself; nothing to lower, no engine unless asked."""

from __future__ import annotations

from typing import ClassVar

from segedge.export.precision.modes.base import PrecisionMode


class FP32(PrecisionMode):
    name = "fp32"
    lowers: ClassVar[bool] = False
