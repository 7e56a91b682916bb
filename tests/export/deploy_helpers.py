"""Small artifacts for the segdeploy tests: the shipped demo ONNX files (static batch, uint8 in,
labels out) and a tiny hand-built float-NCHW segmenter with a dynamic batch and size, logits and
labels outputs, built with onnx.helper in milliseconds (no torch, no download)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segedge.runtime.metadata import (
    METADATA_KEY,
    ArtifactMetadata,
    InputSpec,
    OutputSpec,
    default_palette,
)
from segedge.runtime.sidecar import EngineSidecar, sha256_file, write_sidecar

ASSETS = Path(__file__).resolve().parents[2] / "runtime" / "assets"
DEMOS = {p: ASSETS / f"demo_{p}.onnx" for p in ("fp32", "fp16", "int8")}
CLASSES = ("road", "car", "sky", "tree")


def float_metadata(std: tuple[float, float, float] = (0.229, 0.224, 0.225),
                   color: str = "RGB") -> ArtifactMetadata:
    return ArtifactMetadata(
        model="tiny", family="test", classes=CLASSES, palette=default_palette(CLASSES),
        input=InputSpec(name="input", format="float", layout="NCHW", color_order=color,  # type: ignore[arg-type]
                        mean=(0.485, 0.456, 0.406), std=std, size=None, batch=None, stride=4,
                        dynamic_axes=("batch", "height", "width")),
        output=OutputSpec(kind="both", logits="logits", labels="labels"), opset=17)


def tiny_float_onnx(path: Path, meta: ArtifactMetadata | None = None, seed: int = 0) -> Path:
    """Conv 3x3 (3 -> 4 classes) -> logits; ArgMax -> uint8 labels; batch/height/width dynamic."""
    meta = meta or float_metadata()
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logits"], pads=[1, 1, 1, 1]),
             helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0),
             helper.make_node("Cast", ["argmax"], ["labels"], to=TensorProto.UINT8)]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "tiny", [value("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [value("logits", TensorProto.FLOAT, ["batch", 4, "height", "width"]),
         value("labels", TensorProto.UINT8, ["batch", "height", "width"])],
        [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def fake_plan(path: Path, meta: ArtifactMetadata, max_batch: int = 8,
              size: tuple[int, int] = (240, 320)) -> Path:
    """Plan bytes + a sidecar, as tests/runtime/test_sidecar.py fakes them (no TensorRT here)."""
    path.write_bytes(b"\x00fake-plan\xff" * 128)
    h, w = size
    shape = (lambda n: (n, h, w, 3)) if meta.input.layout == "NHWC" else (lambda n: (n, 3, h, w))
    sidecar = EngineSidecar(
        plan_sha256=sha256_file(path), onnx_sha256="a" * 64,
        segedge=json.loads(meta.to_json()), tensorrt_version="10.13.0.35", gpu_name="Orin",
        compute_capability="8.7", precision=meta.precision,
        profile={meta.input.name: (shape(1), shape(max_batch // 2 or 1), shape(max_batch))},
        build_time_s=1.0)
    write_sidecar(path, sidecar)
    return path


def demo_metadata() -> ArtifactMetadata:
    from segedge.export.onnx.tools import read_metadata

    meta = read_metadata(DEMOS["fp32"])
    assert meta is not None
    return meta


def with_size(meta: ArtifactMetadata, size: tuple[int, int]) -> ArtifactMetadata:
    return meta.with_changes(input=replace(meta.input, size=size))
