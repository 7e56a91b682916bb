"""build_engine end to end against the recording TensorRT/CUDA fakes (TensorRT 10 and 11):
typing, profiles, static batch, reuse keys, DLA, timing cache, refusals and failures."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segedge.export.tensorrt.build import EngineConfig, build_engine, quantization_refusal
from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.errors import BackendUnavailableError, ExportError, InputError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata, InputSpec, OutputSpec
from tests.fakes.cuda_fake import FakeDevice
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture
from tests.runtime.onnx_fixtures import make_labels_model, make_logits_model

Gpu = Callable[..., FakeGpu]


def _meta(batch: int | None = 1, precision: str = "fp32", **extra: object) -> ArtifactMetadata:
    return ArtifactMetadata(
        model="m", family="f", classes=("a", "b", "c"), palette=((0, 0, 0),) * 3,
        input=InputSpec(name="input", size=(32, 48), batch=batch, stride=8,
                        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        output=OutputSpec(kind="logits", logits="logits"), precision=precision,  # type: ignore[arg-type]
        extra=dict(extra))


def _conv(path: Path, batch: int = 1, zero_type: int | None = None, zero: int = 0,
          meta: ArtifactMetadata | None = None) -> Path:
    """[N,3,32,48] -> 1x1 conv logits; with ``zero_type`` a Q/DQ pair in front."""
    nodes, inits, src = [], [numpy_helper.from_array(
        np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) * 4, "W")], "input"
    if zero_type is not None:
        inits += [helper.make_tensor("s", TensorProto.FLOAT, [], [0.01]),
                  helper.make_tensor("z", zero_type, [], [zero])]
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="q0"),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq0")]
        src = "dq"
    nodes.append(helper.make_node("Conv", [src, "W"], ["logits"], name="conv"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 32, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3, 32, 48])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, (meta or _meta(batch)).to_json()
    onnx.save(model, str(path))
    return path


# -- typing across generations --------------------------------------------------------------

@pytest.mark.parametrize("generation", [10, 11])
def test_fp32_builds_strongly_typed_and_runs(tmp_path: Path, fake_gpu: Gpu,  # noqa: F811
                                             generation: int) -> None:
    gpu = fake_gpu(generation=generation)
    result = build_engine(make_logits_model(tmp_path / "m.onnx"), tmp_path / "m.plan")
    assert not result.reused and result.sidecar.strongly_typed is True
    # TensorRT 10: the STRONGLY_TYPED bit (value 1); 11: no flag (always strongly typed, its
    # STRONGLY_TYPED member is deprecated and ignored)
    assert ("create_network", 1 << 1 if generation == 10 else 0) in gpu.trt.calls
    assert "set_flag" not in gpu.trt.names()
    assert result.sidecar.tensorrt_version == gpu.trt.version
    assert result.sidecar.gpu_name == "NVIDIA Fake RTX" and result.sidecar.compute_capability \
        == "8.9"
    for path in (tmp_path / "m.plan", tmp_path / "m.plan.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    backend = open_backend(tmp_path / "m.plan")
    x = np.zeros((1, 3, 32, 48), np.float32)
    x[0, 0] = 1.0  # red: class 1
    assert backend.infer(x)["logits"].argmax(1).tolist() == [[[1] * 48] * 32]
    backend.close()
    gpu.assert_clean()


def test_fp16_from_an_fp32_onnx_takes_the_weak_flag_on_10_and_is_refused_on_11(
        tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    onnx_path = make_logits_model(tmp_path / "m.onnx")
    gpu = fake_gpu(generation=10)
    result = build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(precision="fp16"))
    assert result.sidecar.builder_flags == ("FP16",) and not result.sidecar.strongly_typed
    assert ("create_network", 0) in gpu.trt.calls and ("set_flag", "FP16") in gpu.trt.calls
    gpu = fake_gpu(generation=11)
    with pytest.raises(ExportError, match="only strongly typed networks: expected an ONNX "
                                          "already in fp16, got a fp32 ONNX"):
        build_engine(onnx_path, tmp_path / "n.plan", EngineConfig(precision="fp16"))
    assert set(gpu.trt.names()) <= {"Runtime"}  # only the availability probe ran
    assert not (tmp_path / "n.plan").exists()


def test_tensorrt_8_is_refused_in_one_line(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu(generation=8)
    with pytest.raises(BackendUnavailableError, match=r"^cannot build a TensorRT engine: "
                       r"TensorRT: expected 10\.x or newer \(JetPack 6\+\), got 8\.6\.2\.3;"):
        build_engine(make_logits_model(tmp_path / "m.onnx"), tmp_path / "m.plan")
    assert gpu.trt.calls == []


# -- shapes ------------------------------------------------------------------------------------

def test_static_batch_4_builds_and_runs(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu()
    result = build_engine(_conv(tmp_path / "b4.onnx", batch=4), tmp_path / "b4.plan")
    assert result.sidecar.profile == {"input": ((4, 3, 32, 48),) * 3}
    with pytest.raises(InputError, match=r"^batch: expected 4 \(the ONNX batch is static\)"):
        build_engine(tmp_path / "b4.onnx", tmp_path / "x.plan", EngineConfig(batch=2))
    backend = open_backend(tmp_path / "b4.plan")
    x = np.random.default_rng(0).random((4, 3, 32, 48), dtype=np.float32)
    np.testing.assert_allclose(backend.infer(x)["logits"], x * 4, rtol=1e-6)
    backend.close()
    gpu.assert_clean()


def test_dynamic_onnx_gets_its_profile(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu(generation=11)
    onnx_path = make_labels_model(tmp_path / "d.onnx", size=None)
    with pytest.raises(InputError, match="min_hw, opt_hw, max_hw: expected"):
        build_engine(onnx_path, tmp_path / "d.plan")
    assert "Builder" not in gpu.trt.names()
    result = build_engine(onnx_path, tmp_path / "d.plan",
                          EngineConfig(min_hw=(16, 16), opt_hw=(32, 48), max_hw=(64, 64)))
    # one identical profile per throughput slot of the runtime (a context each at once)
    shape = ("profile.set_shape", "input", (1, 16, 16, 3), (1, 32, 48, 3), (1, 64, 64, 3))
    assert [c for c in gpu.trt.calls if c[0] == "profile.set_shape"] == [shape] * 2
    names = gpu.trt.names()
    assert names.count("add_optimization_profile") == 2
    assert max(i for i, n in enumerate(names) if n == "add_optimization_profile") < \
        names.index("build_serialized_network")
    assert result.sidecar.extra["optimization_profiles"] == 2
    assert result.sidecar.extra["build"]["dynamic_profiles"] == 2
    assert gpu.trt.violations == []
    one = build_engine(onnx_path, tmp_path / "d1.plan", EngineConfig(
        min_hw=(16, 16), opt_hw=(32, 48), max_hw=(64, 64), dynamic_profiles=1))
    assert one.sidecar.extra["optimization_profiles"] == 1
    assert one.sidecar.cache_key != result.sidecar.cache_key
    assert gpu.trt.names().count("add_optimization_profile") == 3


def test_a_static_onnx_keeps_the_one_default_profile(tmp_path: Path,
                                                     fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu()
    result = build_engine(make_logits_model(tmp_path / "m.onnx"), tmp_path / "m.plan")
    assert "add_optimization_profile" not in gpu.trt.names()
    assert result.sidecar.extra["optimization_profiles"] == 1  # TensorRT's default profile


# -- reuse ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change", [
    {"workspace": 1 << 28}, {"optimization_level": 5}, {"strongly_typed": False},
    {"precision": "fp16"},
])
def test_a_settings_change_rebuilds_the_plan(tmp_path: Path, fake_gpu: Gpu,  # noqa: F811
                                             change: dict[str, object]) -> None:
    gpu = fake_gpu(generation=10)
    onnx_path = make_logits_model(tmp_path / "m.onnx")
    first = build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(workspace=1 << 27))
    again = build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(workspace=1 << 27))
    assert again.reused and gpu.trt.names().count("build_serialized_network") == 1
    changed = build_engine(onnx_path, tmp_path / "m.plan",
                           EngineConfig(**{"workspace": 1 << 27, **change}))  # type: ignore[arg-type]
    assert not changed.reused and changed.sidecar.cache_key != first.sidecar.cache_key
    assert gpu.trt.names().count("build_serialized_network") == 2


@pytest.mark.parametrize("dynamic", [False, True])
def test_the_profile_count_rebuilds_only_a_dynamic_plan(tmp_path: Path, fake_gpu: Gpu,  # noqa: F811
                                                        dynamic: bool) -> None:
    """A static plan has TensorRT's one default profile whatever ``dynamic_profiles`` says:
    a different count must reuse it, not rebuild it for nothing."""
    gpu = fake_gpu()
    onnx_path = make_labels_model(tmp_path / "m.onnx", size=None if dynamic else (32, 48))
    hw = {"min_hw": (16, 16), "opt_hw": (32, 48), "max_hw": (64, 64)} if dynamic else {}
    first = build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(**hw))  # type: ignore[arg-type]
    assert first.sidecar.extra["build"]["dynamic_profiles"] == (2 if dynamic else None)
    again = build_engine(onnx_path, tmp_path / "m.plan",
                         EngineConfig(**hw, dynamic_profiles=1))  # type: ignore[arg-type]
    assert again.reused is not dynamic
    assert (again.sidecar.cache_key == first.sidecar.cache_key) is not dynamic
    assert gpu.trt.names().count("build_serialized_network") == 1 + dynamic
    assert again.sidecar.extra["optimization_profiles"] == 1


def test_new_weights_under_the_same_name_rebuild(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu()
    onnx_path = _conv(tmp_path / "m.onnx")
    build_engine(onnx_path, tmp_path / "m.plan")
    model = onnx.load(str(onnx_path))
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(
        np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1) * -1, "W"))
    onnx.save(model, str(onnx_path))
    assert not build_engine(onnx_path, tmp_path / "m.plan").reused
    backend = open_backend(tmp_path / "m.plan")
    assert backend.infer(np.ones((1, 3, 32, 48), np.float32))["logits"].max() == -1.0
    backend.close()
    assert gpu.trt.names().count("build_serialized_network") == 2


# -- CUDA device ---------------------------------------------------------------------------

def test_build_sets_the_configured_device_and_checks_the_result(
        tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu(devices=(FakeDevice(), FakeDevice("Second GPU", 9, 0)))
    result = build_engine(make_logits_model(tmp_path / "m.onnx"), tmp_path / "m.plan",
                          EngineConfig(device_id=1))
    assert gpu.cuda.calls[[c[0] for c in gpu.cuda.calls].index("cudaSetDevice")][1] == 1
    assert result.sidecar.gpu_name == "Second GPU" and result.sidecar.compute_capability == "9.0"
    gpu = fake_gpu()
    gpu.cuda.fail_at["cudaSetDevice"] = 1
    with pytest.raises(BackendUnavailableError, match=r"^CUDA cudaSetDevice\(0\): expected "
                                                      r"cudaSuccess, got cudaErrorInvalidValue$"):
        build_engine(tmp_path / "m.onnx", tmp_path / "n.plan")
    assert "Builder" not in gpu.trt.names()


# -- Q/DQ flavours -------------------------------------------------------------------------

def test_u8s8_qdq_is_refused_before_tensorrt_sees_it(tmp_path: Path,
                                                     fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu()
    u8 = _conv(tmp_path / "u8.onnx", zero_type=TensorProto.UINT8, zero=128,
               meta=_meta(precision="int8"))
    with pytest.raises(ExportError, match=r"u8\.onnx: no TensorRT engine: node 'q0' has a "
                                          r"uint8 zero point \(U8S8\), TensorRT takes only S8S8"):
        build_engine(u8, tmp_path / "u8.plan")
    tagged = _conv(tmp_path / "cpu.onnx", zero_type=TensorProto.INT8,
                   meta=_meta(precision="int8", int8={"target": "cpu"}))
    with pytest.raises(ExportError, match="quantized for 'cpu' \\(U8S8"):
        build_engine(tagged, tmp_path / "cpu.plan")
    offset = _conv(tmp_path / "z.onnx", zero_type=TensorProto.INT8, zero=3,
                   meta=_meta(precision="int8"))
    assert "non-zero zero point" in (quantization_refusal(offset, _meta(precision="int8")) or "")
    assert set(gpu.trt.names()) <= {"Runtime"}  # only the availability probe ran
    assert not list(tmp_path.glob("*.plan"))


def test_s8s8_qdq_builds_int8(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu(generation=11)
    s8 = _conv(tmp_path / "s8.onnx", zero_type=TensorProto.INT8,
               meta=_meta(precision="int8", int8={"target": "tensorrt"}))
    assert quantization_refusal(s8, _meta(precision="int8")) is None
    result = build_engine(s8, tmp_path / "s8.plan")
    assert result.sidecar.precision == "int8" and result.sidecar.strongly_typed
    assert gpu.trt.violations == []


# -- DLA -------------------------------------------------------------------------------------

def _argmax_model(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "W"], ["logits"], name="conv"),
         helper.make_node("ArgMax", ["logits"], ["labels"], axis=1, keepdims=0, name="argmax")],
        "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT16, [1, 3, 32, 48])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT16, [1, 3, 32, 48]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 32, 48])],
        [numpy_helper.from_array(np.eye(3, dtype=np.float16).reshape(3, 3, 1, 1), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    meta = _meta(precision="fp16").with_changes(output=OutputSpec(kind="both", logits="logits",
                                                                  labels="labels"))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.save(model, str(path))
    return path


def test_dla_core_fallback_layers_and_deserialise_order(tmp_path: Path,
                                                        fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu(generation=10, num_dla_cores=2, devices=(FakeDevice("Orin", 8, 7, True),))
    onnx_path = _argmax_model(tmp_path / "a.onnx")
    result = build_engine(onnx_path, tmp_path / "a.plan", EngineConfig(dla_core=1))
    assert result.sidecar.dla_core == 1 and result.sidecar.dla_fallback_layers == ("argmax",)
    assert result.sidecar.builder_flags == ("FP16",)  # TensorRT 10's DLA path is weakly typed
    assert ("set_flag", "GPU_FALLBACK") in gpu.trt.calls
    backend = open_backend(tmp_path / "a.plan")
    assert ("deserialize_cuda_engine", 1) in gpu.trt.calls  # DLA core set before
    assert backend.active.endswith("DLA core 1, zero-copy")
    out = backend.infer(np.ones((1, 3, 32, 48), np.float16))
    assert out["labels"].dtype == np.int64 and out["logits"].dtype == np.float16
    backend.close()
    gpu.assert_clean()
    with pytest.raises(ExportError, match=r"1 layer\(s\) cannot run on DLA and GPU fallback is "
                                          r"off: argmax"):
        build_engine(onnx_path, tmp_path / "b.plan", EngineConfig(dla_core=0, gpu_fallback=False))
    with pytest.raises(BackendUnavailableError, match="dla_core: expected an index below 2"):
        build_engine(onnx_path, tmp_path / "c.plan", EngineConfig(dla_core=2))


# -- timing cache and failures -------------------------------------------------------------

def test_timing_cache_round_trip_and_mismatch(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    fake_gpu()
    onnx_path, cache = make_logits_model(tmp_path / "m.onnx"), tmp_path / "t" / "timing.cache"
    assert build_engine(onnx_path, tmp_path / "m.plan",
                        EngineConfig(timing_cache=cache)).warnings == ()
    assert json.loads(cache.read_bytes().split(b"\n", 1)[1]) == {"layers": "1"}
    assert build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(timing_cache=cache),
                        force=True).warnings == ()
    cache.write_bytes(cache.read_bytes().replace(b"10.3.0", b"10.0.0.1"))
    warned = build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(timing_cache=cache),
                          force=True).warnings
    assert warned == (f"timing cache {cache} is built for another TensorRT/GPU; starting a "
                      "fresh one",)
    cache.write_bytes(b"garbage")
    warned = build_engine(onnx_path, tmp_path / "m.plan", EngineConfig(timing_cache=cache),
                          force=True).warnings
    assert warned[0].startswith(f"timing cache {cache} is unreadable (Could not deserialize")


def test_build_failure_writes_nothing(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    fake_gpu(build_fails=True)
    with pytest.raises(ExportError, match="TensorRT build failed"):
        build_engine(make_logits_model(tmp_path / "m.onnx"), tmp_path / "m.plan")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_strong_typing_on_request_is_enforced(tmp_path: Path, fake_gpu: Gpu) -> None:  # noqa: F811
    fake_gpu(generation=10)
    with pytest.raises(ExportError, match="strongly typed build: expected a fp16 ONNX"):
        build_engine(make_logits_model(tmp_path / "m.onnx"), tmp_path / "m.plan",
                     EngineConfig(precision="fp16", strongly_typed=True))


def test_runs_with_the_older_cuda_python_module_path(tmp_path: Path,
                                                     fake_gpu: Gpu) -> None:  # noqa: F811
    gpu = fake_gpu(cudart="cuda.cudart")
    build_engine(make_logits_model(tmp_path / "m.onnx"), tmp_path / "m.plan")
    backend = open_backend(tmp_path / "m.plan", options=BackendOptions())
    backend.close()
    gpu.assert_clean()


@pytest.mark.parametrize("profiles,built", [(None, 2), (1, 1), (3, 3)])
def test_segexport_engine_profiles_reach_the_dynamic_plan(
        tmp_path: Path, fake_gpu: Gpu, profiles: int | None, built: int) -> None:  # noqa: F811
    """``segexport --engine-profiles N`` (EngineOptions.profiles) is the plan's profile count."""
    from segedge.export.config import EngineOptions, ExportConfig
    from segedge.export.pipeline import engine_section
    from segedge.export.precision import modes
    from segedge.export.tensorrt.build import read_onnx_metadata

    gpu = fake_gpu()
    onnx_path = make_labels_model(tmp_path / "m.onnx", size=None)
    cfg = ExportConfig(model="demo", engine=EngineOptions(build=True, profiles=profiles))
    section = engine_section(cfg, modes.get("fp32"), onnx_path, read_onnx_metadata(onnx_path),
                             (32, 48))
    assert section is not None and section["plan"] == str(tmp_path / "m.plan")
    assert gpu.trt.names().count("add_optimization_profile") == built
    sidecar = json.loads((tmp_path / "m.plan.json").read_text())
    assert sidecar["extra"]["optimization_profiles"] == built
