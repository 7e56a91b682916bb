"""An artifact's metadata is a contract; these checks catch one that breaks it.

Metadata can lie (hand-edited, copied from another model, a foreign ONNX
given wrong flags): a layout or size the graph does not take, a zero std, an
output of another shape.  Left alone, that surfaces as ONNX Runtime's raw
error text, a NaN-filled picture or an allocator failure.  The Segmenter
checks the input spec when it opens an artifact and wraps the first
preprocess / inference / decode, so the user gets one line naming what the
metadata promised and what the artifact did.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from segedge.runtime.errors import ArtifactError, SegedgeError
from segedge.runtime.metadata import InputSpec

MAX_SIDE = 16384  # a network input side beyond this is a lie, not a model
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*")
T = TypeVar("T")


def first_line(err: BaseException, limit: int = 300) -> str:
    """The library's message as one line, without ONNX Runtime's status prefix."""
    text = " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip())
    text = _ORT_PREFIX.sub("", text) or type(err).__name__
    return text[:limit]


def check_input_spec(spec: InputSpec, source: str) -> None:
    """Raise ArtifactError unless the input spec describes something a frame can become."""
    choices = {"layout": ("NCHW", "NHWC"), "format": ("float", "uint8"),
               "color_order": ("RGB", "BGR"), "resize": ("stretch", "letterbox")}
    for name, allowed in choices.items():
        value = getattr(spec, name)
        if value not in allowed:
            raise ArtifactError(f"{source}: expected metadata input.{name} one of "
                                f"{', '.join(allowed)}, got {value!r}")
    if spec.size is not None:
        size = tuple(spec.size)
        if len(size) != 2 or not all(isinstance(v, int) and 0 < v <= MAX_SIDE for v in size):
            raise ArtifactError(f"{source}: expected metadata input.size [H, W] with sides in "
                                f"1..{MAX_SIDE} (or null for a dynamic graph), got {spec.size!r}")
    if not isinstance(spec.stride, int) or not 1 <= spec.stride <= MAX_SIDE:
        raise ArtifactError(f"{source}: expected metadata input.stride in 1..{MAX_SIDE}, "
                            f"got {spec.stride!r}")
    if spec.format == "float":
        for name in ("mean", "std"):
            values = tuple(getattr(spec, name))
            if len(values) != 3 or not all(isinstance(v, int | float) and math.isfinite(v)
                                           for v in values):
                raise ArtifactError(f"{source}: expected metadata input.{name} of three finite "
                                    f"numbers, got {values!r}")
        if any(v == 0 for v in spec.std):
            raise ArtifactError(f"{source}: expected a non-zero metadata input.std (it divides "
                                f"every pixel), got {tuple(spec.std)!r}")


def describe_input(spec: InputSpec) -> str:
    size = "x".join(map(str, spec.size)) if spec.size else "dynamic"
    return f"{spec.layout} {spec.format} input {spec.name!r} of size {size}"


def describe_outputs(outputs: Mapping[str, Any]) -> str:
    return ", ".join(f"{name} {list(getattr(v, 'shape', []))} {getattr(v, 'dtype', '?')}"
                     for name, v in outputs.items()) or "no outputs"


def guarded(step: Callable[[], T], source: str, promised: str, seen: str = "") -> T:
    """Run ``step``; a library error (not a SegedgeError) becomes one ArtifactError line:
    what the metadata promised, what the library said, and what was seen."""
    try:
        return step()
    except ArtifactError as err:
        if str(err).startswith(source):
            raise
        raise ArtifactError(f"{source}: {err}") from err
    except SegedgeError:
        raise
    except Exception as err:  # noqa: BLE001 - any library error (allocator too), one line
        raise ArtifactError(f"{source}: expected {promised} (as its metadata says), got "
                            f"{type(err).__name__}: {first_line(err)}"
                            + (f" ({seen})" if seen else "")) from err
