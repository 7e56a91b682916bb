"""Loading weights safely: torchvision caches, offline-friendly, weights_only always."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from segedge.runtime.errors import CheckpointError


def hub_cache_path(url: str) -> Path:
    """Where torch.hub keeps (and looks for) the file behind `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def load_torchvision_state(weights: Any) -> dict[str, torch.Tensor]:
    """State dict of a torchvision weights enum, from the cache or (online) a download.

    Offline with no cached file this fails with one line naming the file to place,
    instead of a urllib traceback.
    """
    url: str = weights.url
    cached = hub_cache_path(url)
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=False, weights_only=True, check_hash=False
        )
    except Exception as err:  # noqa: BLE001 - any download failure means "not available"
        raise CheckpointError(
            f"pretrained weights {weights}: expected the file {cached} (download {url} there "
            f"on a connected machine), got no file and no download ({type(err).__name__}); "
            "or use --weights random / --checkpoint PATH"
        ) from None


def pretrained_cached(weights: Any) -> bool:
    return hub_cache_path(weights.url).is_file()


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load every key whose name and shape match; return the keys left out.

    Used when pretrained weights meet a different class count: the trunk loads,
    the classifier stays random (a fine-tuning start), and the caller reports it.
    """
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
