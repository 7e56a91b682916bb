"""Model source ``smp:``: segmentation_models_pytorch, from constructor arguments or a folder.

``smp:Unet --model-args encoder_name=resnet34 encoder_weights=imagenet classes=12
--checkpoint best.pth`` builds ``smp.Unet(...)``; ``smp:path/to/folder`` reads what
``model.save_pretrained(folder)`` wrote (config.json with ``_model_class`` and the
constructor arguments, model.safetensors).  Encoder weights are never downloaded:
the network is always built with ``encoder_weights=None`` and its weights come
from the folder or --checkpoint; the ``encoder_weights`` named (default
"imagenet", as SMP's) only says which normalisation the encoder was trained
with.  SMP itself keeps that normalisation on the Hugging Face Hub (read here from
the local Hub cache only) or, for ``tu-`` encoders, in timm's built-in configs.
SMP saves no input size: 512x512 unless --imgsz.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from segedge.export.models.library import (
    Triple,
    folder_ref,
    load_strict,
    needs_flags,
    read_weights,
    refuse_weights_flag,
    unit_normalisation,
)
from segedge.export.models.sources import Built
from segedge.export.models.user_model import constructor_kwargs, user_code
from segedge.runtime.errors import CheckpointError, ExportError, InputError
from segedge.runtime.metadata import IMAGENET_MEAN, IMAGENET_STD, ColorOrder

if TYPE_CHECKING:
    from segedge.export.config import ExportConfig

DEFAULT_SIZE = (512, 512)  # SMP records no input size
_IMAGENET_HINT = ("SMP's 'imagenet' encoders use --mean 0.485 0.456 0.406 --std 0.229 0.224 "
                  "0.225")


def build(what: str, cfg: ExportConfig) -> Built:
    refuse_weights_flag(cfg, f"smp:{what}")
    if folder_ref(what):
        return _from_folder(Path(what), cfg)
    return _from_args(what, cfg)


def architectures() -> list[str]:
    import segmentation_models_pytorch as smp
    from segmentation_models_pytorch.base import SegmentationModel

    return sorted(n for n, v in vars(smp).items()
                  if inspect.isclass(v) and issubclass(v, SegmentationModel)
                  and v is not SegmentationModel)


def _architecture(name: str, where: str) -> type[nn.Module]:
    import segmentation_models_pytorch as smp

    found = getattr(smp, name, None)
    if name not in architectures() or found is None:
        raise InputError(where, f"an SMP architecture ({', '.join(architectures())})",
                         repr(name))
    return found  # type: ignore[no-any-return]


def _from_args(name: str, cfg: ExportConfig) -> Built:
    ref = f"smp:{name}"
    cls = _architecture(name, ref)
    args = dict(cfg.model_args)
    trained_with = args.get("encoder_weights", _default(cls, "encoder_weights"))
    args["encoder_weights"] = None  # never download; weights come from --checkpoint
    if "classes" not in args and (cfg.classes is not None or cfg.num_classes is not None):
        args["classes"] = len(cfg.classes) if cfg.classes is not None else cfg.num_classes
    kwargs = constructor_kwargs(ref, cls, None, tuple(args.items()))
    model = _construct(ref, cls, kwargs)
    notes = [f"encoder weights not downloaded: built with encoder_weights=None (trained with "
             f"{trained_with!r}); " + ("weights from --checkpoint" if cfg.checkpoint else
                                       "random weights: give --checkpoint FILE")]
    return _built(model, name, ref, cfg, kwargs, trained_with, "random", notes)


def _from_folder(folder: Path, cfg: ExportConfig) -> Built:
    ref = f"smp:{folder}"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError(ref, "a model.save_pretrained() folder (config.json, model.safetensors)",
                         f"no {config_path}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(str(config_path), "SMP's config.json", f"unreadable ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("_model_class"), str):
        raise InputError(str(config_path), "SMP's config.json with _model_class (written by "
                         "save_pretrained)", "no _model_class")
    cls = _architecture(config["_model_class"], str(config_path))
    args = {k: v for k, v in config.items() if not k.startswith("_")}
    trained_with = args.get("encoder_weights", _default(cls, "encoder_weights"))
    args["encoder_weights"] = None  # the folder holds every weight
    kwargs = constructor_kwargs(ref, cls, None, tuple(args.items()))
    model = _construct(ref, cls, kwargs)
    state, path = read_weights(folder)
    load_strict(model, state, path)
    return _built(model, folder.resolve().name, ref, cfg, kwargs, trained_with,
                  f"smp folder {folder}", [])


def _construct(ref: str, cls: type[nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    try:
        with user_code(f"{ref}: constructing the model"):
            return cls(**kwargs)
    except ExportError:
        raise
    except Exception as err:  # noqa: BLE001 - constructors raise anything on bad arguments
        raise InputError("--model-args", f"arguments smp.{cls.__name__} accepts",
                         f"{type(err).__name__}: {str(err).splitlines()[0][:160]}") from None


def _default(cls: type, name: str) -> Any:
    param = inspect.signature(cls).parameters.get(name)
    return None if param is None or param.default is param.empty else param.default


def _built(model: nn.Module, name: str, ref: str, cfg: ExportConfig, kwargs: dict[str, Any],
           trained_with: Any, weights: str, notes: list[str]) -> Built:
    from segedge.export.models.resolve import saved_classes

    channels = int(kwargs.get("classes", _default(type(model), "classes") or 1))
    if channels < 2:
        raise InputError(f"{ref} classes", "2 or more output channels (one per class; "
                         "single-channel binary models are not supported)", channels)
    classes = saved_classes(cfg, tuple(f"class_{i}" for i in range(channels)), ref)
    encoder = str(kwargs.get("encoder_name", _default(type(model), "encoder_name")))
    mean, std, color = IMAGENET_MEAN, IMAGENET_STD, "RGB"  # replaced, or flags required
    saved = preprocessing(encoder, trained_with)
    if isinstance(saved, str):
        needs_flags(cfg, f"smp encoder {encoder} ({trained_with!r} weights)", saved)
    else:
        mean, std, color = saved
    stride = int(getattr(getattr(model, "encoder", None), "output_stride", 32) or 32)
    if cfg.imgsz is None:
        notes.append(f"SMP records no input size: exporting at {DEFAULT_SIZE[0]}x"
                     f"{DEFAULT_SIZE[1]} (--imgsz H W)")
    return Built(model=model, name=name, family=f"smp-{type(model).__name__.lower()}",
                 classes=classes, mean=mean, std=std, color=color, size=DEFAULT_SIZE,
                 stride=stride, weights=weights, notes=notes)


def preprocessing(encoder: str, weights: Any) -> tuple[Triple, Triple, ColorOrder] | str:
    """(mean, std in 0..1 units, colour order) as SMP's get_preprocessing_params reads them,
    offline; else the reason there are none (a string)."""
    if weights is None:
        return "SMP records no normalisation for encoder_weights=None; " + _IMAGENET_HINT
    if encoder.startswith("tu-"):
        import timm

        cfg = timm.models.get_pretrained_cfg(encoder[3:])
        if cfg is None or cfg.mean is None or cfg.std is None:
            return f"timm has no pretrained config for {encoder[3:]}"
        return (*unit_normalisation(list(cfg.mean), list(cfg.std)), "RGB")
    from segmentation_models_pytorch.encoders import encoders

    setting = encoders.get(encoder, {}).get("pretrained_settings", {}).get(weights)
    if setting is None:
        return f"SMP has no {weights!r} weights for encoder {encoder}; " + _IMAGENET_HINT
    if "mean" in setting and "std" in setting:  # older SMP kept them inline
        return _settings(setting)
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(setting["repo_id"], "config.json",
                               revision=setting.get("revision"), local_files_only=True)
        return _settings(json.loads(Path(path).read_text(encoding="utf-8")))
    except Exception:  # noqa: BLE001 - not in the local cache (nothing is downloaded)
        return (f"SMP keeps it on the Hub ({setting.get('repo_id')}), not in the local cache; "
                + _IMAGENET_HINT)


def _settings(settings: dict[str, Any]) -> tuple[Triple, Triple, ColorOrder]:
    """SMP's preprocess_input: BGR when input_space says so, x/255 when input_range is
    [0, 1], then (x - mean) / std."""
    high = float(list(settings.get("input_range", [0, 1]))[1])
    space = str(settings.get("input_space", "RGB")).upper()
    if space not in ("RGB", "BGR"):
        raise CheckpointError(f"SMP encoder settings: expected input_space RGB or BGR, got "
                              f"{space}")
    mean, std = unit_normalisation(settings["mean"], settings["std"],
                                   1 / 255 if high == 1 else 1.0)
    return mean, std, "BGR" if space == "BGR" else "RGB"
