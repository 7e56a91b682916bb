"""Export-time rewrites into forms TensorRT's ONNX parser accepts.

Each rule edits a copy of the network in place and says what it did; the
parity gate then compares the rewritten export with the untouched original,
so a rewrite can never silently change the masks.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

Rule = Callable[[nn.Module], str | None]


def index_free_unpool(model: nn.Module) -> str | None:
    """SegNet's MaxUnpool (no TensorRT parser support) -> SpaceToDepth/Equal/DepthToSpace."""
    from segedge.export.models.segnet import set_index_free_unpool

    changed = set_index_free_unpool(model, True)
    return f"{changed} max-unpool layers -> index-free first-max unpooling" if changed else None


RULES: tuple[Rule, ...] = (index_free_unpool,)


def apply_rewrites(model: nn.Module) -> list[str]:
    return [msg for rule in RULES if (msg := rule(model))]
