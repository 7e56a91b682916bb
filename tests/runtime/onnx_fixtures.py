"""Tiny ONNX models and synthetic videos for the runtime tests (builders).

Models are built with onnx.helper (tests may import onnx; the runtime may
not).  Their rules are simple per-pixel functions of colour, so expected
labels are known exactly for flat-coloured synthetic frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper

from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata, InputSpec, OutputSpec

OPSET = 17

# BGR colours of the synthetic scenes and the class each fixture model gives them.
RED = (20, 30, 220)
BLUE = (210, 40, 30)
GREEN = (30, 200, 40)


def _save(model: onnx.ModelProto, path: Path, meta: ArtifactMetadata | None) -> Path:
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta.to_json()
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _dims(size: tuple[int, int] | None) -> tuple[int | str, int | str]:
    return size if size is not None else ("height", "width")


def make_labels_model(path: Path, size: tuple[int, int] | None = (32, 48), stride: int = 8,
                      confidence: bool = True, with_metadata: bool = True) -> Path:
    """uint8 NHWC RGB -> labels = (R > 127) as uint8 [1,H,W]; confidence = R/255."""
    h, w = _dims(size)
    nodes = [
        helper.make_node("Cast", ["input"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("Slice", ["x", "c0", "c1", "c3"], ["r4"]),
        helper.make_node("Squeeze", ["r4", "c3"], ["r"]),
        helper.make_node("Greater", ["r", "thr"], ["is_red"]),
        helper.make_node("Cast", ["is_red"], ["labels"], to=TensorProto.UINT8),
    ]
    inits = [helper.make_tensor("c0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("c1", TensorProto.INT64, [1], [1]),
             helper.make_tensor("c3", TensorProto.INT64, [1], [3]),
             helper.make_tensor("thr", TensorProto.FLOAT, [], [127.0])]
    outputs = [helper.make_tensor_value_info("labels", TensorProto.UINT8, [1, h, w])]
    if confidence:
        nodes.append(helper.make_node("Div", ["r", "scale"], ["confidence"]))
        inits.append(helper.make_tensor("scale", TensorProto.FLOAT, [], [255.0]))
        outputs.append(helper.make_tensor_value_info("confidence", TensorProto.FLOAT, [1, h, w]))
    graph = helper.make_graph(
        nodes, "labels_fixture",
        [helper.make_tensor_value_info("input", TensorProto.UINT8, [1, h, w, 3])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    meta = ArtifactMetadata(
        model="labels_fixture", family="fixture", classes=("background", "red"),
        palette=((0, 0, 0), (255, 0, 0)),
        input=InputSpec(name="input", format="uint8", layout="NHWC", color_order="RGB",
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), size=size, stride=stride,
                        dynamic_axes=() if size else ("height", "width")),
        output=OutputSpec(kind="labels", logits=None, labels="labels",
                          confidence="confidence" if confidence else None),
        opset=OPSET, exporter="fixture")
    return _save(model, path, meta if with_metadata else None)


def make_logits_model(path: Path, size: tuple[int, int] | None = (32, 48),
                      with_metadata: bool = True, input_name: str = "input",
                      classes: Sequence[str] = ("blue", "red", "green")) -> Path:
    """float NCHW RGB in 0..1 -> 1x1 conv logits [1,3,H,W]: class = dominant colour."""
    h, w = _dims(size)
    # output c takes input channel perm[c] (RGB order): blue <- B, red <- R, green <- G
    weight = np.zeros((3, 3, 1, 1), np.float32)
    for out_c, in_c in enumerate((2, 0, 1)):
        weight[out_c, in_c] = 4.0
    graph = helper.make_graph(
        [helper.make_node("Conv", [input_name, "W"], ["logits"])], "logits_fixture",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor("W", TensorProto.FLOAT, weight.shape, weight.ravel().tolist())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    meta = ArtifactMetadata(
        model="logits_fixture", family="fixture", classes=tuple(classes),
        palette=((0, 0, 255), (255, 0, 0), (0, 255, 0)),
        input=InputSpec(name=input_name, format="float", layout="NCHW", color_order="RGB",
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), size=size, stride=8),
        output=OutputSpec(kind="logits", logits="logits"), opset=OPSET, exporter="fixture")
    return _save(model, path, meta if with_metadata else None)


def make_classifier_model(path: Path) -> Path:
    """Not a segmentation model: [1,3,32,32] -> [1,3] class scores."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["scores"])], "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return _save(model, path, None)


def scene(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """BGR frame: red left part whose width depends on the index, blue right part."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BLUE
    split = 8 + (index * 4) % (width - 16)
    image[:, :split] = RED
    return image


def write_video(path: Path, frames: int, width: int = 64, height: int = 48,
                fps: float = 25.0) -> Path:
    codec = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, (width, height))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(scene(i, width, height))
    writer.release()
    return path


def count_frames(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        n, size = n + 1, (image.shape[1], image.shape[0])
    cap.release()
    return n, size
