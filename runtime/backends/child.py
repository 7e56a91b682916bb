"""Open an artifact with a registered backend in a child process: a compile probe.

Why a child: some graphs crash a backend's compiler (OpenVINO on some Q/DQ forms, measured,
see export/precision/int8.py); a crash must become one line for the caller (the auto
chooser, the precision gates), not a dead segrun or segexport.  The one copy of this
probe: every backend gets it through its descriptor (``BackendDescriptor.compile_probe``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from segedge.runtime.backends.base import BackendOptions

# The child rebuilds the options from JSON (only the plain fields a compile depends on).
# It imports the backend's module itself (not the registry): a backend registered at run time
# (a plugin, a test's toy) is probed the same way.
_CHILD = ("import importlib, json, sys; from pathlib import Path; "
          "from segedge.runtime.backends.base import BackendOptions; "
          "o = json.loads(sys.argv[4]); "
          "o['cache_dir'] = Path(o['cache_dir']) if o.get('cache_dir') else None; "
          "o['trt_profile'] = tuple(tuple(hw) for hw in o['trt_profile']) "
          "if o.get('trt_profile') else None; "
          "create = getattr(importlib.import_module(sys.argv[2]), sys.argv[3]); "
          "create(Path(sys.argv[1]), BackendOptions(**o)).close()")


def _plain(options: BackendOptions) -> dict[str, Any]:
    raw = asdict(options)
    raw.pop("metadata", None)  # a foreign ONNX's hints do not change whether it compiles
    if raw.get("cache_dir") is not None:
        raw["cache_dir"] = str(raw["cache_dir"])
    return raw


def compile_in_child(module: str, factory: str, path: Path, options: BackendOptions,
                     timeout_s: float) -> str | None:
    """None when ``module.factory(path, options)`` opens ``path`` in a child process, else why
    not (one line)."""
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path), module, factory,
                               json.dumps(_plain(options))],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"it did not compile within {timeout_s:g} s"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return f"its compiler crashed (signal {-proc.returncode})"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else f"the compile exited {proc.returncode}"
