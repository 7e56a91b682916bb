"""OpenVINO rows: segedge's OpenVINO backend, and OpenVINO used directly as its peer.

* ``openvino-cpu``: the runtime's own backend (what ``segrun --backend openvino``
  runs), on the tensor ``prepare`` makes; the precision that really ran is
  read back, and a hint the CPU does not honour turns the cell into a skip,
  never a mislabelled row.  Its mask agreement with the FP32 artifact on ONNX
  Runtime is measured here (not taken from the export, which checked ONNX
  Runtime, not OpenVINO).
* ``openvino-direct``: what an OpenVINO user writes - ``Core().compile_model``
  on the same artifact with the same threads and precision, called on the same
  tensor - so segedge's wrapper can be held to within 5 % of it.  A row of its
  own, and also timed interleaved with each ``openvino-cpu`` row in that row's
  process: the 5 % bound is checked on that pair, both under the same load.

Precisions: fp32 (hint f32), bf16 and fp16 (the FP32 artifact with hint bf16 /
f16), int8 (the Q/DQ artifact, hint f32 for what is not quantized).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs, SkipCell
from segedge.benchmarks.source_frame import reference_frame
from segedge.runtime import precisions

# segbench precision -> OpenVINO's inference precision hint (runtime.precisions: every one)
HINTS = {spec.name: spec.hint for spec in precisions.precisions()}
AGREEMENT_IMAGES = 16  # labelled images scored for agreement (all of a smaller folder)


def probe(name: str) -> str | None:
    from segedge.runtime.backends.openvino import openvino_available

    ok, why = openvino_available()
    if not ok:
        return why
    from segedge.runtime.backends.openvino import shared_core

    devices = shared_core().available_devices
    return None if "CPU" in devices else f"OpenVINO sees no CPU device (has {devices})"


def needs(name: str, precision: str) -> Needs | str:
    if precision not in HINTS:
        return f"OpenVINO rows are {', '.join(HINTS)}"
    if precisions.precision(precision).quantized:  # the Q/DQ artifact
        return Needs("onnx", precision, int8_target="cpu", reference=name == "openvino-cpu")
    return Needs("onnx", precisions.reference().name, reference=name == "openvino-cpu")


def ran_precision(compiled: Any) -> str:
    """The inference precision the compiled model really uses ('f32', 'bf16', 'f16')."""
    value = compiled.get_property("INFERENCE_PRECISION_HINT")
    return str(value.get_type_name() if hasattr(value, "get_type_name") else value)


INT8_KERNEL_OPS = ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected",
                   "MatMul")


def quantized_ops(compiled: Any) -> tuple[int, int]:
    """(int8, all) of the compute ops (convolutions, matmuls) in the compiled graph: the runtime
    graph names each op's layer type and the precision it really runs in."""
    int8 = total = 0
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" not in info or info["layerType"].astype(str) not in INT8_KERNEL_OPS:
            continue
        total += 1
        if "runtimePrecision" in info and info["runtimePrecision"].astype(str) in ("u8", "i8"):
            int8 += 1
    return int8, total


def _check_precision(job: ModelJob, ran: str) -> None:
    wanted = HINTS[job.precision]
    if ran != wanted:
        raise SkipCell(f"asked OpenVINO for {wanted}, this CPU runs {ran} (no {wanted} kernels)")


def _describe(ran: str, threads: Any, compiled: Any, precision: str) -> str:
    import openvino as ov

    plural = "" if str(threads) == "1" else "s"
    text = f"OpenVINO {ov.__version__.split('-')[0]} CPU ({ran}), {threads} thread{plural}"
    if precisions.precision(precision).quantized:
        int8, total = quantized_ops(compiled)
        text += f", {int8} of {total} convolutions/matmuls in int8"
    return text


def load(name: str, job: ModelJob) -> Loaded:
    if job.artifact is None:
        raise SkipCell("no ONNX artifact")
    return _segedge(job) if name == "openvino-cpu" else _direct(job)


def _segedge(job: ModelJob) -> Loaded:
    from segedge.runtime.backends.base import BackendOptions, open_backend
    from segedge.runtime.preprocess import prepare

    assert job.artifact is not None
    options = BackendOptions(threads=job.threads, precision_hint=HINTS[job.precision])
    backend = open_backend(job.artifact, "openvino", options)
    try:
        _check_precision(job, backend.precision)  # type: ignore[attr-defined]
    except SkipCell:
        backend.close()
        raise
    frame = reference_frame(job.frame_source, job.imgsz)
    tensor, _ = prepare([frame] * job.batch, backend.metadata.input)
    artifact = Path(job.artifact)
    provider = _describe(backend.precision, backend.threads,  # type: ignore[attr-defined]
                         backend.compiled, job.precision)  # type: ignore[attr-defined]

    def predictor() -> Any:
        from segedge.benchmarks.bench_runtime import options_predictor

        return options_predictor(artifact, options, backend.name)

    def agreement() -> float | None:
        return fp32_agreement(artifact, options, job)

    peer = direct_model(job)
    return Loaded(step=lambda: backend.infer(tensor), provider=provider, close=backend.close,
                  size_bytes=artifact.stat().st_size, predictor=predictor,
                  threads=int(backend.threads),  # type: ignore[attr-defined]
                  agreement=agreement,
                  peer=(lambda: peer(tensor), int(peer.get_property("INFERENCE_NUM_THREADS"))))


def direct_model(job: ModelJob) -> Any:
    """``Core().compile_model`` as an OpenVINO user writes it: the same artifact, threads and
    precision hint, nothing else set (the CPU plugin's defaults for the rest)."""
    from segedge.runtime.backends.openvino import shared_core

    assert job.artifact is not None
    # One Core per process, as the runtime's (see shared_core); otherwise what a user writes.
    return shared_core().compile_model(job.artifact, "CPU", {
        "INFERENCE_NUM_THREADS": job.threads,
        "INFERENCE_PRECISION_HINT": HINTS[job.precision]})


def _direct(job: ModelJob) -> Loaded:
    """The documented OpenVINO loop, nothing of segedge's runtime in the timed step."""
    from segedge.runtime.backends.openvino import read_metadata, shared_core
    from segedge.runtime.preprocess import prepare

    assert job.artifact is not None
    compiled = direct_model(job)
    ran = ran_precision(compiled)
    _check_precision(job, ran)
    meta = read_metadata(shared_core().read_model(job.artifact), job.artifact)
    if meta is None:
        raise SkipCell("needs a segedge artifact (its input spec makes the same tensor)")
    frame = reference_frame(job.frame_source, job.imgsz)
    tensor, _ = prepare([frame] * job.batch, meta.input)
    threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))

    def step() -> Any:
        return compiled(tensor)

    def predictor() -> Any:
        raise SkipCell("peer baseline: accuracy is the openvino-cpu row's (same artifact, "
                       "hint and threads)")

    return Loaded(step=step, provider=_describe(ran, threads, compiled, job.precision) +
                  ", Core().compile_model used directly", close=lambda: None,
                  size_bytes=Path(job.artifact).stat().st_size, predictor=predictor,
                  threads=threads, agreement=lambda: None)  # not the export's ORT agreement


def agreement_frames(job: ModelJob) -> list[np.ndarray]:
    """Labelled images when the job has them (at most AGREEMENT_IMAGES), else its frame."""
    import cv2

    if job.eval_images:
        from segedge.runtime.paths import list_images

        paths = list_images(Path(job.eval_images))[:AGREEMENT_IMAGES]
        read = (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths)
        frames: list[np.ndarray] = [f for f in read if f is not None]
        if frames:
            return frames
    return [reference_frame(job.frame_source, job.imgsz)]


def fp32_agreement(artifact: Path, options: Any, job: ModelJob) -> float | None:
    """Percent of pixels whose label equals the FP32 artifact's on ONNX Runtime's CPU provider
    (the reference every other row's agreement is against)."""
    from segedge.export.evaluation.evaluate import labels_from_outputs
    from segedge.runtime.backends.base import BackendOptions, open_backend
    from segedge.runtime.preprocess import prepare

    if job.reference_artifact is None:
        return None
    ours = open_backend(artifact, "openvino", options)
    ref = open_backend(job.reference_artifact, "onnxruntime",
                       BackendOptions(provider="cpu", threads=job.threads))
    equal = total = 0
    try:
        for frame in agreement_frames(job):
            batch = ours.metadata.input.batch or 1
            got_t, _ = prepare([frame] * batch, ours.metadata.input)
            ref_t, _ = prepare([frame] * batch, ref.metadata.input)
            got = labels_from_outputs(ours.infer(got_t), ours.metadata)
            want = labels_from_outputs(ref.infer(ref_t), ref.metadata)
            equal += int(np.count_nonzero(got == want))
            total += want.size
    finally:
        ours.close()
        ref.close()
    return round(100.0 * equal / total, 3) if total else None
