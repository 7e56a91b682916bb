"""segedge's ONNX Runtime backend rows (CPU, CUDA, TensorRT execution providers).

The rows themselves (names, providers, what must read back) are the runtime backend's
(``BENCH_ROWS`` in runtime/backends/onnxruntime.py); what is ONNX Runtime's own here is which
artifact each precision needs: the TensorRT provider picks FP16 kernels from the FP32 graph
and wants symmetric (S8S8) Q/DQ, the CPU provider runs U8S8 faster; there is no bf16.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.benchmarks import bench_runtime
from segedge.benchmarks.jobs import Loaded, ModelJob, Needs
from segedge.runtime import precisions
from segedge.runtime.backends import onnxruntime as _ort

if TYPE_CHECKING:
    from segedge.runtime.backends.base import BackendOptions

# row -> (--provider value, the provider that must really run)
PROVIDERS = {row.row: (row.provider, row.expects or "") for row in _ort.BENCH_ROWS}
_TRT_ROW = next(row.row for row in _ort.BENCH_ROWS if row.expects == _ort.TRT_EP)
_S8S8 = precisions.symmetric_int8_targets()[0]  # the Q/DQ flavour TensorRT builds


def probe(name: str) -> str | None:
    import onnxruntime as ort

    wanted = PROVIDERS[name][1]
    available = ort.get_available_providers()
    if wanted not in available:
        return f"{wanted} not in this onnxruntime (has {', '.join(available)})"
    return bench_runtime.probe(name)


def needs(name: str, precision: str) -> Needs | str:
    spec = precisions.precision(precision)
    if not spec.artifact:  # a runtime hint over the FP32 graph (bf16)
        return (f"ONNX Runtime has no {precision} inference precision for an "
                f"{precisions.reference().name.upper()} graph (OpenVINO rows)")
    if name == _TRT_ROW:
        if spec.reduced_float:  # TensorRT picks fp16 kernels itself from the fp32 graph
            return Needs("onnx", precisions.reference().name)
        return Needs("onnx", precision, int8_target=_S8S8)
    return Needs("onnx", precision, int8_target="cpu")


def options_for(name: str, job: ModelJob) -> BackendOptions:
    """One set of options for timing and accuracy: the same provider, FP16 switch and engine
    cache, so the accuracy row measures the engine that was timed (and builds no second one)."""
    from dataclasses import replace

    return replace(bench_runtime.options_for(name, job),
                   fp16=name == _TRT_ROW and precisions.precision(job.precision).reduced_float)


def load(name: str, job: ModelJob) -> Loaded:
    return bench_runtime.load_row(name, job, options_for(name, job))


def options_predictor(path: Path, options: BackendOptions,
                      backend: str = _ort.OnnxRuntimeBackend.name) -> Any:
    return bench_runtime.options_predictor(path, options, backend)
