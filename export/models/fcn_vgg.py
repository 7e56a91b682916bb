"""FCN-32s/16s/8s (Long, Shelhamer, Darrell 2015) on a VGG16 trunk.

Padding/crop scheme. The paper pads conv1_1 by 100 so that the valid 7x7 fc6 and the
transposed convs never run out of pixels, then crops with fixed offsets; that makes every conv1
feature map ~200 px larger (2.2x the conv1 FLOPs at 360x480). Here instead:

* the VGG convs are padded by 1 (as in torchvision) and the pools use ``ceil_mode=True``, so
  pool level k has exactly ceil(H / 2**k) rows for ANY H (odd sizes included);
* fc6 is a 7x7 conv padded by 3, so score_fr keeps the pool5 grid;
* every transposed conv with factor s uses kernel 2s, stride s, padding s/2: with a bilinear
  kernel this is exactly half-pixel (``align_corners=False``) bilinear upsampling, so the
  upsampled map is aligned with the finer grid at offset 0 and only its tail is cropped
  (slicing to the skip's / input's shape: exports with symbolic H and W, no Pad op).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

__all__ = [
    "FCNVGG16",
    "bilinear_kernel",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "load_vgg16_backbone",
]

# torchvision vgg16 "D" config; "M" is a 2x2 max pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
_POOL3, _POOL4 = 17, 24  # features[:17] ends with pool3, features[:24] with pool4
_VARIANTS = (32, 16, 8)


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weight [C, C, k, k] of a per-channel bilinear upsampler (zero across channels)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = (filt1d[:, None] * filt1d[None, :]).float()
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = filt
    return weight


def _upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learnable ConvTranspose initialised to exact factor-x half-pixel bilinear upsampling."""
    up = nn.ConvTranspose2d(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False
    )
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


def _vgg16_features() -> nn.Sequential:
    """Same layers/indices as ``torchvision.models.vgg16().features`` (state_dict compatible)."""
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG16_CFG:
        if isinstance(v, str):
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


def _crop_to(x: Tensor, ref: Tensor) -> Tensor:
    """Keep the top-left H x W of ``x`` where H, W come from ``ref`` (symbolic in exports)."""
    return x[:, :, : ref.shape[-2], : ref.shape[-1]]


class FCNVGG16(nn.Module):
    """FCN on VGG16: ``variant`` 32 (no skips), 16 (+pool4) or 8 (+pool4, +pool3).

    Any input size works; the output is [N, num_classes, H, W] logits. ``zero_init_scores``
    zero-initialises the score layers as the paper does before fine-tuning (off by default so
    that an untrained model gives non-trivial outputs for export checks).
    """

    stride: int = 1

    def __init__(self, num_classes: int, variant: int = 8, zero_init_scores: bool = False) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"FCN variant must be one of {_VARIANTS}, got {variant}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.variant = variant
        self.features = _vgg16_features()
        self.fc6 = nn.Conv2d(512, 4096, 7, padding=3)
        self.relu6 = nn.ReLU(inplace=True)
        self.drop6 = nn.Dropout(0.5)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.relu7 = nn.ReLU(inplace=True)
        self.drop7 = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        scores = [self.score_fr]
        if variant == 32:
            self.upscore32 = _upsampler(num_classes, 32)
        else:
            self.upscore2 = _upsampler(num_classes, 2)
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
            scores.append(self.score_pool4)
        if variant == 16:
            self.upscore16 = _upsampler(num_classes, 16)
        if variant == 8:
            self.score_pool3 = nn.Conv2d(256, num_classes, 1)
            self.upscore_pool4 = _upsampler(num_classes, 2)
            self.upscore8 = _upsampler(num_classes, 8)
            scores.append(self.score_pool3)
        if zero_init_scores:
            for layer in scores:
                for param in layer.parameters():
                    nn.init.zeros_(param)

    def forward(self, x: Tensor) -> Tensor:
        pool3 = self.features[:_POOL3](x)
        pool4 = self.features[_POOL3:_POOL4](pool3)
        h = self.features[_POOL4:](pool4)
        h = self.drop6(self.relu6(self.fc6(h)))
        h = self.drop7(self.relu7(self.fc7(h)))
        h = self.score_fr(h)
        if self.variant == 32:
            return _crop_to(self.upscore32(h), x)
        h = _crop_to(self.upscore2(h), pool4) + self.score_pool4(pool4)
        if self.variant == 16:
            return _crop_to(self.upscore16(h), x)
        h = _crop_to(self.upscore_pool4(h), pool3) + self.score_pool3(pool3)
        return _crop_to(self.upscore8(h), x)


def load_vgg16_backbone(model: nn.Module, state_dict: Mapping[str, Tensor]) -> int:
    """Copy torchvision VGG16 weights (``vgg16().state_dict()``) into an FCN; returns #tensors.

    conv1..conv5 are copied as is; classifier.0 (fc6, 4096 x 25088) becomes the 7x7 conv and
    classifier.3 (fc7) the 1x1 conv. The 1000-way classifier.6 is ignored (score_fr stays).
    """
    if not isinstance(model, FCNVGG16):
        raise TypeError(f"expected an FCNVGG16 model, got {type(model).__name__}")
    targets: dict[str, tuple[Tensor, str]] = {
        f"features.{k}": (v, f"features.{k}") for k, v in model.features.named_parameters()
    }
    for fc, src in (("fc6", "classifier.0"), ("fc7", "classifier.3")):
        for name, param in getattr(model, fc).named_parameters():
            targets[f"{fc}.{name}"] = (param, f"{src}.{name}")
    missing = [src for _, src in targets.values() if src not in state_dict]
    if missing:
        raise ValueError(
            f"not a torchvision VGG16 state_dict: missing {len(missing)} keys, e.g. {missing[:3]}"
        )
    with torch.no_grad():
        for name, (dst, src) in targets.items():
            value = state_dict[src]
            if value.numel() != dst.numel():
                raise ValueError(
                    f"VGG16 weight {src} has shape {tuple(value.shape)}; "
                    f"{name} needs {tuple(dst.shape)} (same number of elements)"
                )
            dst.copy_(value.reshape(dst.shape))
    return len(targets)


def fcn32s(num_classes: int) -> nn.Module:
    """FCN-32s: score_fr upsampled 32x; ~134M params (fc6 alone is 103M)."""
    return FCNVGG16(num_classes, variant=32)


def fcn16s(num_classes: int) -> nn.Module:
    """FCN-16s: 2x score_fr + score_pool4, upsampled 16x."""
    return FCNVGG16(num_classes, variant=16)


def fcn8s(num_classes: int) -> nn.Module:
    """FCN-8s: FCN-16s fusion, 2x again + score_pool3, upsampled 8x."""
    return FCNVGG16(num_classes, variant=8)
