"""Loading untrusted checkpoints: weights_only, common wrappers, readable diffs.

What fits is what torch's own ``load_state_dict(strict=True)`` accepts: torch
decides which keys are missing (its ``_load_from_state_dict`` fills in what old
module versions lacked, e.g. BatchNorm's ``num_batches_tracked`` before
PyTorch 0.4.1), reading the versions a checkpoint records in its
``_metadata``, which is kept through unwrapping and prefix changes.  A real
mismatch is one line listing missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segedge.runtime.errors import CheckpointError

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A flat name -> tensor dict from a bare state_dict or a common training wrapper."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint: expected a file, got no such file {path}")
    try:
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path}: expected tensors loadable with weights_only=True, got objects "
            f"that need arbitrary code ({first[:160]}); save model.state_dict() instead"
        ) from None
    except Exception as err:  # noqa: BLE001 - corrupt/zip/EOF errors all mean "not a checkpoint"
        raise CheckpointError(
            f"checkpoint {path}: expected a torch.save file, got unreadable data "
            f"({type(err).__name__})"
        ) from None
    for _ in range(3):  # nested wrappers like {"model": {"state_dict": ...}}
        if isinstance(blob, dict) and not _is_state(blob):
            inner = next((blob[k] for k in WRAPPER_KEYS if isinstance(blob.get(k), dict)), None)
            if inner is None:
                break
            blob = inner
    if not isinstance(blob, dict) or not _is_state(blob):
        raise CheckpointError(
            f"checkpoint {path}: expected a state_dict (or a dict holding one under "
            f"{', '.join(WRAPPER_KEYS)}), got {type(blob).__name__}"
            + (f" with keys {sorted(blob)[:6]}" if isinstance(blob, dict) else "")
        )
    return _keep_metadata({k: v for k, v in blob.items() if isinstance(v, torch.Tensor)}, blob)


def _keep_metadata(new: dict[str, torch.Tensor], old: Any, rename: Any = None
                   ) -> dict[str, torch.Tensor]:
    """Carry the module versions torch reads (``state_dict._metadata``) over to `new`.

    `rename` maps an old module prefix ("" for the root, "layer1.0.bn1") to the new
    one, or to None to drop it; without the versions torch would treat every module
    as pre-versioning and accept keys its strict load refuses.
    """
    meta = getattr(old, "_metadata", None)
    out: Any = collections.OrderedDict(new)
    if meta is not None:
        moved: Any = collections.OrderedDict()
        for prefix, value in meta.items():
            target = rename(prefix) if rename is not None else prefix
            if target is not None:
                moved[target] = value
        out._metadata = moved
    return out  # type: ignore[no-any-return]


def _is_state(d: dict[Any, Any]) -> bool:
    return bool(d) and sum(isinstance(v, torch.Tensor) for v in d.values()) >= max(1, len(d) // 2)


def _strip(prefix: str) -> Any:
    head = prefix.rstrip(".")

    def rename(module: str) -> str | None:
        if module == head:
            return ""
        return module.removeprefix(prefix) if module.startswith(prefix) else None
    return rename


def _add(prefix: str) -> Any:
    head = prefix.rstrip(".")
    return lambda module: f"{prefix}{module}" if module else head


def _align(own: set[str], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip or add wrapper prefixes (DataParallel, torch.compile, our OutOnly) to fit."""
    best = state
    best_hits = len(own & set(state))
    for prefix in STRIP_PREFIXES:
        for cand, rename in (({k.removeprefix(prefix): v for k, v in state.items()},
                              _strip(prefix)),
                             ({prefix + k: v for k, v in state.items()}, _add(prefix))):
            hits = len(own & set(cand))
            if hits > best_hits:
                best, best_hits = _keep_metadata(cand, state, rename), hits
    return best


def _short(keys: list[str], limit: int = 4) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_checkpoint(model: nn.Module, path: Path) -> list[str]:
    """Load `path` into `model` strictly; return notes (e.g. dropped aux heads).

    A mismatch raises one line listing missing, unexpected and mis-shaped keys,
    which is usually enough to see a wrong architecture or class count.
    """
    own = nn.Module.state_dict(model)  # unbound: a model may shadow nn.Module's methods
    state = _align(set(own), read_state_dict(path))
    notes = []
    aux = [k for k in state if "aux_classifier." in k and k not in own]
    if aux:
        state = _keep_metadata({k: v for k, v in state.items() if k not in aux}, state)
        notes.append(f"ignored {len(aux)} aux_classifier keys (training-only head)")
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    fitting = _keep_metadata({k: v for k, v in state.items() if k not in misshaped}, state)
    try:  # torch decides what is missing; strict=True is this with both lists empty
        result = nn.Module.load_state_dict(model, fitting, strict=False)
    except RuntimeError as err:  # a module's own loading refused a value
        first = (str(err).strip().splitlines() or [type(err).__name__])[-1].strip()
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}: "
                              f"{first[:200]}") from None
    missing = sorted(set(result.missing_keys) - set(misshaped))
    unexpected = sorted(result.unexpected_keys)
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {_short(unexpected)}")
        if misshaped:
            shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                      for k in misshaped]
            parts.append(f"mis-shaped {len(misshaped)}: {_short(shapes, 2)}")
        hint = " (wrong --num-classes?)" if misshaped and not missing else ""
        raise CheckpointError(
            f"checkpoint {path} does not fit {type(model).__name__}{hint}: " + "; ".join(parts)
        )
    return notes
