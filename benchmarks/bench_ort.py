"""segedge's ONNX Runtime backend (CPU, CUDA, TensorRT execution providers).

Timed through the runtime's own `open_backend`, on the tensor the runtime's
`prepare` makes, so the numbers are what `segrun` and the Python API get.
The provider that really ran is read back; a silent fallback to the CPU
turns the cell into a skip rather than a mislabelled row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs, SkipCell
from segedge.benchmarks.source_frame import reference_frame

if TYPE_CHECKING:
    from segedge.runtime.backends.base import BackendOptions

PROVIDERS = {"ort-cpu": ("cpu", "CPUExecutionProvider"),
             "ort-cuda": ("cuda", "CUDAExecutionProvider"),
             "ort-tensorrt": ("tensorrt", "TensorrtExecutionProvider")}


def probe(name: str) -> str | None:
    import onnxruntime as ort

    wanted = PROVIDERS[name][1]
    available = ort.get_available_providers()
    if wanted not in available:
        return f"{wanted} not in this onnxruntime (has {', '.join(available)})"
    if name != "ort-cpu":
        from segedge.benchmarks.env import gpus

        if not gpus():
            return (f"{wanted} is listed but no NVIDIA GPU was found (nvidia-smi, CUDA "
                    "and the Jetson release file were asked)")
    return None


def needs(name: str, precision: str) -> Needs | str:
    if precision == "bf16":
        return "ONNX Runtime has no bf16 inference precision for an FP32 graph (OpenVINO rows)"
    if name == "ort-tensorrt":
        if precision == "fp16":  # TensorRT picks fp16 kernels itself from the fp32 graph
            return Needs("onnx", "fp32")
        return Needs("onnx", precision, int8_target="tensorrt")
    return Needs("onnx", precision, int8_target="cpu")


def options_for(name: str, job: ModelJob) -> BackendOptions:
    """One set of options for timing and accuracy: the same provider, FP16 switch and engine
    cache, so the accuracy row measures the engine that was timed (and builds no second one)."""
    from segedge.runtime.backends.base import BackendOptions

    return BackendOptions(provider=PROVIDERS[name][0], threads=job.threads,
                          fp16=name == "ort-tensorrt" and job.precision == "fp16",
                          cache_dir=Path(job.cache_dir) if job.cache_dir else None)


def load(name: str, job: ModelJob) -> Loaded:
    from segedge.runtime.backends.base import open_backend
    from segedge.runtime.preprocess import prepare

    if job.artifact is None:
        raise SkipCell("no ONNX artifact")
    wanted = PROVIDERS[name][1]
    options = options_for(name, job)
    backend = open_backend(job.artifact, "onnxruntime", options)
    if backend.active != wanted:
        backend.close()
        raise SkipCell(f"asked for {wanted}, onnxruntime ran {backend.active} (fell back)")
    frame = reference_frame(job.frame_source, job.imgsz)
    tensor, _ = prepare([frame] * job.batch, backend.metadata.input)
    artifact = Path(job.artifact)

    def predictor() -> Any:
        return options_predictor(artifact, options)

    return Loaded(step=lambda: backend.infer(tensor), provider=backend.active,
                  close=backend.close, size_bytes=artifact.stat().st_size,
                  predictor=predictor)


def options_predictor(path: Path, options: BackendOptions, backend: str = "onnxruntime") -> Any:
    """segeval's BackendPredictor over ``backend`` opened with ``options`` (the timed ones)."""
    from segedge.export.evaluation.evaluate import BackendPredictor

    return BackendPredictor(path, options=options, backend=backend)
