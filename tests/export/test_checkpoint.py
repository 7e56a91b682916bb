"""Checkpoints: accepted exactly when torch's own load_state_dict(strict=True) accepts them."""

from __future__ import annotations

import collections
import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from segedge.export.models.checkpoint import load_checkpoint
from segedge.runtime.errors import CheckpointError


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def without_batch_counts(state: Any, bn_version: int | None) -> Any:
    """A BatchNorm checkpoint as saved before PyTorch 0.4.1 (no num_batches_tracked).

    bn_version None: no version records at all (very old files); 1: recorded as the old
    BatchNorm; 2: recorded as today's BatchNorm, which must have the key.
    """
    out: Any = collections.OrderedDict(
        (k, v) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    if bn_version is not None:
        out._metadata = copy.deepcopy(state._metadata)
        out._metadata["1"]["version"] = bn_version
    return out


def wrapped(state: Any, prefix: str) -> Any:
    """The same checkpoint saved from DataParallel (every key and version record prefixed)."""
    out: Any = collections.OrderedDict((prefix + k, v) for k, v in state.items())
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        out._metadata = collections.OrderedDict(
            (prefix + k if k else prefix.rstrip("."), v) for k, v in meta.items())
    return out


def torch_accepts(path: Path, prefix: str) -> bool:
    """The oracle: torch's strict load into the model it was saved from."""
    model: nn.Module = net()
    if prefix:
        holder = nn.Module()
        holder.module = model
        model = holder
    try:
        model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("bn_version", [None, 1, 2])
def test_accepts_what_torch_strict_load_accepts(tmp_path: Path, bn_version: int | None,
                                                prefix: str) -> None:
    source = net()
    with torch.no_grad():
        source[1].running_mean.uniform_(-1, 1)
    state = without_batch_counts(source.state_dict(), bn_version)
    saved = wrapped(state, prefix) if prefix else state
    bare, path = tmp_path / "bare.pth", tmp_path / "old.pth"
    torch.save(saved, bare)
    torch.save({"state_dict": saved}, path)  # as training scripts save it
    expected = torch_accepts(bare, prefix)
    assert expected is (bn_version != 2)  # torch fills the count for old BatchNorm only
    target = net()
    if expected:
        assert load_checkpoint(target, path) == []
        assert torch.equal(target[1].running_mean, source[1].running_mean)
        assert int(target[1].num_batches_tracked) == 0  # what torch fills in
    else:
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(target, path)
        assert str(err.value) == (f"checkpoint {path} does not fit Sequential: missing 1: "
                                  "1.num_batches_tracked")


def test_real_mismatches_still_read_as_a_diff(tmp_path: Path) -> None:
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 5, 1))
    state = other.state_dict()
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(net(), path)
    assert str(err.value) == (
        f"checkpoint {path} does not fit Sequential (wrong --num-classes?): unexpected 1: "
        "extra.weight; mis-shaped 2: 2.bias (5,) vs model (2,), 2.weight (5, 4, 1, 1) vs "
        "model (2, 4, 1, 1)")


def test_a_model_shadowing_state_dict_methods_still_loads(tmp_path: Path) -> None:
    class Shadows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            self.modules = [self.conv]  # type: ignore[assignment]

    source = Shadows()
    path = tmp_path / "s.pth"
    torch.save(nn.Module.state_dict(source), path)
    target = Shadows()
    assert load_checkpoint(target, path) == []
    assert torch.equal(target.conv.weight, source.conv.weight)
