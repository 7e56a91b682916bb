"""The precision registry: mode name -> mode object (fp32, fp16, int8).

A new mode is a new file in this folder and one entry in ``_MODES``; the CLI
takes its choices from ``names()``.
"""

from __future__ import annotations

from segedge.export.precision.modes.base import LowerRequest, PrecisionMode
from segedge.export.precision.modes.fp16 import FP16
from segedge.export.precision.modes.fp32 import FP32
from segedge.export.precision.modes.int8 import INT8
from segedge.runtime.errors import InputError

_MODES: dict[str, PrecisionMode] = {m.name: m for m in (FP32(), FP16(), INT8())}

__all__ = ["LowerRequest", "PrecisionMode", "get", "names"]


def names() -> tuple[str, ...]:
    return tuple(_MODES)


def get(name: str) -> PrecisionMode:
    try:
        return _MODES[name]
    except (KeyError, TypeError):
        raise InputError("precision", " or ".join(_MODES), repr(name)) from None
