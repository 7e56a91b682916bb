"""Pretrained weights as data on the model spec, the way torchvision's weight enums are.

A `Weights` says where its file comes from (a torchvision weights enum, a file
shipped inside segedge, or a URL), what it was trained on (`meta`), whether it
is already on this machine (`is_cached`, which never downloads) and how to load
it (`state_dict` / `load`, always ``torch.load(weights_only=True)``).  The zoo
catalog holds the one table of them; nothing else maps model names to weights.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from segedge.runtime.errors import CheckpointError

SourceKind = Literal["torchvision", "shipped", "url"]
Scope = Literal["full", "backbone"]
SOURCE_KINDS: tuple[str, ...] = ("torchvision", "shipped", "url")
SCOPES: tuple[str, ...] = ("full", "backbone")
WeightsMode = Literal["auto", "random", "pretrained"]
Chosen = Literal["random", "pretrained"]


@dataclass(frozen=True)
class WeightsMeta:
    """What the weights were trained on; mean/std only where they differ from the entry's."""

    dataset: str
    scope: Scope = "full"  # "backbone": the trunk loads, the head starts random
    classes: tuple[str, ...] = ()  # what the trained head predicts (empty for a backbone)
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if not self.dataset.strip():
            raise ValueError("WeightsMeta.dataset: expected a dataset name, got ''")
        if self.scope not in SCOPES:
            raise ValueError(f"WeightsMeta.scope: expected one of {SCOPES}, got {self.scope!r}")
        if self.scope == "backbone" and self.classes:
            raise ValueError(f"WeightsMeta.classes: expected none for backbone weights, got "
                             f"{len(self.classes)}")
        for name, value in (("mean", self.mean), ("std", self.std)):
            if value is not None and len(value) != 3:
                raise ValueError(f"WeightsMeta.{name}: expected 3 values, got {len(value)}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"WeightsMeta.std: expected positive values, got {self.std}")


@dataclass(frozen=True)
class Weights:
    """One pretrained file: its source, its meta, and loading that never runs pickled code.

    `ref` is ``"module:Enum.MEMBER"`` for torchvision (resolved lazily, so the
    table costs no import), ``"package:relative/path"`` for a shipped file and
    the address for a URL.  `remedy` says how to get the file when it is absent.
    """

    kind: SourceKind
    ref: str
    description: str  # what reports and notes call these weights
    meta: WeightsMeta
    remedy: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"Weights.kind: expected one of {SOURCE_KINDS}, got {self.kind!r}")
        if not self.description.strip():
            raise ValueError(f"Weights.description: expected text, got '' for {self.ref!r}")
        if self.kind in ("torchvision", "shipped"):
            module, _, rest = self.ref.partition(":")
            if not module or not rest or (self.kind == "torchvision" and "." not in rest):
                form = "module:Enum.MEMBER" if self.kind == "torchvision" else "package:path"
                raise ValueError(f"Weights.ref: expected {form!r} for {self.kind} weights, "
                                 f"got {self.ref!r}")
        elif urlparse(self.ref).scheme not in ("http", "https", "file"):
            raise ValueError(f"Weights.ref: expected an http(s) or file URL, got {self.ref!r}")

    @classmethod
    def from_torchvision(cls, ref: str, description: str, meta: WeightsMeta) -> Weights:
        return cls("torchvision", ref, description, meta)

    @classmethod
    def from_package(cls, ref: str, description: str, meta: WeightsMeta,
                     remedy: str = "") -> Weights:
        return cls("shipped", ref, description, meta, remedy)

    @classmethod
    def from_url(cls, url: str, description: str, meta: WeightsMeta) -> Weights:
        return cls("url", url, description, meta)

    def __str__(self) -> str:
        return self.description

    @property
    def shipped(self) -> bool:
        """Part of segedge itself: `--weights auto` always uses them."""
        return self.kind == "shipped"

    @property
    def source(self) -> str:
        """Where the file comes from, for listings and messages."""
        if self.kind == "torchvision":
            return f"torchvision {self.ref.partition(':')[2]}"
        if self.kind == "shipped":
            return f"shipped file {self.path()}"
        return self.ref

    def enum(self) -> Any:
        """The torchvision weights enum member (torchvision kinds only)."""
        if self.kind != "torchvision":
            raise ValueError(f"Weights.enum: expected torchvision weights, got {self.kind} "
                             f"({self.ref})")
        module, _, attrs = self.ref.partition(":")
        obj: Any = importlib.import_module(module)
        for attr in attrs.split("."):
            obj = getattr(obj, attr)
        return obj

    def url(self) -> str | None:
        if self.kind == "torchvision":
            return str(self.enum().url)
        return self.ref if self.kind == "url" else None

    def path(self) -> Path:
        """The shipped file, or where torch.hub keeps (and looks for) the download."""
        if self.kind == "shipped":
            package, _, rel = self.ref.partition(":")
            return Path(str(resources.files(package).joinpath(rel)))
        url = self.url()
        assert url is not None  # torchvision and url kinds always have one
        return hub_cache_path(url)

    def is_cached(self) -> bool:
        """On this machine already (never downloads)."""
        return self.path().is_file()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors, from the file here or (online) a download; offline: one clear line."""
        path = self.path()
        if self.kind == "shipped":
            if not path.is_file():
                hint = f" ({self.remedy})" if self.remedy else ""
                raise CheckpointError(f"{self.description}: expected {path}{hint}, got no file")
            from segedge.export.models.checkpoint import read_state_dict

            return read_state_dict(path)
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=True)  # type: ignore[no-any-return]
        url = self.url()
        assert url is not None  # torchvision and url kinds always have one
        try:
            return torch.hub.load_state_dict_from_url(  # type: ignore[no-any-return]
                url, map_location="cpu", progress=False, weights_only=True, check_hash=False)
        except Exception as err:  # noqa: BLE001 - any download failure means "not available"
            name = self.enum() if self.kind == "torchvision" else self.description
            raise CheckpointError(
                f"pretrained weights {name}: expected the file {path} (download {url} there "
                f"on a connected machine), got no file and no download ({type(err).__name__}); "
                "or use --weights random / --checkpoint PATH"
            ) from None

    def fetch(self) -> Path:
        """Make sure the file is here (download when online); its path."""
        if not self.is_cached():
            self.state_dict()
        return self.path()

    def load(self, model: nn.Module, strict: bool = False) -> list[str]:
        """Load into `model`; return the keys left random (none when strict).

        Not strict: every key whose name and shape match loads (a different
        class count keeps a random head: a fine-tuning start).
        """
        state = self.state_dict()
        if strict:
            model.load_state_dict(state, strict=True)
            return []
        return load_matching(model, state)

    def load_noted(self, model: nn.Module, note_on: nn.Module | None = None,
                   list_at_most: int | None = None) -> None:
        """Load (not strict) and leave the report's weights note on `note_on` (default
        `model`; resolve reads it from what the builder returns): the enum, and which
        keys stayed random (the first `list_at_most` of them, when given)."""
        missing = self.load(model)
        note = f"pretrained {self.enum()}"
        if missing:
            shown = missing if list_at_most is None else missing[:list_at_most]
            more = " ..." if len(shown) < len(missing) else ""
            note += f"; random: {', '.join(shown)}{more}"
        (note_on or model).segedge_weights_note = note  # type: ignore[assignment]


def choose_weights(spec_weights: Weights | None, mode: WeightsMode,
                   checkpoint: Path | str | None = None) -> Chosen:
    """What a build loads: a checkpoint overwrites everything (so build random);
    `auto` takes shipped weights always and downloadable ones only when cached."""
    if checkpoint is not None:
        return "random"
    if mode != "auto":
        return mode
    if spec_weights is None:
        return "random"
    return "pretrained" if spec_weights.shipped or spec_weights.is_cached() else "random"


def availability(spec_weights: Weights | None) -> str:
    """The `segexport --list` column: no / shipped / cached / download."""
    if spec_weights is None:
        return "no"
    if spec_weights.shipped:
        return "shipped"
    return "cached" if spec_weights.is_cached() else "download"


def hub_cache_path(url: str) -> Path:
    """Where torch.hub keeps (and looks for) the file behind `url`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load every key whose name and shape match; return the keys left out."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
