"""The plain baseline: what a segmentation loop looks like without segedge.

One thread, default ONNX Runtime session options, a float NCHW graph that
returns logits, numpy normalisation before it and numpy argmax after it.
Each iteration maps the same network-sized uint8 frame to a label map as
the segedge rows do, so the ratio is what segedge's baked graph and session
settings buy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from segedge.benchmarks.jobs import Loaded, ModelJob, Needs, SkipCell, frame_batch, normalise
from segedge.benchmarks.source_frame import reference_frame

PLAIN_THREADS = 1


def probe(name: str) -> str | None:
    return None


def needs(name: str, precision: str) -> Needs | str:
    if precision != "fp32":
        return "the plain baseline is fp32 only"
    return Needs("onnx", "fp32", emit="logits", input_format="float")


def plain_session(path: str | Path) -> Any:
    """An InferenceSession as the onnxruntime README shows it, pinned to one thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = PLAIN_THREADS
    so.inter_op_num_threads = PLAIN_THREADS
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


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
    sess = plain_session(job.artifact)
    input_name = sess.get_inputs()[0].name
    images = frame_batch(reference_frame(job.frame_source, job.imgsz), job.imgsz, job.batch)

    def step() -> np.ndarray:
        logits = sess.run(None, {input_name: normalise(images, mean, std, rgb)})[0]
        labels: np.ndarray = logits.argmax(1).astype(np.uint8)
        return labels

    def predictor() -> Any:
        raise SkipCell("same network as the fp32 rows (accuracy not repeated)")

    return Loaded(step=step, provider="CPUExecutionProvider (1 thread, default options)",
                  close=lambda: None, size_bytes=Path(job.artifact).stat().st_size,
                  predictor=predictor)
