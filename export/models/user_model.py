"""A user's own network: `path/to/model.py:ClassOrFactory`."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

from torch import nn

from segedge.runtime.errors import ExportError, InputError


def is_user_ref(ref: str) -> bool:
    return ":" in ref and ref.split(":", 1)[0].endswith(".py")


def build_user_model(ref: str, num_classes: int | None) -> nn.Module:
    """Import the file and call the class/factory, passing num_classes when it takes one."""
    file_part, _, attr = ref.partition(":")
    path = Path(file_part)
    if not path.is_file():
        raise InputError("model file", "an existing .py file", f"no such file {path}")
    mod_name = f"segedge_user_{abs(hash(path.resolve()))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise InputError("model file", "an importable Python file", str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    sys.path.insert(0, str(path.parent.resolve()))  # let the file import its siblings
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - user code can raise anything
        raise ExportError(f"{path}: importing it failed: {type(err).__name__}: {err}") from None
    finally:
        sys.path.pop(0)
    target = getattr(module, attr, None)
    if target is None or not callable(target):
        defined = sorted(n for n, v in vars(module).items()
                         if inspect.isclass(v) and issubclass(v, nn.Module)
                         and v.__module__ == mod_name)
        raise InputError(f"{path}:{attr}", f"a class or factory defined in {path.name} "
                         f"(it defines: {', '.join(defined) or 'no nn.Module'})", "nothing")
    params = _params(target)
    try:
        if num_classes is not None and "num_classes" in params:
            model = target(num_classes=num_classes)
        else:
            model = target()
    except Exception as err:  # noqa: BLE001
        raise ExportError(f"{ref}: constructing the model failed: {type(err).__name__}: {err}"
                          ) from None
    if not isinstance(model, nn.Module):
        raise InputError(ref, "a torch.nn.Module", type(model).__name__)
    return model


def _params(target: object) -> set[str]:
    try:
        return set(inspect.signature(target).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return set()
