"""Loading published checkpoints of real-time networks as their authors saved them.

The zoo's BiSeNetV2, DDRNet and PIDNet keep their authors' parameter names, so
an official file loads with ``load_state_dict(strict=True)``.  What such files
hold beyond the inference network is handled here, once:

- training-only roots: the HRNet-style ``FullModel`` wrapper saves its loss
  modules next to ``model.*`` (``loss.criterion.weight``, the class weights of
  the cross-entropy); they are dropped on load, and nothing else is;
- auxiliary heads (deep supervision): the networks build them, so a training
  checkpoint loads strictly, and never run them (the export holds the main head
  only).  A checkpoint saved from the authors' inference model has none; that
  is accepted when *every* auxiliary key is absent (some missing is a mismatch).

The ``model.`` / ``module.`` prefixes themselves are stripped by
:func:`segedge.export.models.checkpoint.load_checkpoint`.  What a load did is
left in ``segedge_weights_note``, which the export report shows.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OfficialLayout", "resize_like"]


class OfficialLayout(nn.Module):
    """Base for networks whose ``state_dict`` is their authors' layout.

    Subclasses name their ``training_roots`` (top-level prefixes a training
    checkpoint adds) and ``aux_heads`` (child modules kept only for loading).
    """

    training_roots: tuple[str, ...] = ()
    aux_heads: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._load_log: list[str] = []
        self.register_load_state_dict_post_hook(_after_load)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        """Drop the loss modules a training wrapper saved beside the network."""
        self._load_log = []
        roots = tuple(f"{prefix}{root}." for root in self.training_roots)
        dropped = [k for k in state_dict if roots and k.startswith(roots)]
        for key in dropped:
            del state_dict[key]
        if dropped:
            self._load_log.append(f"dropped {len(dropped)} training-only key(s) "
                                  f"({', '.join(sorted(dropped)[:3])})")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _after_load(module: nn.Module, incompatible: Any) -> None:
    """Accept an inference-model checkpoint (no auxiliary head at all), not a partial
    one; leave what happened in ``segedge_weights_note``."""
    heads: tuple[str, ...] = getattr(module, "aux_heads", ())
    log: list[str] = getattr(module, "_load_log", [])
    aux = {f"{head}.{name}" for head in heads for name in getattr(module, head).state_dict()
           if not name.endswith("num_batches_tracked")}  # BatchNorm fills these in itself
    if aux and aux <= set(incompatible.missing_keys):
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if k not in aux]
        log.append(f"no auxiliary heads in the checkpoint ({', '.join(heads)} left random; "
                   "never exported)")
    elif heads:
        log.append(f"auxiliary heads {', '.join(heads)} loaded, not exported")
    module.segedge_weights_note = "; ".join(log)  # type: ignore[assignment]


def resize_like(x: Tensor, ref: Tensor, mode: str = "bilinear",
                align_corners: bool | None = False) -> Tensor:
    """Resize ``x`` to ``ref``'s height and width.

    The authors resize by a fixed factor or to ``input // 8``; where their code
    runs (inputs that are multiples of 8, or 32 for BiSeNetV2) the target is
    the same size and the result identical, and other sizes work too.
    """
    if mode == "nearest":
        return F.interpolate(x, size=ref.shape[-2:], mode="nearest")
    return F.interpolate(x, size=ref.shape[-2:], mode=mode, align_corners=align_corners)
