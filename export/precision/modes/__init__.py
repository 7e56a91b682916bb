"""The precision registry: mode name -> its class, kept by the one lazy registry.

A new mode is a new file (here, or any importable module), its precision's
``register_precision`` line (runtime/precisions.py) and one ``register_mode`` line;
the CLI's ``--precision`` choices, the config's validation, the report's summary
lines and the engine build all ask the mode through ``get``.  Modes are loaded on
first use, so listing them imports none of their lowering code.
"""

from __future__ import annotations

from segedge.export.precision.modes.base import Lowered, LowerRequest, PrecisionMode
from segedge.runtime.errors import InputError
from segedge.runtime.registry import Entry, Registry

__all__ = ["LowerRequest", "Lowered", "MODES", "PrecisionMode", "get", "names",
           "register_mode"]


def _check(entry: Entry, obj: object) -> None:
    if not (isinstance(obj, type) and issubclass(obj, PrecisionMode)) or \
            getattr(obj, "name", None) != entry.name:
        raise InputError(f"precision mode {entry.name!r}",
                         f"a PrecisionMode subclass named {entry.name!r} at {entry.target}",
                         repr(obj))


MODES: Registry[type[PrecisionMode]] = Registry("precision", check=_check)
_INSTANCES: dict[type[PrecisionMode], PrecisionMode] = {}  # one object per mode class


def register_mode(name: str, target: str) -> None:
    """Register (or replace) mode ``name`` -> ``'package.module:Class'``, imported on first use.

    The precision's facts come first (runtime/precisions: the metadata, the engine typing,
    segbench and segdeploy read them there), so a name it does not know as an ONNX of its
    own is refused here, in one line saying where to register it."""
    from segedge.runtime.precisions import find

    spec = find(name)
    if spec is None or not spec.artifact:
        raise InputError(f"precision mode {name!r}", "a precision registered first with "
                         "segedge.runtime.precisions.register_precision(PrecisionSpec("
                         f"{name!r}, ...)) as an ONNX of its own (artifact=True)",
                         "none" if spec is None else "a runtime hint (artifact=False)")
    MODES.register(name, target)


register_mode("fp32", "segedge.export.precision.modes.fp32:FP32")
register_mode("fp16", "segedge.export.precision.modes.fp16:FP16")
register_mode("int8", "segedge.export.precision.modes.int8:INT8")


def names() -> tuple[str, ...]:
    """Registered modes in registration order (the CLI lists them in this order)."""
    return tuple(e.name for e in MODES.entries())


def get(name: str) -> PrecisionMode:
    """The mode object for ``name``; an unknown name is one InputError naming the known ones."""
    if not isinstance(name, str) or name not in MODES:
        raise InputError("precision", " or ".join(names()), repr(name))
    cls = MODES.load(name)
    if cls not in _INSTANCES:
        _INSTANCES[cls] = cls()
    return _INSTANCES[cls]
