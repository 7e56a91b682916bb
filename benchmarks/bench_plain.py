"""The plain baseline: what a segmentation loop looks like without segedge.

Default ONNX Runtime session options - ONNX Runtime's own thread count (all
physical cores), as a user's script gets it - a float NCHW graph that returns
logits, numpy normalisation before it and numpy argmax after it.  Each
iteration maps the same network-sized uint8 frame to a label map as the
segedge rows do, so the ratio is what segedge's baked graph and session
settings buy, not a thread count.  The threads ONNX Runtime really started are
counted and reported with every ratio.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs, SkipCell, frame_batch, normalise
from segedge.benchmarks.source_frame import reference_frame
from segedge.runtime.backends.onnxruntime import CPU_EP  # the provider name, declared once
from segedge.runtime.precisions import is_reference, reference


def probe(name: str) -> str | None:
    return None


def needs(name: str, precision: str) -> Needs | str:
    if not is_reference(precision):
        return f"the plain baseline is {reference().name} only"
    return Needs("onnx", precision, emit="logits", input_format="float")


def plain_session(path: str | Path) -> Any:
    """An InferenceSession as the onnxruntime README shows it: default options and threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=[CPU_EP])


def _task_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def counted_session(path: str | Path) -> tuple[Any, int | None]:
    """(plain session, its intra-op threads): the worker threads it started plus the caller,
    counted from /proc (ONNX Runtime does not report its default); None where unreadable."""
    before = _task_count()
    sess = plain_session(path)
    after = _task_count()
    if before is None or after is None:
        return sess, None
    return sess, max(1, after - before + 1)


def graph_preprocessing(path: str | Path) -> tuple[tuple[float, ...], tuple[float, ...], bool]:
    """(mean, std, rgb) from the artifact's metadata: the loop must feed what was trained."""
    from segedge.runtime.metadata import ArtifactMetadata

    sess = plain_session(path)
    meta = ArtifactMetadata.from_props(sess.get_modelmeta().custom_metadata_map, str(path))
    if meta is None:
        raise SkipCell("the plain loop needs a segedge artifact (mean/std in its metadata)")
    if meta.input.format != "float" or meta.input.layout != "NCHW" or not meta.output.logits:
        raise SkipCell("the plain loop needs a float NCHW graph with logits output, got "
                       f"{meta.input.format} {meta.input.layout} -> {meta.output.kind}")
    return tuple(meta.input.mean), tuple(meta.input.std), meta.input.color_order == "RGB"


def load(name: str, job: ModelJob) -> Loaded:
    if job.artifact is None:
        raise SkipCell("no ONNX artifact")
    mean, std, rgb = graph_preprocessing(job.artifact)
    sess, threads = counted_session(job.artifact)
    input_name = sess.get_inputs()[0].name
    images = frame_batch(reference_frame(job.frame_source, job.imgsz), job.imgsz, job.batch)

    def step() -> np.ndarray:
        logits = sess.run(None, {input_name: normalise(images, mean, std, rgb)})[0]
        labels: np.ndarray = logits.argmax(1).astype(np.uint8)
        return labels

    def predictor() -> Any:
        raise SkipCell("same network as the fp32 rows (accuracy not repeated)")

    count = "?" if threads is None else str(threads)
    return Loaded(step=step, provider=f"{CPU_EP} (default options: {count} threads)",
                  close=lambda: None, size_bytes=Path(job.artifact).stat().st_size,
                  predictor=predictor, threads=threads)
