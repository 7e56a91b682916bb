"""segedge runtime: run a segedge artifact (ONNX or TensorRT plan) on frames.

Never imports torch: edge boxes do not have it (tests/runtime/test_no_torch.py).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Segmenter", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy so that `import segedge.runtime` stays cheap (no onnxruntime import).
    if name == "Segmenter":
        from segedge.runtime.segmenter import Segmenter

        return Segmenter
    raise AttributeError(name)
