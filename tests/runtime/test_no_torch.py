"""Edge boxes have neither torch nor onnx: importing the runtime must not pull them in."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import segedge.runtime

CHECK = """
import importlib, sys
for name in {names!r}:
    importlib.import_module(name)
import segedge.runtime as rt
rt.Segmenter  # the lazy export too
bad = sorted(m for m in ("torch", "onnx", "torchvision") if m in sys.modules)
print("LOADED", len({names!r}), "BAD", bad)
"""

def runtime_modules() -> list[str]:
    root = Path(segedge.runtime.__file__).parent
    names = ["segedge.runtime"]
    for info in pkgutil.walk_packages([str(root)], prefix="segedge.runtime."):
        names.append(info.name)
    return names


def test_every_runtime_module_imports_without_torch_or_onnx() -> None:
    names = runtime_modules()
    assert "segedge.runtime.cli" in names and "segedge.runtime.pipeline" in names
    assert "segedge.runtime.sources.video" in names
    assert {"segedge.runtime.tasks.semantic", "segedge.runtime.tasks.instance"} <= set(names)
    assert {"segedge.runtime.sinks.video", "segedge.runtime.sinks.window",
            "segedge.runtime.sinks.masks"} <= set(names)
    assert "segedge.runtime.backends.tensorrt" in names  # imports TensorRT lazily
    proc = subprocess.run([sys.executable, "-c", CHECK.format(names=names)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"LOADED {len(names)} BAD []" in proc.stdout
