"""Any runtime backend as segbench rows, asked of its descriptor (runtime.backends.base).

Timed through the runtime's own ``open_backend``, on the tensor the runtime's ``prepare``
makes, so the numbers are what ``segrun`` and the Python API get.  What really ran is read
back (``active``); a row whose ``expects`` was not met (a silent fallback to the CPU) becomes
a skip rather than a mislabelled row.  A backend with rules of its own (which artifact for
which precision, a peer) adds ``benchmarks/bench_<backend>.py`` and reuses ``load_row``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs, SkipCell
from segedge.benchmarks.source_frame import reference_frame
from segedge.runtime import precisions

if TYPE_CHECKING:
    from segedge.runtime.backends.base import BackendDescriptor, BackendOptions, BenchRow

# segbench precision -> the inference precision a backend is asked for (runtime.precisions)
HINTS = {spec.name: spec.hint for spec in precisions.precisions()}


def row_of(name: str) -> tuple[BackendDescriptor, BenchRow]:
    from segedge.benchmarks.backends import runtime_row
    from segedge.runtime.backends.base import descriptor

    found = runtime_row(name)
    if found is None:
        raise SkipCell(f"{name} is not a runtime backend's row")
    return descriptor(found[0]), found[1]


def probe(name: str) -> str | None:
    entry, row = row_of(name)
    ok, why = entry.available()
    if not ok:
        return why
    if row.device == "cuda":
        from segedge.benchmarks.env import gpus

        if not gpus():
            return (f"{name} needs a GPU and none was found (nvidia-smi, CUDA and the Jetson "
                    "release file were asked)")
    return None


def needs(name: str, precision: str) -> Needs | str:
    entry, _ = row_of(name)
    spec = precisions.find(precision)
    # a precision the graph carries runs anywhere; a runtime hint (bf16) only where it is asked
    if spec is None or (not spec.artifact and spec.hint not in entry.precisions):
        return f"{entry.name} runs {', '.join(entry.precisions)} (no {precision})"
    kind = "onnx" if ".onnx" in entry.suffixes else "plan"
    return Needs(kind, precision)  # type: ignore[arg-type]


def options_for(name: str, job: ModelJob) -> BackendOptions:
    from segedge.runtime.backends.base import BackendOptions

    _, row = row_of(name)
    return BackendOptions(provider=row.provider, threads=job.threads,
                          cache_dir=Path(job.cache_dir) if job.cache_dir else None)


def load(name: str, job: ModelJob) -> Loaded:
    return load_row(name, job, options_for(name, job))


def load_row(name: str, job: ModelJob, options: BackendOptions) -> Loaded:
    """Open the job's artifact on the row's backend with ``options``; time ``infer``."""
    from segedge.runtime.backends.base import open_backend
    from segedge.runtime.preprocess import prepare

    entry, row = row_of(name)
    kind = "ONNX" if ".onnx" in entry.suffixes else entry.name
    if job.artifact is None:
        raise SkipCell(f"no {kind} artifact")
    artifact = Path(job.artifact)
    if artifact.suffix.lower() not in entry.suffixes:
        raise SkipCell(f"{entry.name} runs {', '.join(entry.suffixes)} files, not "
                       f"{artifact.name}")
    backend = open_backend(artifact, entry.name, options)
    if row.expects is not None and backend.active != row.expects:
        backend.close()
        raise SkipCell(f"asked for {row.expects}, {entry.name} ran {backend.active} (fell back)")
    frame = reference_frame(job.frame_source, job.imgsz)
    tensor, _ = prepare([frame] * job.batch, backend.metadata.input)

    def predictor() -> Any:
        return options_predictor(artifact, options, entry.name)

    return Loaded(step=lambda: backend.infer(tensor), provider=backend.active,
                  close=backend.close, size_bytes=artifact.stat().st_size,
                  predictor=predictor)


def options_predictor(path: Path, options: BackendOptions, backend: str) -> Any:
    """segeval's BackendPredictor over ``backend`` opened with ``options`` (the timed ones)."""
    from segedge.export.evaluation.evaluate import BackendPredictor

    return BackendPredictor(path, options=options, backend=backend)
