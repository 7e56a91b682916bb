"""Where a model comes from: one file per source, each kept by the one lazy registry.

A MODEL argument is a zoo name (``demo``), a user file (``path/model.py:Class``)
or ``<prefix>:<what>`` for a library front-end (``smp:Unet``, ``hf:path/``,
``yolo:best.pt``, ``tv:deeplabv3_resnet101``).  Each source is a module
``export/models/source_<name>.py`` with ``build(what, cfg) -> Built`` (and, when
the default does not fit, ``artifact_name(what)`` and ``task(what)``), plus one
`register_model_source` line at the end of this file.  `resolve` adds what
every model shares (checkpoint, normalisation flags, eval mode).  This module
stays light (no torch at import): the config, the CLI and the task registry ask
it about a reference before anything is built, and a source's module is only
imported when its references are.  Nothing outside a source's file compares its
name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.runtime.errors import BackendUnavailableError, InputError
from segedge.runtime.metadata import ColorOrder
from segedge.runtime.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from segedge.export.config import ExportConfig

EXTRA = "models"  # the pip extra that brings every library front-end (pyproject.toml)

BuildFn = Callable[[str, "ExportConfig"], "Built"]


@dataclass(frozen=True)
class Source:
    """One place models come from: ``module`` holds ``build(what, cfg) -> Built``.

    A prefixed source takes ``<prefix>:<what>``; an unprefixed one (the zoo, a user's
    file) takes the references ``matches`` accepts, whole.  ``form`` is how messages
    name its references (default ``<prefix>:...``); ``args_refusal`` is what
    ``--model-args`` needs when this source does not take them (default: the
    sources that do, and why this one does not).
    """

    name: str
    module: str
    prefix: str | None = None  # "smp" for smp:...; None: `matches` decides
    matches: Callable[[str], bool] | None = None
    usage: str = ""  # how a reference looks, for messages and --help
    form: str = ""
    package: str | None = None  # the library it needs (import name); None: none beyond torch
    takes_model_args: bool = False  # --model-args are its constructor arguments
    offline_env: tuple[tuple[str, str], ...] = ()  # set (if unset) before importing it
    args_refusal: str = ""

    def __post_init__(self) -> None:
        if (self.prefix is None) == (self.matches is None):
            raise InputError(f"model source {self.name}", "a prefix or a matches predicate",
                             "both" if self.prefix is not None else "neither")
        if self.prefix is not None and (not self.prefix.isidentifier()
                                        or self.prefix != self.prefix.lower()):
            raise InputError(f"model source {self.name} prefix", "a lower-case identifier",
                             repr(self.prefix))

    @property
    def shown(self) -> str:
        return self.form or f"{self.prefix}:..."

    def claims(self, ref: str) -> bool:
        """Whether `ref` is this source's (a prefixed one: its prefix, any case)."""
        if self.matches is not None:
            return self.matches(ref)
        head, sep, _ = ref.partition(":")
        return bool(sep) and head.strip().lower() == self.prefix


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


# name -> "module:build", info ``source`` (the Source); tried in registration order.
MODEL_SOURCES: Registry[BuildFn] = Registry("model source")


def register_model_source(name: str, module: str, *, prefix: str | None = None,
                          matches: Callable[[str], bool] | None = None, usage: str = "",
                          form: str = "", package: str | None = None,
                          takes_model_args: bool = False,
                          offline_env: tuple[tuple[str, str], ...] = (),
                          args_refusal: str = "") -> Source:
    """One line per source: ``register_model_source("smp", "pkg.source_smp", prefix="smp",
    usage="smp:Class ...", package="segmentation_models_pytorch")``."""
    source = Source(name, module, prefix, matches, usage, form, package, takes_model_args,
                    offline_env, args_refusal)
    MODEL_SOURCES.register(name, f"{module}:build", source=source)
    return source


def sources() -> tuple[Source, ...]:
    """Every source in registration order (for messages and --help)."""
    return tuple(e.info["source"] for e in MODEL_SOURCES)


def library_usage() -> str:
    """One line per prefixed source: how its references look (``segexport --help``)."""
    return "\n".join(s.usage or s.shown for s in sources() if s.prefix is not None)


def is_file_ref(ref: str) -> bool:
    """``path/to/model.py:Class`` (a user's own file)."""
    return ":" in ref and ref.split(":", 1)[0].endswith(".py")


def _is_zoo_name(ref: str) -> bool:
    return ":" not in ref


def split(ref: str) -> tuple[Source, str]:
    """(source, what it is given: the reference after a prefix, else all of it); a reference
    no source claims, or an empty one after its prefix, is one line."""
    for source in sources():
        if not source.claims(ref):
            continue
        if source.prefix is None:
            return source, ref
        rest = ref.partition(":")[2].strip()
        if not rest:
            raise InputError("MODEL", source.usage or source.shown, repr(ref))
        return source, rest
    plain = [s.shown for s in sources() if s.prefix is None]
    prefixes = ", ".join(f"{s.prefix}:" for s in sources() if s.prefix is not None)
    raise InputError("MODEL", f"{', '.join(plain)} or a library model ({prefixes})", repr(ref))


def display_name(what: str) -> str:
    """The artifact name of a library reference: a class/factory name, or a path's stem."""
    text = what.rstrip("/\\") or what
    path = Path(text)
    if path.is_dir():
        return path.resolve().name or "model"
    if "/" in text or "\\" in text or path.suffix in {".pt", ".pth"}:
        return path.stem or "model"
    return text


def _hook(source: Source, name: str) -> Callable[[str], Any] | None:
    """A source module's optional ``name(what)`` (imports the module, not its library)."""
    return getattr(importlib.import_module(source.module), name, None)


def model_name(ref: str) -> str:
    """The name an artifact is called after, known before the model is built: the source's
    ``artifact_name(what)``, by default `display_name`."""
    source, what = split(ref)
    named = _hook(source, "artifact_name")
    return str(named(what)) if named is not None else display_name(what)


def fixed_task(ref: str) -> str | None:
    """The task the model is (a --task must agree): the source's ``task(what)``; None: any,
    semantic by default."""
    source, what = split(ref)
    task = _hook(source, "task")
    return None if task is None else task(what)


def model_args_refusal(ref: str) -> str | None:
    """What --model-args needs when `ref` cannot take them (the InputError's 'expected')."""
    source, _ = split(ref)
    if source.takes_model_args:
        return None
    if source.args_refusal:
        return source.args_refusal
    takers = sorted((s for s in sources() if s.takes_model_args),
                    key=lambda s: s.prefix is not None)  # the user's own file first
    return (f"a {' or '.join(s.shown for s in takers)} model "
            f"({source.prefix}: models read their arguments from the file)")


def build(cfg: ExportConfig) -> Built:
    """Import the source's library (one line naming the pip extra when missing) and build."""
    source, what = split(cfg.model)
    if source.package is not None:
        require(source, cfg.model)
    built: Built = MODEL_SOURCES.load(source.name)(what, cfg)
    return built


def require(source: Source, ref: str) -> None:
    """Import the library once, offline; missing -> BackendUnavailableError (exit 2)."""
    for key, value in source.offline_env:
        os.environ.setdefault(key, value)
    assert source.package is not None
    before = dict(os.environ)
    try:
        importlib.import_module(source.package)
    except ImportError as err:
        raise BackendUnavailableError(
            f"{ref}: expected the {source.package} package (pip install 'segedge[{EXTRA}]'), "
            f"got {type(err).__name__}: {err}") from None
    finally:
        restore_environ(before)


def restore_environ(before: dict[str, str]) -> None:
    """Undo what an import wrote to the environment (Ultralytics sets OMP_NUM_THREADS=1 "for
    training" when unset: every process started afterwards, a runtime check or the user's
    own, would then run its OpenMP pools on one thread)."""
    for key in set(os.environ) - set(before):
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


_PKG = "segedge.export.models"
_HF_OFFLINE = (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"))
register_model_source("zoo", f"{_PKG}.source_zoo", matches=_is_zoo_name, form="a zoo name",
                      usage="a zoo name (segexport --list)",
                      args_refusal="a path/to/file.py:Class model (zoo entries take "
                                   "--num-classes)")
register_model_source("file", f"{_PKG}.source_file", matches=is_file_ref,
                      usage="path/to/model.py:Class", form="path/to/file.py:Class",
                      takes_model_args=True)
register_model_source("smp", f"{_PKG}.source_smp", prefix="smp", form="smp:Class",
                      usage="smp:Class --model-args ... | smp:path/to/save_pretrained/",
                      package="segmentation_models_pytorch", takes_model_args=True,
                      offline_env=_HF_OFFLINE)
register_model_source("hf", f"{_PKG}.source_hf", prefix="hf", package="transformers",
                      usage="hf:path/to/folder/ (config.json + model.safetensors + "
                            "preprocessor_config.json)", offline_env=_HF_OFFLINE)
register_model_source("yolo", f"{_PKG}.source_yolo", prefix="yolo", package="ultralytics",
                      usage="yolo:path/to/best.pt (an Ultralytics task=semantic checkpoint)",
                      offline_env=(("YOLO_OFFLINE", "1"), ("YOLO_VERBOSE", "False")))
register_model_source("tv", f"{_PKG}.source_tv", prefix="tv",
                      usage="tv:<torchvision.models.segmentation factory> --checkpoint FILE")
