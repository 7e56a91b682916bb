"""Where a model comes from: one file per source behind this small registry.

A MODEL argument is a zoo name (``demo``), a user file (``path/model.py:Class``)
or ``<prefix>:<what>`` for a library front-end (``smp:Unet``, ``hf:path/``,
``yolo:best.pt``, ``tv:deeplabv3_resnet101``).  Each source is a module with
``build(what, cfg) -> Built``; `resolve` adds what every model shares
(checkpoint, normalisation flags, eval mode).  This module stays light (no torch
at import): the config, the CLI and the task registry ask it about a reference
before anything is built.  Nothing outside a source's file compares its name.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.runtime.errors import BackendUnavailableError, InputError
from segedge.runtime.metadata import ColorOrder

if TYPE_CHECKING:
    from torch import nn

    from segedge.export.config import ExportConfig

EXTRA = "models"  # the pip extra that brings every library front-end (pyproject.toml)
LIBRARY_MODEL_ARGS = "a path/to/file.py:Class or smp:Class model"


@dataclass(frozen=True)
class Source:
    """One place models come from; `module` holds ``build(what, cfg) -> Built``."""

    name: str
    module: str
    prefix: str | None = None  # "smp" for smp:...; None: matched without a prefix
    usage: str = ""  # how a reference looks, for messages and the README
    package: str | None = None  # the library it needs (import name); None: none beyond torch
    takes_model_args: bool = False  # --model-args are its constructor arguments
    offline_env: tuple[tuple[str, str], ...] = ()  # set (if unset) before importing it


@dataclass
class Built:
    """What a source hands to `resolve`: the network and what the library saved about it.

    `model` returns NxCxhxw logits (a tensor or torchvision's {'out': ...});
    `checkpoint_into` is the module a --checkpoint state_dict fits (the
    library's own model inside an adapter); mean/std are in 0..1 units.
    """

    model: nn.Module
    name: str
    family: str
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    color: ColorOrder
    size: tuple[int, int]
    stride: int
    weights: str
    palette: tuple[tuple[int, int, int], ...] = ()  # () : default_palette(classes)
    notes: list[str] = field(default_factory=list)
    checkpoint_into: nn.Module | None = None  # None: `model` itself


_HF_OFFLINE = (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"))
_SOURCES: tuple[Source, ...] = (
    Source("smp", "segedge.export.models.source_smp", "smp",
           "smp:Class --model-args ... | smp:path/to/save_pretrained/",
           "segmentation_models_pytorch", takes_model_args=True, offline_env=_HF_OFFLINE),
    Source("hf", "segedge.export.models.source_hf", "hf",
           "hf:path/to/folder/ (config.json + model.safetensors + preprocessor_config.json)",
           "transformers", offline_env=_HF_OFFLINE),
    Source("yolo", "segedge.export.models.source_yolo", "yolo",
           "yolo:path/to/best.pt (an Ultralytics task=semantic checkpoint)", "ultralytics",
           offline_env=(("YOLO_OFFLINE", "1"), ("YOLO_VERBOSE", "False"))),
    Source("tv", "segedge.export.models.source_tv", "tv",
           "tv:<torchvision.models.segmentation factory> --checkpoint FILE", None),
)
_FILE = Source("file", "segedge.export.models.source_file", None, "path/to/model.py:Class",
               takes_model_args=True)
_ZOO = Source("zoo", "segedge.export.models.source_zoo", None, "a zoo name (segexport --list)")


def sources() -> tuple[Source, ...]:
    """Every source, prefixed ones first (for messages and the README)."""
    return (*_SOURCES, _FILE, _ZOO)


def is_file_ref(ref: str) -> bool:
    """``path/to/model.py:Class`` (a user's own file)."""
    return ":" in ref and ref.split(":", 1)[0].endswith(".py")


def split(ref: str) -> tuple[Source, str]:
    """(source, what follows its prefix); an unknown ``x:...`` prefix is one line."""
    if is_file_ref(ref):
        return _FILE, ref
    head, sep, rest = ref.partition(":")
    if not sep:
        return _ZOO, ref
    for source in _SOURCES:
        if head.strip().lower() == source.prefix:
            if not rest.strip():
                raise InputError("MODEL", source.usage, repr(ref))
            return source, rest.strip()
    prefixes = ", ".join(f"{s.prefix}:" for s in _SOURCES)
    raise InputError("MODEL", f"a zoo name, path/to/file.py:Class or a library model "
                              f"({prefixes})", repr(ref))


def display_name(what: str) -> str:
    """The artifact name of a library reference: a class/factory name, or a path's stem."""
    text = what.rstrip("/\\") or what
    path = Path(text)
    if path.is_dir():
        return path.resolve().name or "model"
    if "/" in text or "\\" in text or path.suffix in {".pt", ".pth"}:
        return path.stem or "model"
    return text


def model_name(ref: str) -> str:
    """The name an artifact is called after, known before the model is built."""
    source, what = split(ref)
    if source is _ZOO:
        from segedge.export.models import registry

        return registry.get(ref).name  # unknown names: one line with the nearest ones
    if source is _FILE:
        return ref.split(":", 1)[1]
    return display_name(what)


def fixed_task(ref: str) -> str | None:
    """The task a zoo entry is (a --task must agree); None: any, semantic by default."""
    source, _ = split(ref)
    if source is not _ZOO:
        return None
    from segedge.export.models import registry

    return registry.get(ref).task


def model_args_refusal(ref: str) -> str | None:
    """What --model-args needs when `ref` cannot take them (the InputError's 'expected')."""
    source, _ = split(ref)
    if source.takes_model_args:
        return None
    if source is _ZOO:
        return "a path/to/file.py:Class model (zoo entries take --num-classes)"
    return f"{LIBRARY_MODEL_ARGS} ({source.prefix}: models read their arguments from the file)"


def build(cfg: ExportConfig) -> Built:
    """Import the source's library (one line naming the pip extra when missing) and build."""
    source, what = split(cfg.model)
    if source.package is not None:
        require(source, cfg.model)
    module: Any = importlib.import_module(source.module)
    built: Built = module.build(what, cfg)
    return built


def require(source: Source, ref: str) -> None:
    """Import the library once, offline; missing -> BackendUnavailableError (exit 2)."""
    for key, value in source.offline_env:
        os.environ.setdefault(key, value)
    assert source.package is not None
    try:
        importlib.import_module(source.package)
    except ImportError as err:
        raise BackendUnavailableError(
            f"{ref}: expected the {source.package} package (pip install 'segedge[{EXTRA}]'), "
            f"got {type(err).__name__}: {err}") from None
