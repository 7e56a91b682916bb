"""Model source ``hf:``: a Hugging Face transformers semantic-segmentation model from a folder.

``hf:path/to/folder`` holds what ``model.save_pretrained`` and
``image_processor.save_pretrained`` wrote: config.json (architecture, id2label),
model.safetensors, preprocessor_config.json (image_mean/std, rescale, size,
do_reduce_labels).  Any model ``AutoModelForSemanticSegmentation`` knows loads
(SegFormer, UperNet, DPT, BEiT, MobileViT, ...), strictly and offline
(``local_files_only``; HF_HUB_OFFLINE is set before transformers is imported).
SegFormer predicts at 1/4 of the input: the deploy wrapper upsamples the logits
to the input size (bilinear, align_corners=False, as transformers'
``post_process_semantic_segmentation`` does).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from segedge.export.models.library import needs_flags, refuse_weights_flag, unit_normalisation
from segedge.export.models.sources import Built
from segedge.runtime.errors import CheckpointError, InputError
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig

DEFAULT_SIZE = (512, 512)  # only when the image processor names no fixed size
PROCESSOR_FILE = "preprocessor_config.json"


class HFLogits(nn.Module):
    """transformers returns a SemanticSegmenterOutput; deployment wants its logits tensor."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x, return_dict=False)[0]  # type: ignore[no-any-return]


def build(what: str, cfg: ExportConfig) -> Built:
    ref = f"hf:{what}"
    refuse_weights_flag(cfg, ref)
    folder = Path(what)
    if not (folder / "config.json").is_file():
        raise InputError(ref, "a local folder with config.json and model.safetensors "
                              "(save_pretrained; nothing is downloaded)",
                         f"no {folder / 'config.json'}")
    model = _load(folder, ref)
    config: Any = model.config
    notes: list[str] = []
    from segedge.export.models.resolve import saved_classes

    id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
    n = _out_channels(config, id2label)
    classes = saved_classes(cfg, tuple(id2label.get(i, f"class_{i}") for i in range(n)),
                            ref)
    mean, std, size = _processor(folder, ref, cfg, notes)
    return Built(model=HFLogits(model), name=folder.resolve().name,
                 family=f"hf-{config.model_type}", classes=classes, mean=mean, std=std,
                 color="RGB", size=size, stride=_stride(config), weights=f"hf folder {folder}",
                 notes=notes, checkpoint_into=model)


def _load(folder: Path, ref: str) -> nn.Module:
    from transformers import AutoConfig, AutoModelForSemanticSegmentation
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # its load report is replaced by the checks below
    hf_logging.disable_progress_bar()
    try:
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
        except Exception as err:  # noqa: BLE001 - unknown model types, bad JSON, ...
            raise InputError(f"{ref} config.json", "a transformers model configuration",
                             _first(err)) from None
        known = getattr(AutoModelForSemanticSegmentation, "_model_mapping", None)
        if known is not None and type(config) not in known:
            names = sorted({c.model_type for c in known.keys()})
            raise InputError(ref, f"a semantic-segmentation model ({', '.join(names)})",
                             f"model_type {config.model_type!r}")
        try:
            model, info = AutoModelForSemanticSegmentation.from_pretrained(
                folder, config=config, local_files_only=True, output_loading_info=True,
                dtype=torch.float32)
        except Exception as err:  # noqa: BLE001 - missing/corrupt weights raise anything
            raise CheckpointError(f"{ref}: expected loadable weights (model.safetensors), got "
                                  f"{_first(err)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    problems = [f"{what} {len(keys)}: {', '.join(map(str, list(keys)[:3]))}"
                for what, keys in (("missing", info.get("missing_keys") or []),
                                   ("mis-shaped", info.get("mismatched_keys") or []),
                                   ("unexpected", info.get("unexpected_keys") or [])) if keys]
    if problems:
        raise CheckpointError(f"{ref}: weights do not fit {type(model).__name__}: "
                              + "; ".join(problems))
    return nn.Module.eval(model.float())


def _out_channels(config: Any, id2label: dict[int, str]) -> int:
    n = int(getattr(config, "num_labels", 0) or len(id2label))
    if n < 2:
        raise InputError("num_labels", "2 or more classes (one logit channel each)", n)
    return n


def _stride(config: Any) -> int:
    """Input sides must be multiples of this: the encoder's total downsampling."""
    strides = getattr(config, "strides", None)  # SegFormer's patch-embedding strides
    if isinstance(strides, list | tuple) and strides:
        return int(math.prod(int(s) for s in strides))
    patch = getattr(config, "patch_size", None)  # ViT encoders (DPT, BEiT)
    if isinstance(patch, int) and patch > 0 and getattr(config, "backbone_config", None) is None:
        return patch
    return 32  # CNN backbones (UperNet's ConvNeXt/Swin, DPT-hybrid's BiT)


def _processor(folder: Path, ref: str, cfg: ExportConfig, notes: list[str]
               ) -> tuple[tuple[float, float, float], tuple[float, float, float],
                          tuple[int, int]]:
    """mean/std (0..1 units) and size from the saved image processor, as it would apply them."""
    if not (folder / PROCESSOR_FILE).is_file():
        needs_flags(cfg, ref, f"no {PROCESSOR_FILE} in the folder")
        if cfg.imgsz is None:
            raise InputError("--imgsz", f"the input size {ref} was trained at (no "
                                        f"{PROCESSOR_FILE})", "none")
        return IMAGENET_MEAN, IMAGENET_STD, cfg.imgsz  # both replaced by the flags
    from transformers import AutoImageProcessor

    try:
        proc = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except Exception as err:  # noqa: BLE001
        raise InputError(f"{ref} {PROCESSOR_FILE}", "a transformers image processor",
                         _first(err)) from None
    scale = float(proc.rescale_factor) if getattr(proc, "do_rescale", True) else 1.0
    if getattr(proc, "do_normalize", True):
        mean, std = unit_normalisation(list(proc.image_mean), list(proc.image_std), scale)
    else:
        mean, std = unit_normalisation([0.0] * 3, [1.0] * 3, scale)
    if getattr(proc, "do_reduce_labels", False) or getattr(proc, "reduce_labels", False):
        notes.append("trained with do_reduce_labels: class 0 is the dataset's label 1 (label "
                     "0 was ignored); --verify-labels/--eval-labels maps need the same shift")
    return mean, std, _size(proc, notes)


def _size(proc: Any, notes: list[str]) -> tuple[int, int]:
    size = getattr(proc, "size", None)
    found = {k: (size.get(k) if isinstance(size, dict) else getattr(size, k, None))
             for k in ("height", "width", "shortest_edge")}
    if found["height"] and found["width"]:
        return (int(found["height"]), int(found["width"]))
    if found["shortest_edge"]:
        edge = int(found["shortest_edge"])
        notes.append(f"the image processor resizes the shortest edge to {edge}: exporting at "
                     f"{edge}x{edge} (--imgsz H W for another aspect)")
        return (edge, edge)
    notes.append(f"the image processor names no fixed size: exporting at {DEFAULT_SIZE[0]}x"
                 f"{DEFAULT_SIZE[1]} (--imgsz H W)")
    return DEFAULT_SIZE


def _first(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
