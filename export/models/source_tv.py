"""Model source ``tv:``: any torchvision segmentation factory with a local checkpoint.

``tv:deeplabv3_resnet101 --checkpoint model_29.pth`` builds the factory with no
weights (nothing is downloaded) and loads the checkpoint (torchvision's
reference scripts wrap it in {"model": ...}; aux_classifier keys are dropped).
The class count comes from --classes/--num-classes, else from the checkpoint's
classifier, else the factory's published weights (21 VOC classes).  Mean, std,
size and class names come from the factory's weights entry, which torchvision
ships in the package (``get_model_weights(name).DEFAULT``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from segedge.export.models.library import refuse_weights_flag
from segedge.export.models.sources import Built
from segedge.export.models.torchvision_models import OutOnly
from segedge.runtime.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from segedge.export.config import ExportConfig


def factories() -> list[str]:
    import torchvision
    from torchvision.models import segmentation

    return sorted(torchvision.models.list_models(module=segmentation))


def build(what: str, cfg: ExportConfig) -> Built:
    ref = f"tv:{what}"
    refuse_weights_flag(cfg, ref)
    if what not in factories():
        raise InputError(ref, f"a torchvision segmentation factory ({', '.join(factories())})",
                         repr(what))
    import torchvision

    entry = torchvision.models.get_model_weights(what).DEFAULT
    published = tuple(str(c) for c in entry.meta.get("categories", ()))
    count = _count(cfg, what, published)
    model = torchvision.models.get_model(what, weights=None, weights_backbone=None,
                                         num_classes=count, aux_loss=False)
    from segedge.export.models.resolve import saved_classes

    names = published if count == len(published) else tuple(f"class_{i}" for i in range(count))
    classes = saved_classes(cfg, names, ref)
    preset = entry.transforms()
    side = int(list(getattr(preset, "resize_size", None) or [520])[0])
    notes = [] if cfg.checkpoint else ["random weights: give --checkpoint FILE"]
    return Built(model=OutOnly(model), name=what, family="torchvision", classes=classes,
                 mean=tuple(preset.mean), std=tuple(preset.std),  # type: ignore[arg-type]
                 color="RGB", size=(side, side), stride=1, weights="random", notes=notes,
                 checkpoint_into=model)


def _count(cfg: ExportConfig, what: str, published: tuple[str, ...]) -> int:
    if cfg.classes is not None:
        return len(cfg.classes)
    if cfg.num_classes is not None:
        return cfg.num_classes
    if cfg.checkpoint is not None:
        found = checkpoint_classes(what, cfg.checkpoint, len(published) or 21)
        if found is not None:
            return found
    return len(published) or 21


def checkpoint_classes(what: str, path: Path, default: int) -> int | None:
    """The class count a checkpoint's final classifier layer was trained for."""
    import torchvision

    from segedge.export.models.checkpoint import read_state_dict

    state = {k.removeprefix("module."): v for k, v in read_state_dict(path).items()}
    probe: Any = torchvision.models.get_model(what, weights=None, weights_backbone=None,
                                              num_classes=default, aux_loss=False)
    own = nn.Module.state_dict(probe)
    heads = [k for k, v in own.items() if k.startswith("classifier.") and k.endswith(".weight")
             and v.ndim == 4 and v.shape[0] == default]
    for key in heads:
        if key in state and state[key].ndim == 4:
            return int(state[key].shape[0])
    return None
