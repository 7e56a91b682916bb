"""Model source ``yolo:``: an Ultralytics semantic-segmentation checkpoint (``task=semantic``).

``yolo:runs/semantic/train/weights/best.pt`` is what ``yolo train task=semantic``
(ultralytics >= 8.4.52) or ``YOLO.save()`` wrote: a dict whose ``ema`` or ``model``
is the whole network (FP16), with ``names`` on it and ``train_args`` (imgsz)
beside it.  It is read with Ultralytics' own restricted loader
(``torch_safe_load(safe_only=True)``: ``torch.load(weights_only=True)`` with an
allow-list of Ultralytics/torch layer classes), so no code in the file runs.
Ultralytics feeds 0..1 RGB (x / 255, no mean/std) and predicts at 1/8 of the
input; the deploy wrapper upsamples bilinearly as its predictor does.
Ultralytics letterboxes frames to a square; segrun resizes them to the export size.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from segedge.export.models.library import refuse_weights_flag, square
from segedge.export.models.sources import Built
from segedge.runtime.errors import CheckpointError, InputError

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig

DEFAULT_IMGSZ = 640  # Ultralytics' default when a checkpoint carries no train_args


def build(what: str, cfg: ExportConfig) -> Built:
    ref = f"yolo:{what}"
    refuse_weights_flag(cfg, ref)
    path = Path(what)
    if not path.is_file() or path.suffix != ".pt":
        raise InputError(ref, "an Ultralytics checkpoint file (.pt) here (nothing is "
                              "downloaded)", f"no such file {path}" if not path.is_file()
                         else f"a {path.suffix or 'suffix-less'} file")
    ckpt = _read(path, ref)
    model = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"{ref}: expected a checkpoint holding the network under 'ema' or "
                              f"'model', got keys {sorted(ckpt)[:6]}")
    from ultralytics.nn.tasks import SemanticSegmentationModel, guess_model_task

    task = getattr(model, "task", None) or guess_model_task(model)
    if not isinstance(model, SemanticSegmentationModel):
        raise InputError(ref, "a task=semantic checkpoint (ultralytics >= 8.4.52)",
                         f"a {task} model ({type(model).__name__})")
    model = nn.Module.eval(model.float())
    from segedge.export.models.resolve import saved_classes

    names = _names(getattr(model, "names", None), ref)
    classes = saved_classes(cfg, names, ref)
    if len(classes) < 2:
        raise InputError(f"{ref} names", "2 or more classes (single-class models emit one "
                         "channel)", len(classes))
    args: dict[str, Any] = ckpt.get("train_args") or {}
    notes: list[str] = []
    size = square(args.get("imgsz"))
    if size is None:
        size = (DEFAULT_IMGSZ, DEFAULT_IMGSZ)
        notes.append(f"the checkpoint records no training imgsz: exporting at {DEFAULT_IMGSZ}"
                     f"x{DEFAULT_IMGSZ} (Ultralytics' default; --imgsz H W)")
    stride = int(max(float(s) for s in model.stride.flatten())) if hasattr(model, "stride") \
        else 32
    return Built(model=model, name=path.stem, family="yolo-semantic", classes=classes,
                 mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), color="RGB", size=size,
                 stride=stride, weights=f"ultralytics checkpoint {path}", notes=notes)


def _read(path: Path, ref: str) -> dict[str, Any]:
    from ultralytics.nn.tasks import torch_safe_load

    try:
        ckpt, _ = torch_safe_load(str(path), safe_only=True)
    except Exception as err:  # noqa: BLE001 - Ultralytics raises TypeError/RuntimeError/...
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"{ref}: expected an Ultralytics checkpoint loadable with "
                              f"weights_only=True, got {text.replace('ERROR ❌️ ', '')[:200]}"
                              ) from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{ref}: expected a checkpoint dict, got {type(ckpt).__name__}")
    return ckpt


def _names(names: Any, ref: str) -> tuple[str, ...]:
    """Ultralytics keeps class names as {index: name} (or a list) on the model."""
    if isinstance(names, dict) and names and all(isinstance(k, int) for k in names):
        if sorted(names) != list(range(len(names))):
            raise CheckpointError(f"{ref}: expected class indices 0..{len(names) - 1}, got "
                                  f"{sorted(names)[:6]}")
        return tuple(str(names[i]) for i in range(len(names)))
    if isinstance(names, list | tuple) and names:
        return tuple(str(n) for n in names)
    raise CheckpointError(f"{ref}: expected class names on the model, got {names!r}"[:200])
