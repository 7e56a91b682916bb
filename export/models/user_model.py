"""A user's own network: `path/to/model.py:ClassOrFactory`, built as its authors build it.

Constructor arguments come from ``--model-args classes=12 p=2 q=8`` (values
read as Python literals, else strings); ``num_classes`` is passed when the
constructor takes it and the arguments do not name it.  Code in the file runs
under `user_code`, so a model that calls ``sys.exit(0)`` or raises
KeyboardInterrupt itself cannot end segexport as a success or an interruption.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from segedge.runtime.cli_support import Terminated
from segedge.runtime.errors import ExportError, InputError

ModelArgs = tuple[tuple[str, Any], ...]


def is_user_ref(ref: str) -> bool:
    """``path/to/model.py:Class`` (the rule lives with the other model sources)."""
    from segedge.export.models.sources import is_file_ref

    return is_file_ref(ref)


def parse_model_args(tokens: Iterable[str]) -> ModelArgs:
    """``["classes=12 p=2", "name=espnet"]`` -> (("classes", 12), ("p", 2), ("name", "espnet")).

    Each token may hold several whitespace-separated pairs; a value is a Python
    literal when ``ast.literal_eval`` reads it (12, 0.5, True, None, (1, 2),
    'x'), else the text itself.
    """
    pairs: list[tuple[str, Any]] = []
    for token in tokens:
        for item in token.split():
            key, sep, text = item.partition("=")
            if not sep or not key.isidentifier():
                raise InputError("--model-args", "name=value pairs (e.g. classes=12 p=2)",
                                 repr(item))
            try:
                value: Any = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = text
            pairs.append((key, value))
    names = [k for k, _ in pairs]
    dup = next((k for k in names if names.count(k) > 1), None)
    if dup is not None:
        raise InputError("--model-args", "each name once", f"{dup} twice")
    return tuple(pairs)


@contextlib.contextmanager
def user_code(what: str) -> Iterator[None]:
    """Run user code; its SystemExit or self-raised KeyboardInterrupt becomes one ExportError.

    A real Ctrl-C (seen by the SIGINT handler installed here) and SIGTERM
    (`Terminated`) still interrupt as documented (130 / 143).
    """
    signalled = False
    main = threading.current_thread() is threading.main_thread()

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal signalled
        signalled = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    try:
        yield
    except Terminated:
        raise
    except SystemExit as err:
        raise ExportError(f"{what}: expected the model code to return, got "
                          f"sys.exit({err.code!r}) (SystemExit)") from None
    except KeyboardInterrupt:
        if signalled:
            raise
        raise ExportError(f"{what}: expected the model code to return, got a KeyboardInterrupt "
                          "it raised itself (no Ctrl-C was pressed)") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def build_user_model(ref: str, num_classes: int | None, model_args: ModelArgs = ()
                     ) -> nn.Module:
    """Import the file and call the class/factory with --model-args (and num_classes)."""
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
        with user_code(f"{path}: importing it"):
            spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - user code can raise anything
        if isinstance(err, ExportError):
            raise
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
    kwargs = constructor_kwargs(ref, target, num_classes, model_args)
    try:
        with user_code(f"{ref}: constructing the model"):
            model = target(**kwargs)
    except ExportError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ExportError(f"{ref}: constructing the model failed: {type(err).__name__}: {err}"
                          ) from None
    if not isinstance(model, nn.Module):
        raise InputError(ref, "a torch.nn.Module", type(model).__name__)
    return model


def constructor_kwargs(ref: str, target: Any, num_classes: int | None,
                       model_args: ModelArgs) -> dict[str, Any]:
    """--model-args, plus num_classes when the constructor takes it and they do not name it.

    Arguments the signature cannot take are refused in one line listing the ones
    it has (a constructor without an inspectable signature gets them as given).
    """
    kwargs = dict(model_args)
    sig = _signature(target)
    if sig is None:
        return kwargs
    params = sig.parameters
    if num_classes is not None and "num_classes" in params and "num_classes" not in kwargs:
        kwargs["num_classes"] = num_classes
    try:
        sig.bind(**kwargs)
    except TypeError as err:
        takes = _describe(params.values())
        raise InputError("--model-args", f"arguments {ref} takes ({takes})",
                         f"{', '.join(f'{k}={v!r}' for k, v in model_args) or 'none'}: {err}"
                         ) from None
    return kwargs


def _signature(target: object) -> inspect.Signature | None:
    try:
        return inspect.signature(target)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _describe(params: Sequence[inspect.Parameter] | Iterable[inspect.Parameter]) -> str:
    out = []
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            out.append(f"**{p.name}")
        elif p.kind is p.VAR_POSITIONAL:
            out.append(f"*{p.name}")
        else:
            out.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(out) or "nothing"


def shadowing_hint(module: nn.Module) -> str:
    """For an export failure: " (note: ...)" naming attributes that hide nn.Module methods
    (torch's exporters call some of them on every submodule), else ""."""
    found = shadowed_methods(module)
    if not found:
        return ""
    return (f" (note: {', '.join(found)} shadow{'s' if len(found) == 1 else ''} nn.Module "
            "methods the exporters may call; renaming them in the model may fix this)")


def shadowed_methods(module: nn.Module) -> list[str]:
    """`path.name (type)` for every non-callable instance attribute named like an nn.Module
    method, found by walking ``_modules`` directly (the methods may be the shadowed ones)."""
    found: list[str] = []
    stack: list[tuple[str, nn.Module]] = [("", module)]
    seen: set[int] = set()
    while stack:
        prefix, mod = stack.pop()
        if id(mod) in seen:
            continue
        seen.add(id(mod))
        own = vars(mod)
        for name, value in own.items():
            if not name.startswith("_") and callable(getattr(nn.Module, name, None)) \
                    and not callable(value):
                found.append(f"{prefix}{name} ({type(value).__name__})")
        for child_name, child in own.get("_modules", {}).items():
            if child is not None:
                stack.append((f"{prefix}{child_name}.", child))
    return sorted(found)
