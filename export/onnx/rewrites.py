"""Export-time rewrites into forms TensorRT's ONNX parser accepts.

Each rule edits a copy of the network in place and says what it did; the
parity gate then compares the rewritten export with the untouched original,
so a rewrite can never silently change the masks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch._jit_internal import (  # type: ignore[attr-defined]  # made at import
    BroadcastingList2,
    boolean_dispatch,
)

Rule = Callable[[nn.Module], str | None]


def index_free_unpool(model: nn.Module) -> str | None:
    """SegNet's MaxUnpool (no TensorRT parser support) -> SpaceToDepth/Equal/DepthToSpace."""
    from segedge.export.models.segnet import set_index_free_unpool

    changed = set_index_free_unpool(model, True)
    return f"{changed} max-unpool layers -> index-free first-max unpooling" if changed else None


RULES: tuple[Rule, ...] = (index_free_unpool,)


def apply_rewrites(model: nn.Module) -> list[str]:
    return [msg for rule in RULES if (msg := rule(model))]


# --- static adaptive pooling -------------------------------------------------------------
# torch.onnx lowers a non-divisible adaptive_avg_pool2d to one Gather/Add chain per output
# cell (18 MB of int64 index constants for a 3 MB PSP-style model), and dynamo cannot lower a
# non-divisible adaptive_max_pool2d at all.  With the input size fixed, every bin is known:
# an axis whose bins have one size and one stride is an exact Average/MaxPool along it, any
# other axis a Slice + Reduce per bin (separable: a rectangle's mean or max is the mean or
# max, over its rows, of each row's).  Dynamic sizes keep the original op.


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling bins along one axis: [floor(i*n/o), ceil((i+1)*n/o))."""
    return [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _uniform(bins: list[tuple[int, int]]) -> tuple[int, int] | None:
    """(kernel, stride) when one fixed pooling window reproduces `bins`, else None."""
    kernels = {e - s for s, e in bins}
    strides = {b[0] - a[0] for a, b in zip(bins, bins[1:], strict=False)} or {1}
    if len(kernels) == 1 and len(strides) == 1:
        return kernels.pop(), strides.pop()
    return None


def _pool_axis(x: torch.Tensor, axis: int, size: int, out: int, kind: str) -> torch.Tensor:
    """Adaptive pooling of `x` along spatial `axis` (-2 or -1, `size` long: a Python int even
    while tracing) to `out` cells, exactly."""
    if size == out:
        return x
    bins = _bins(size, out)
    fixed = _uniform(bins)
    if fixed is not None:
        k, s = fixed
        kernel, stride = ((k, 1), (s, 1)) if axis == -2 else ((1, k), (1, s))
        pool = F.avg_pool2d if kind == "avg" else F.max_pool2d
        return pool(x, kernel, stride)
    parts = [x.narrow(axis, s, e - s) for s, e in bins]
    if kind == "avg":
        return torch.cat([p.mean(axis, keepdim=True) for p in parts], axis)
    return torch.cat([p.amax(axis, keepdim=True) for p in parts], axis)


def _static_pool(kind: str, x: torch.Tensor, output_size: Any) -> torch.Tensor | None:
    """The fixed-pooling form of adaptive pooling of `x`, or None where the op is kept."""
    if x.dim() not in (3, 4):
        return None
    h, w = x.shape[-2:]
    if torch.jit.is_tracing() and isinstance(h, torch.Tensor):  # the TorchScript exporter
        h, w = int(h), int(w)  # traces sizes as tensors; the export is static (see caller)
    if not (isinstance(h, int) and isinstance(w, int)):  # symbolic: keep the op
        return None
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    oh, ow = h if oh is None else int(oh), w if ow is None else int(ow)
    if oh < 1 or ow < 1 or oh > h or ow > w or (oh, ow) == (h, w):
        return None
    _used.add(f"adaptive_{kind}_pool2d {h}x{w}->{oh}x{ow}")
    if (oh, ow) == (1, 1):  # global: one Reduce (the original can trace as_strided+Gather)
        return x.mean((-2, -1), keepdim=True) if kind == "avg" else \
            x.amax((-2, -1), keepdim=True)
    return _pool_axis(_pool_axis(x, -2, h, oh, kind), -1, w, ow, kind)


# The patched F functions must stay compilable by TorchScript: scripted code (torchvision's
# detection heads, F.interpolate's "area" branch reached from scripted functions) resolves
# F.adaptive_*_pool2d at compile time, and a Python wrapper with *args cannot be compiled.
# So they keep the originals' signatures, and when scripted they *are* the originals (the
# documented torch.jit.is_scripting() + @torch.jit.unused pattern); only traced/exported
# Python calls take the fixed-pooling path.
_AVG, _MAX = F.adaptive_avg_pool2d, F._adaptive_max_pool2d  # type: ignore[attr-defined]


@torch.jit.unused
def _eager_avg(input: torch.Tensor, output_size: BroadcastingList2[int]) -> torch.Tensor:
    out = _static_pool("avg", input, output_size)
    return _AVG(input, output_size) if out is None else out


@torch.jit.unused
def _eager_max(input: torch.Tensor, output_size: BroadcastingList2[int]) -> torch.Tensor:
    out = _static_pool("max", input, output_size)
    return _MAX(input, output_size) if out is None else out


def _adaptive_avg_pool2d(input: torch.Tensor, output_size: BroadcastingList2[int]
                         ) -> torch.Tensor:
    if torch.jit.is_scripting():
        return _AVG(input, output_size)
    return _eager_avg(input, output_size)


def _adaptive_max_pool2d(input: torch.Tensor, output_size: BroadcastingList2[int],
                         return_indices: bool = False) -> torch.Tensor:
    if torch.jit.is_scripting():
        return _MAX(input, output_size, return_indices)
    return _eager_max(input, output_size)


# like F.adaptive_max_pool2d: return_indices=True goes to the real op (only it has indices)
_adaptive_max_pool2d_dispatch = boolean_dispatch(
    arg_name="return_indices", arg_index=2, default=False,
    if_true=F.adaptive_max_pool2d_with_indices, if_false=_adaptive_max_pool2d,
    module_name=__name__, func_name="adaptive_max_pool2d")


_used: set[str] = set()  # what the patched functions rewrote during one export


@contextlib.contextmanager
def static_adaptive_pooling(enabled: bool) -> Iterator[list[str]]:
    """While exporting a fixed-size graph, F.adaptive_{avg,max}_pool2d (nn.Adaptive*Pool2d
    call them) are written as fixed pooling; yields the report lines of what was rewritten.

    torch.nn.functional is patched for the duration of the export only (restored in
    finally), so a model's functional calls are covered as well as its modules; the
    parity gate compares the export with the untouched network.  Code TorchScript compiles
    meanwhile (scripted submodules, @script_if_tracing helpers) gets the original ops.
    """
    said: list[str] = []
    if not enabled:
        yield said
        return
    saved = (F.adaptive_avg_pool2d, F.adaptive_max_pool2d)
    _used.clear()
    F.adaptive_avg_pool2d = _adaptive_avg_pool2d  # type: ignore[assignment]
    F.adaptive_max_pool2d = _adaptive_max_pool2d_dispatch  # type: ignore[assignment]
    try:
        yield said
    finally:
        F.adaptive_avg_pool2d, F.adaptive_max_pool2d = saved  # type: ignore[assignment]
        if _used:
            said.append(", ".join(sorted(_used)) + " -> fixed pooling (static input size)")
        _used.clear()
