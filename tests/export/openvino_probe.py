"""What OpenVINO's CPU plugin really compiled: the runtime precision of each layer type.

Fused INT8 kernels show as runtimePrecision i8/u8; a layer left unfused runs in f32.
"""

from __future__ import annotations

import collections
from pathlib import Path


def deconv_precisions(path: Path) -> collections.Counter[str]:
    """Count of Deconvolution layers per runtime precision in OpenVINO's compiled model."""
    from segedge.runtime.backends.openvino import shared_core

    core = shared_core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"INFERENCE_PRECISION_HINT": "f32"})
    found: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) == "Deconvolution":
            found[info["runtimePrecision"].astype(str)] += 1
    return found
