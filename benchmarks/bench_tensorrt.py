"""Native TensorRT: a serialized plan (built by `segexport --engine`) run by the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs, SkipCell
from segedge.benchmarks.source_frame import reference_frame
from segedge.runtime import precisions


def probe(name: str) -> str | None:
    from segedge.export.tensorrt.build import tensorrt_available

    ok, why = tensorrt_available()
    return None if ok else why


def needs(name: str, precision: str) -> Needs | str:
    if not precisions.precision(precision).artifact:  # a runtime hint, no graph to build
        built = precisions.artifact_precisions()
        return (f"segedge builds TensorRT plans in {', '.join(built[:-1])} or {built[-1]} "
                f"({precision}: OpenVINO rows)")
    return Needs("plan", precision, int8_target=precisions.symmetric_int8_targets()[0])


def load(name: str, job: ModelJob) -> Loaded:
    from segedge.runtime.backends.base import BackendOptions, open_backend
    from segedge.runtime.preprocess import prepare

    if job.artifact is None or Path(job.artifact).suffix.lower() not in (".plan", ".engine"):
        raise SkipCell("no TensorRT plan was built")
    backend = open_backend(job.artifact, "tensorrt", BackendOptions())
    frame = reference_frame(job.frame_source, job.imgsz)
    tensor, _ = prepare([frame] * job.batch, backend.metadata.input)

    def predictor() -> Any:
        from segedge.export.evaluation.evaluate import BackendPredictor

        return BackendPredictor(Path(job.artifact or ""))

    return Loaded(step=lambda: backend.infer(tensor), provider=backend.active,
                  close=backend.close, size_bytes=Path(job.artifact).stat().st_size,
                  predictor=predictor)
