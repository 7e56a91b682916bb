"""Describe a Python API as JSON: run in a subprocess over the real bindings, in-process over
the fakes, so tests/real_bindings/test_fakes_vs_real.py compares like with like.

Usage: ``python introspect.py tensorrt|cudart NAMES_JSON`` prints one JSON object:
``{"version", "names": {name: {"kind": "enum", "members": {m: value}} | {"kind": "class",
"members": {m: {"kind": "property", "readonly": bool} | {"kind": "method", "params":
[[...], ...]}}} | {"kind": "function", "params": [[...]]} | {"kind": "absent"}}, "failures":
{call: outcome}}``.  Parameter lists come from inspect where it can read them, else from the
pybind11 docstring (``name(self: T, a: int = 0) -> R``, one line per overload).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
import re
import sys
from collections.abc import Mapping
from typing import Any

_SIG = re.compile(r"^\s*(?:\d+\.\s*)?(\w+)\((.*)\)\s*->")


def _split(params: str) -> list[str]:
    """Top-level comma split of a docstring parameter list (types may hold brackets)."""
    out, depth, cur = [], 0, ""
    for ch in params:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def doc_params(obj: Any, name: str) -> list[list[str]] | None:
    """Parameter names per overload from a pybind11 docstring, ``self`` dropped."""
    found = []
    for line in (getattr(obj, "__doc__", None) or "").splitlines():
        m = _SIG.match(line)
        if m and m.group(1) == name:
            names = [p.split(":")[0].split("=")[0].strip() for p in _split(m.group(2))]
            found.append([n for n in names if n and n not in ("self", "*", "/")])
    return found or None


def params(obj: Any, name: str) -> list[list[str]] | None:
    """Parameter names per overload: pybind11's docstring, else inspect (Cython, the fakes)."""
    by_doc = doc_params(obj, name)
    if by_doc is not None:
        return by_doc
    try:
        found = [p for p in inspect.signature(obj).parameters if p != "self"]
    except (TypeError, ValueError):
        return None
    return None if found == ["args", "kwargs"] else [found]  # (*args, **kwargs): unknown


def is_enum(value: Any) -> bool:
    """A Python enum or a pybind11 enum (both have a ``__members__`` mapping)."""
    return isinstance(value, type) and isinstance(getattr(value, "__members__", None), Mapping)


def describe_member(cls: type, member: str) -> dict[str, Any]:
    try:
        static = inspect.getattr_static(cls, member)
    except AttributeError:
        return {"kind": "absent"}
    if isinstance(static, property):
        return {"kind": "property", "readonly": static.fset is None}
    if isinstance(static, (staticmethod, classmethod)):
        static = static.__func__
    if callable(static) and not isinstance(static, type):
        target = getattr(cls, member)
        return {"kind": "method", "params": params(target, member)}
    return {"kind": "value"}


def describe(module: Any, names: dict[str, list[str]]) -> dict[str, Any]:
    """``names``: {module attribute: [class members to describe]}."""
    out: dict[str, Any] = {}
    for name, members in names.items():
        value: Any = getattr(module, name, None)
        if value is None and not hasattr(module, name):
            out[name] = {"kind": "absent"}
        elif is_enum(value):
            out[name] = {"kind": "enum",
                         "members": {k: int(v) for k, v in value.__members__.items()}}
        elif isinstance(value, type):
            out[name] = {"kind": "class",
                         "members": {m: describe_member(value, m) for m in members}}
        elif callable(value):
            out[name] = {"kind": "function", "params": params(value, name)}
        else:
            out[name] = {"kind": "value", "value": value if isinstance(value, (int, str))
                         else repr(value)}
    return out


def outcome(call: Any) -> dict[str, Any]:
    """What a call did: raised (type, message) or returned (error codes as ints, values
    as None / 'int' / their repr for small ints)."""
    try:
        result = call()
    except Exception as err:  # noqa: BLE001 - recording what was raised is the point
        return {"raised": type(err).__name__, "message": " ".join(str(err).split())}
    if isinstance(result, tuple):
        return {"returned": [int(v) if isinstance(v, enum.Enum) or type(v).__name__ ==
                             "cudaError_t" else (None if v is None else type(v).__name__)
                             for v in result]}
    return {"returned": None if result is None else type(result).__name__}


def tensorrt_failures(trt: Any) -> dict[str, Any]:
    """What creating the root objects does where TensorRT cannot initialise."""
    logger = trt.Logger(trt.Logger.WARNING)
    return {"Builder(logger)": outcome(lambda: trt.Builder(logger)),
            "Runtime(logger)": outcome(lambda: trt.Runtime(logger))}


CUDA_SEQUENCE = (("cudaRuntimeGetVersion", ()), ("cudaGetDeviceCount", ()),
                 ("cudaDriverGetVersion", ()), ("cudaSetDevice", (0,)),
                 ("cudaGetDeviceProperties", (0,)), ("cudaMalloc", (16,)),
                 ("cudaMallocHost", (16,)), ("cudaStreamCreate", ()), ("cudaMemGetInfo", ()),
                 ("cudaGetDeviceCount", ()))


def cuda_failures(cudart: Any) -> dict[str, Any]:
    """The calls segedge makes, in its order, on a machine without a CUDA driver."""
    out = {}
    for i, (fn, args) in enumerate(CUDA_SEQUENCE):
        result = outcome(lambda fn=fn, args=args: getattr(cudart, fn)(*args))
        if fn == "cudaRuntimeGetVersion":
            result = {"returned": result.get("returned", [None])[:1]} if "returned" in result \
                else result  # the runtime's version differs by release; its success does not
        out[f"{i} {fn}"] = result
    return out


def importable(paths: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        try:
            importlib.import_module(path)
        except ImportError:
            continue
        found.append(path)
    return found


def main(argv: list[str]) -> None:
    kind, names = argv[0], json.loads(argv[1])
    if kind == "tensorrt":
        module = importlib.import_module("tensorrt")
        report = {"version": module.__version__, "names": describe(module, names),
                  "failures": tensorrt_failures(module)}
    else:
        from segedge.runtime.backends.cuda import import_cudart

        module = import_cudart()
        report = {"version": module.__name__, "names": describe(module, names),
                  "paths": importable(("cuda.bindings.runtime", "cuda.cudart")),
                  "failures": cuda_failures(module)}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
