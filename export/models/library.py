"""What the library front-ends (source_smp, source_hf, source_yolo, source_tv) share.

Each reads preprocessing, classes and size from what its library saved; these
helpers keep the rules for "saved", "overridden by a flag" and "unknown" in one
place, so no front-end guesses a value silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from segedge.runtime.errors import CheckpointError, InputError

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig

Triple = tuple[float, float, float]


def refuse_weights_flag(cfg: ExportConfig, where: str) -> None:
    """--weights picks zoo weights; a library model's weights come with it or --checkpoint."""
    if cfg.weights != "auto":
        raise InputError("--weights", f"auto for {where} (its weights come from the file it "
                                      "names or --checkpoint; nothing is downloaded)",
                         cfg.weights)


def needs_flags(cfg: ExportConfig, where: str, why: str) -> None:
    """Refuse (one line) when the library saved no normalisation and no flag gives one."""
    if cfg.mean is None or cfg.std is None:
        raise InputError("--mean/--std", f"the normalisation {where} was trained with ({why})",
                         "neither" if cfg.mean is None and cfg.std is None else
                         "only one of them")


def unit_normalisation(mean: Any, std: Any, scale: float = 1 / 255) -> tuple[Triple, Triple]:
    """(mean, std) in 0..1 units for y = (x * scale - mean) / std on 0..255 pixels.

    The deploy wrapper computes (x/255 - m) / s; with another scale the same
    function is m = mean / (255 scale), s = std / (255 scale).
    """
    factor = 255.0 * scale
    m = _triple(mean, "mean")
    s = _triple(std, "std")
    return (tuple(v / factor for v in m), tuple(v / factor for v in s))  # type: ignore[return-value]


def _triple(value: Any, what: str) -> Triple:
    values = [float(v) for v in value] if isinstance(value, list | tuple) else [float(value)] * 3
    if len(values) == 1:
        values *= 3
    if len(values) != 3:
        raise InputError(what, "one value per RGB channel", values)
    return (values[0], values[1], values[2])


def square(size: Any) -> tuple[int, int] | None:
    """An int or [h, w] as (h, w); None when it is neither."""
    if isinstance(size, int) and size > 0:
        return (size, size)
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) and v > 0
                                                                  for v in size):
        return (int(size[0]), int(size[1]))
    return None


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Load a library's saved weights; any missing, unexpected or mis-shaped key is one line."""
    own = model.state_dict()
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected or misshaped:
        parts = [f"{label} {len(keys)}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected),
                                     ("mis-shaped", misshaped)) if keys]
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: "
                              + "; ".join(parts))
    model.load_state_dict(dict(state), strict=True)


def read_weights(folder: Path, names: tuple[str, ...] = ("model.safetensors",
                                                         "pytorch_model.bin")
                 ) -> tuple[dict[str, torch.Tensor], Path]:
    """A folder's weights: safetensors (no code runs) or a torch file read weights_only."""
    for name in names:
        path = folder / name
        if not path.is_file():
            continue
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return dict(load_file(str(path))), path
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - corrupt files raise anything
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise CheckpointError(f"{path}: expected readable weights, got {first}") from None
        if isinstance(blob, dict):
            return {k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}, path
        raise CheckpointError(f"{path}: expected a state_dict, got {type(blob).__name__}")
    raise CheckpointError(f"{folder}: expected weights ({' or '.join(names)}), got none")


def folder_ref(what: str) -> bool:
    """A front-end's reference names a folder/file (not a class) when it looks like a path."""
    return "/" in what or "\\" in what or Path(what).exists()
