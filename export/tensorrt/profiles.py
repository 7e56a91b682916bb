"""The optimization-profile shapes of a TensorRT plan's image input: (min, opt, max) per input.

Why a module of its own: the cache key (is the plan dynamic?) and the builder both ask it
before and after parsing, and it is the part of the engine build a user's flags shape.
"""

from __future__ import annotations

from typing import Any

from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.sidecar import ProfileShapes

HW = tuple[int, int]


def _hw(label: str, value: Any, stride: int) -> HW:
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise InputError(label, "(height, width)", value) from None
    if h <= 0 or w <= 0 or h % stride or w % stride:
        raise InputError(label, f"positive height/width, multiples of stride {stride}", (h, w))
    return h, w


def profile_shapes(meta: ArtifactMetadata, min_hw: HW | None, opt_hw: HW | None,
                   max_hw: HW | None, batch: int | tuple[int, int, int] | None = None
                   ) -> ProfileShapes:
    """Optimisation-profile shapes {input name: (min, opt, max)} for the image input.

    ``batch=None`` takes the ONNX's static batch (N of an N-image graph), else 1.
    """
    spec = meta.input
    if batch is None:
        batch = spec.batch or 1
    given = {"min_hw": min_hw, "opt_hw": opt_hw, "max_hw": max_hw}
    hws: tuple[HW, HW, HW]
    if spec.size is not None:
        static = (int(spec.size[0]), int(spec.size[1]))
        for label, hw in given.items():
            if hw is not None and tuple(hw) != static:
                raise InputError(label, f"{static} (the ONNX input size is static)", tuple(hw))
        hws = (static, static, static)
    else:
        missing = [label for label, hw in given.items() if hw is None]
        if missing:
            raise InputError(", ".join(missing), "(H, W) for min, opt and max: the ONNX has "
                             "dynamic height/width", None)
        stride = max(1, spec.stride)
        hws = (_hw("min_hw", min_hw, stride), _hw("opt_hw", opt_hw, stride),
               _hw("max_hw", max_hw, stride))
        if not all(a <= b <= c for a, b, c in zip(*hws, strict=True)):
            raise InputError("profile", "min_hw <= opt_hw <= max_hw in height and width", hws)
    batches = (batch,) * 3 if isinstance(batch, int) else tuple(batch)
    if len(batches) != 3 or any(int(b) <= 0 for b in batches) or not (
            batches[0] <= batches[1] <= batches[2]):
        raise InputError("batch", "a positive int or (min, opt, max) ascending", batch)
    if spec.batch is not None and any(b != spec.batch for b in batches):
        raise InputError("batch", f"{spec.batch} (the ONNX batch is static)", batch)

    low, opt, high = (spec.shape(int(n), hw) for n, hw in zip(batches, hws, strict=True))
    return {spec.name: (low, opt, high)}


def has_dynamic_input(meta: ArtifactMetadata, shapes: ProfileShapes) -> bool:
    """Will the plan have a dynamic input (height/width or batch decided at run time)?  Known
    from the artifact's metadata before the network is parsed, for the cache key."""
    spec = meta.input
    return spec.size is None or spec.batch is None or any(
        low != high for low, _, high in shapes.values())
