"""SegNet (Badrinarayanan et al., 2017) with an export-friendly max-unpooling mode.

The decoder upsamples with the encoder's max-pool indices. ``F.max_unpool2d`` exports to ONNX
``MaxUnpool`` (TorchScript exporter fails on it; TensorRT's ONNX parser has no importer for it),
so :class:`MaxUnpool2x2` also has an *index-free* mode that re-derives the arg-max positions
from the pre-pool tensor with plain element-wise ops. Both modes give bit-identical results
(PyTorch's ``max_pool2d`` keeps the first maximum of each 2x2 window in row-major order and the
index-free mask reproduces exactly that tie-break).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MaxUnpool2x2", "SegNet", "segnet", "set_index_free_unpool"]

# VGG16 conv widths per encoder block (13 convs in 5 blocks).
_ENCODER: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def _exporting() -> bool:
    """True while tracing/exporting, where Python-level shape checks would bake in one size."""
    return (
        torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
    )


def check_multiple(x: Tensor, stride: int, model: str) -> None:
    """Raise ValueError when H or W of ``x`` is not a multiple of ``stride`` (eager only)."""
    if _exporting():
        return
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h % stride or w % stride:
        raise ValueError(
            f"{model} needs input height and width that are multiples of its stride {stride}; "
            f"got {h}x{w} (nearest valid: {max(stride, round(h / stride) * stride)}x"
            f"{max(stride, round(w / stride) * stride)})"
        )


class MaxUnpool2x2(nn.Module):
    """Inverse of a 2x2/stride-2 max pool, with or without the pooling indices.

    ``index_free=False``: ``F.max_unpool2d`` with the real indices (eager default).
    ``index_free=True``: no MaxUnpool/Scatter op; the max positions are recomputed from the
    pre-pool tensor: split every 2x2 window into 4 channels (pixel_unshuffle), compare with the
    window maximum (ReduceMax + Equal), keep only the first hit in row-major order, put the
    decoder value there (Where) and reassemble the windows (pixel_shuffle / DepthToSpace).
    The window maximum is recomputed from the same tensor rather than taken from the pooled
    output so that every window has a hit even if a backend stores the two in different
    precisions. NaNs in a window give an all-zero window here (the indices path keeps them).
    """

    # Weight of window position k = 2**(3-k): a hit at k is the first one iff the weighted sum of
    # all hits is < 2 * weight[k] (every earlier hit alone contributes >= 2 * weight[k]).
    _first_weight: Tensor
    _first_limit: Tensor

    def __init__(self, index_free: bool = False) -> None:
        super().__init__()
        self.index_free = index_free
        weight = torch.tensor([8.0, 4.0, 2.0, 1.0]).view(1, 1, 4, 1, 1)
        self.register_buffer("_first_weight", weight, persistent=False)
        self.register_buffer("_first_limit", 2.0 * weight, persistent=False)

    def forward(self, x: Tensor, pre_pool: Tensor, indices: Tensor | None = None) -> Tensor:
        """Unpool ``x`` ([N, C, h, w]) to the size of ``pre_pool`` ([N, C, 2h, 2w])."""
        if not self.index_free:
            if indices is None:
                raise ValueError("MaxUnpool2x2(index_free=False) needs the max-pool indices")
            return F.max_unpool2d(x, indices, (2, 2), (2, 2), output_size=pre_pool.shape[-2:])
        # [N, C*4, h, w] -> [N, C, 4, h, w]; position k = 2*dy + dx inside each window.
        cells = F.pixel_unshuffle(pre_pool, 2).unflatten(1, (-1, 4))
        hit = cells == cells.amax(dim=2, keepdim=True)
        weighted = (hit.to(cells.dtype) * self._first_weight.to(cells.dtype)).sum(2, keepdim=True)
        first = hit & (weighted < self._first_limit.to(cells.dtype))
        out = torch.where(first, x.unsqueeze(2), torch.zeros((), dtype=x.dtype, device=x.device))
        # view_as keeps the symbolic size of pre_pool (H, not 2*(H//2)) in exported graphs.
        return F.pixel_shuffle(out.flatten(1, 2), 2).view_as(pre_pool)

    def extra_repr(self) -> str:
        return f"index_free={self.index_free}"


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


def _block(widths: Sequence[int], cin: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout in widths:
        layers += _conv_bn_relu(cin, cout)
        cin = cout
    return nn.Sequential(*layers)


class SegNet(nn.Module):
    """VGG16-BN encoder keeping pool indices, mirrored decoder with max-unpooling.

    Input height/width must be multiples of :attr:`stride` (five 2x2 pools); eager calls
    raise ValueError otherwise. ``encoder[i]`` / ``decoder[i]`` hold the convs of block i
    (decoder listed deepest first), ``unpool[i]`` inverts the pool after ``encoder[4 - i]``.
    """

    stride: int = 32

    def __init__(self, num_classes: int, in_channels: int = 3, index_free: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        encoder: list[nn.Module] = []
        cin = in_channels
        for widths in _ENCODER:
            encoder.append(_block(widths, cin))
            cin = widths[-1]
        self.encoder = nn.ModuleList(encoder)
        # Decoder mirrors the encoder: block widths reversed, last conv narrows to the next
        # (shallower) block's width; the shallowest decoder block ends with the classifier.
        decoder: list[nn.Module] = []
        for i, widths in enumerate(reversed(_ENCODER)):
            outs = list(reversed(widths))
            is_last = i == len(_ENCODER) - 1
            nxt = outs[-1] if is_last else _ENCODER[len(_ENCODER) - 2 - i][-1]
            outs = outs[:-1] + ([] if is_last else [nxt])
            decoder.append(_block(outs, widths[-1]))
        self.decoder = nn.ModuleList(decoder)
        self.unpool = nn.ModuleList(MaxUnpool2x2(index_free) for _ in _ENCODER)
        self.classifier = nn.Conv2d(_ENCODER[0][0], num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        check_multiple(x, self.stride, "SegNet")
        saved: list[tuple[Tensor, Tensor | None]] = []
        unpools = list(self.unpool)
        for block, unpool in zip(self.encoder, reversed(unpools), strict=True):
            x = block(x)
            if unpool.index_free:
                pooled, idx = F.max_pool2d(x, 2, 2), None
            else:
                pooled, idx = F.max_pool2d_with_indices(x, (2, 2), (2, 2))
            saved.append((x, idx))
            x = pooled
        for block, unpool in zip(self.decoder, unpools, strict=True):
            pre, idx = saved.pop()
            x = block(unpool(x, pre, idx))
        return self.classifier(x)


def set_index_free_unpool(model: nn.Module, enabled: bool = True) -> int:
    """Switch every :class:`MaxUnpool2x2` in ``model``; returns how many changed mode."""
    changed = 0
    for module in nn.Module.modules(model):  # unbound: models may shadow `modules` (a list)
        if isinstance(module, MaxUnpool2x2) and module.index_free != enabled:
            module.index_free = enabled
            changed += 1
    return changed


def segnet(num_classes: int) -> nn.Module:
    """SegNet (VGG16-BN encoder/decoder, 29.4M params at 11 classes); stride 32."""
    return SegNet(num_classes)
