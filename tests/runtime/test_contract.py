"""Metadata as a contract: a lying input spec or a failing first step is one ArtifactError line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime import Segmenter
from segedge.runtime.contract import check_input_spec, first_line, guarded
from segedge.runtime.errors import ArtifactError, ShapeError
from segedge.runtime.metadata import InputSpec


@pytest.mark.parametrize(("changes", "message"), [
    ({"layout": "CHW"}, "m.onnx: expected metadata input.layout one of NCHW, NHWC, got 'CHW'"),
    ({"format": "int8"}, "m.onnx: expected metadata input.format one of float, uint8, got 'int8'"),
    ({"size": (0, 32)}, "m.onnx: expected metadata input.size [H, W] with sides in 1..16384 (or "
                        "null for a dynamic graph), got (0, 32)"),
    ({"size": (32,)}, "m.onnx: expected metadata input.size [H, W] with sides in 1..16384 (or "
                      "null for a dynamic graph), got (32,)"),
    ({"stride": 0}, "m.onnx: expected metadata input.stride in 1..16384, got 0"),
    ({"std": (0.2, 0.0, 0.2)}, "m.onnx: expected a non-zero metadata input.std (it divides every "
                               "pixel), got (0.2, 0.0, 0.2)"),
    ({"mean": (0.5, float("nan"), 0.5)}, "m.onnx: expected metadata input.mean of three finite "
                                         "numbers, got (0.5, nan, 0.5)"),
])
def test_input_spec_lies_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ArtifactError) as info:
        check_input_spec(replace(InputSpec(), **changes), "m.onnx")
    assert str(info.value) == message


def test_honest_specs_pass() -> None:
    check_input_spec(InputSpec(), "m.onnx")
    check_input_spec(InputSpec(format="uint8", layout="NHWC", size=None, stride=32,
                               std=(0.0, 0.0, 0.0)), "m.onnx")  # uint8: std unused


def test_first_line_drops_onnxruntime_status_prefix() -> None:
    err = RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions\n"
                       " index: 1 Got: 3 Expected: 32\n")
    assert first_line(err) == "Got invalid dimensions index: 1 Got: 3 Expected: 32"


def test_guarded_turns_library_errors_into_one_artifact_line() -> None:
    def boom() -> None:
        raise ValueError("bad\nshape")

    with pytest.raises(ArtifactError) as info:
        guarded(boom, "m.onnx", "X", "saw Y")
    assert str(info.value) == ("m.onnx: expected X (as its metadata says), got ValueError: bad "
                               "shape (saw Y)")
    with pytest.raises(ShapeError):  # segedge's own errors pass through
        guarded(lambda: (_ for _ in ()).throw(ShapeError("s")), "m.onnx", "X")
    assert guarded(lambda: 5, "m.onnx", "X") == 5


def test_segmenter_names_the_metadata_when_the_graph_refuses(models: dict[str, Path]) -> None:
    seg = Segmenter(models["logits"])
    seg.metadata = replace(seg.metadata, input=replace(seg.metadata.input, size=(64, 64)))
    frame = np.zeros((48, 64, 3), np.uint8)
    tensor, _ = seg.preprocess(frame)
    with pytest.raises(ArtifactError) as info:
        seg.infer(tensor)
    text = str(info.value)
    assert text.startswith(f"{models['logits']}: expected a graph that takes its NCHW float "
                           "input 'input' of size 64x64 (as its metadata says), got ")
    assert text.endswith("(fed [1, 3, 64, 64] float32)") and "\n" not in text
