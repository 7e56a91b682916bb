"""ONNX Runtime's TensorRT provider options (cache keyed by content, INT8, profiles) and the
protobuf peek that reads an ONNX without the onnx package."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segedge.runtime.backends import onnx_peek
from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.backends.onnxruntime import CPU_EP, TRT_EP, resolve_providers
from segedge.runtime.backends.ort_tensorrt import tensorrt_options
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata
from tests.runtime.onnx_fixtures import make_labels_model, make_logits_model


def _trt(path: Path, **kw: object) -> dict[str, object]:
    providers = resolve_providers(BackendOptions(provider="tensorrt", **kw),  # type: ignore[arg-type]
                                  [TRT_EP, CPU_EP], path)
    assert providers[1] == CPU_EP
    return providers[0][1]


def _reweight(path: Path, scale: float) -> Path:
    """Re-export under the same name with new weights (same graph, same I/O names)."""
    model = onnx.load(str(path))
    weight = model.graph.initializer[0]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * scale, weight.name))
    onnx.save(model, str(path))
    return path


def _with_extra(path: Path, **extra: object) -> Path:
    model = onnx.load(str(path))
    meta = ArtifactMetadata.from_json(model.metadata_props[0].value)
    model.metadata_props[0].value = meta.with_changes(extra={**meta.extra, **extra}).to_json()
    onnx.save(model, str(path))
    return path


def _qdq(path: Path) -> Path:
    """A TensorRT-flavoured Q/DQ Conv: int8, zero points 0."""
    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.02])
    zero = helper.make_tensor("z", TensorProto.INT8, [], [0])
    weight = numpy_helper.from_array(np.full((3, 3, 1, 1), 0.5, np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="q0"),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq0"),
         helper.make_node("Conv", ["dq", "W"], ["logits"], name="conv")], "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 32, 48])],
        [scale, zero, weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


# -- engine cache folder ------------------------------------------------------------------

def test_new_weights_under_the_same_name_never_reuse_an_engine(tmp_path: Path) -> None:
    model = make_logits_model(tmp_path / "fcn8s.onnx")
    first = _trt(model, cache_dir=tmp_path / "cache")
    assert _trt(model, cache_dir=tmp_path / "cache") == first  # same bytes, same folder
    folder = Path(str(first["trt_engine_cache_path"]))
    assert folder.parent == tmp_path / "cache" and folder.is_dir()
    assert first["trt_timing_cache_path"] == str(tmp_path / "cache")  # timings are shared
    again = _trt(_reweight(model, 2.0), cache_dir=tmp_path / "cache")
    assert again["trt_engine_cache_path"] != first["trt_engine_cache_path"]
    assert Path(str(again["trt_engine_cache_path"])).parent == tmp_path / "cache"


def test_new_static_size_or_precision_gets_its_own_engine_folder(tmp_path: Path) -> None:
    small = _trt(make_logits_model(tmp_path / "m.onnx", size=(32, 48)), cache_dir=tmp_path)
    large = _trt(make_logits_model(tmp_path / "m.onnx", size=(64, 96)), cache_dir=tmp_path)
    assert small["trt_engine_cache_path"] != large["trt_engine_cache_path"]
    fp16 = _trt(tmp_path / "m.onnx", cache_dir=tmp_path, fp16=True)
    assert fp16["trt_fp16_enable"] is True
    assert fp16["trt_engine_cache_path"] != large["trt_engine_cache_path"]


# -- INT8 and profiles -------------------------------------------------------------------

def test_qdq_graph_gets_int8_enabled(tmp_path: Path) -> None:
    assert _trt(_qdq(tmp_path / "q.onnx"), cache_dir=tmp_path)["trt_int8_enable"] is True
    assert _trt(make_logits_model(tmp_path / "f.onnx"), cache_dir=tmp_path)[
        "trt_int8_enable"] is False
    forced = _trt(tmp_path / "q.onnx", cache_dir=tmp_path, int8=False)
    assert forced["trt_int8_enable"] is False


def test_dynamic_input_gets_its_profile_from_the_metadata(tmp_path: Path) -> None:
    model = _with_extra(make_labels_model(tmp_path / "d.onnx", size=None, stride=8),
                        imgsz=[128, 160])
    trt = _trt(model, cache_dir=tmp_path)
    assert trt["trt_profile_min_shapes"] == "input:1x64x80x3"  # NHWC, half, stride multiple
    assert trt["trt_profile_opt_shapes"] == "input:1x128x160x3"
    assert trt["trt_profile_max_shapes"] == "input:1x256x320x3"
    given = _trt(model, cache_dir=tmp_path, trt_profile=((32, 32), (64, 64), (96, 128)))
    assert given["trt_profile_max_shapes"] == "input:1x96x128x3"
    assert given["trt_engine_cache_path"] != trt["trt_engine_cache_path"]


def test_dynamic_input_without_a_profile_warns_once_at_open(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = make_logits_model(tmp_path / "d.onnx", size=None)
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        trt = _trt(model, cache_dir=tmp_path)
    assert not any(k.startswith("trt_profile") for k in trt)
    assert "d.onnx: dynamic height/width and no TensorRT profile" in caplog.text
    static = _trt(make_logits_model(tmp_path / "s.onnx"), cache_dir=tmp_path)
    assert not any(k.startswith("trt_profile") for k in static)


@pytest.mark.parametrize("profile", [((64, 64), (32, 32), (96, 96)), ((0, 8), (8, 8), (8, 8)),
                                     ((8, 8), (8, 8))])
def test_profile_option_is_validated(profile: object) -> None:
    with pytest.raises(InputError, match="^trt_profile: expected"):
        BackendOptions(trt_profile=profile)  # type: ignore[arg-type]


# -- the protobuf peek -------------------------------------------------------------------

def test_peek_reads_what_onnx_reads(tmp_path: Path) -> None:
    path = make_labels_model(tmp_path / "m.onnx")
    found = onnx_peek.peek(path)
    model = onnx.load(str(path))
    assert found.metadata_props == {p.key: p.value for p in model.metadata_props}
    assert METADATA_KEY in found.metadata_props
    assert found.op_types == frozenset(n.op_type for n in model.graph.node)
    assert not found.has_qdq and onnx_peek.peek(_qdq(tmp_path / "q.onnx")).has_qdq
    import hashlib

    assert found.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("data", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0b", b"\x80"])
def test_peek_refuses_a_malformed_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ArtifactError, match="expected an ONNX protobuf, got a malformed file"):
        onnx_peek.peek(path)


def test_peek_sees_a_rewrite_of_the_same_file(tmp_path: Path) -> None:
    path = make_logits_model(tmp_path / "m.onnx")
    before = onnx_peek.peek(path).sha256
    import os

    _reweight(path, 3.0)
    os.utime(path, ns=(1, 1))  # even a rewrite that keeps nothing but the size differs in mtime
    assert onnx_peek.peek(path).sha256 != before


def test_options_without_a_model_keep_the_root(tmp_path: Path) -> None:
    trt = tensorrt_options(BackendOptions(cache_dir=tmp_path / "r"))
    assert trt["trt_engine_cache_path"] == str(tmp_path / "r")
