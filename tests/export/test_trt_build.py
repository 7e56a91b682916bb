"""Pure logic of the TensorRT builder: profile shapes, typing plan, config, and the refusals
when TensorRT, cuda-python or a GPU is missing (forced, whatever this machine has).

Engine builds against the TensorRT/CUDA fakes are in test_trt_engine_fake.py.
"""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from segedge.export.tensorrt.build import (
    EngineConfig,
    TypingPlan,
    build_engine,
    plan_typing,
    profile_shapes,
    read_onnx_metadata,
    tensorrt_available,
)
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, ExportError, InputError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata, InputSpec
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture


@pytest.fixture
def no_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """TensorRT absent, whatever this machine has: ``import tensorrt`` raises ImportError."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


def _meta(size: tuple[int, int] | None = (64, 96), batch: int | None = 1, layout: str = "NCHW",
          stride: int = 8) -> ArtifactMetadata:
    return ArtifactMetadata(
        model="m", family="f", classes=("a", "b"), palette=((0, 0, 0), (255, 0, 0)),
        input=InputSpec(name="input", layout=layout, size=size, batch=batch,  # type: ignore[arg-type]
                        stride=stride))


# -- profile_shapes -------------------------------------------------------------------------

def test_static_nchw_profile_is_the_fixed_shape() -> None:
    shapes = profile_shapes(_meta(), None, None, None, 1)
    assert shapes == {"input": ((1, 3, 64, 96),) * 3}


def test_static_profile_accepts_the_same_hw_and_refuses_another() -> None:
    assert profile_shapes(_meta(), (64, 96), (64, 96), (64, 96))["input"][1] == (1, 3, 64, 96)
    with pytest.raises(InputError, match=r"max_hw: expected \(64, 96\)"):
        profile_shapes(_meta(), None, None, (128, 128))


def test_dynamic_nhwc_profile_orders_min_opt_max() -> None:
    shapes = profile_shapes(_meta(size=None, batch=None, layout="NHWC"), (256, 256), (512, 768),
                            (1024, 1024), batch=(1, 2, 4))
    assert shapes == {"input": ((1, 256, 256, 3), (2, 512, 768, 3), (4, 1024, 1024, 3))}


@pytest.mark.parametrize("min_hw,opt_hw,max_hw,match", [
    (None, (512, 512), (1024, 1024), "min_hw"),
    ((512, 512), (256, 256), (1024, 1024), "min_hw <= opt_hw <= max_hw"),
    ((250, 256), (512, 512), (1024, 1024), "stride 8"),
    ((0, 256), (512, 512), (1024, 1024), "positive"),
])
def test_dynamic_profile_errors(min_hw, opt_hw, max_hw, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=match):
        profile_shapes(_meta(size=None), min_hw, opt_hw, max_hw)


def test_batch_rules() -> None:
    with pytest.raises(InputError, match="batch: expected 1"):
        profile_shapes(_meta(batch=1), None, None, None, batch=(1, 2, 4))
    with pytest.raises(InputError, match="ascending"):
        profile_shapes(_meta(batch=None), None, None, None, batch=(4, 2, 1))
    assert profile_shapes(_meta(batch=None), None, None, None, batch=2)["input"][2][0] == 2
    assert profile_shapes(_meta(batch=4), None, None, None)["input"] == ((4, 3, 64, 96),) * 3
    assert profile_shapes(_meta(batch=None), None, None, None)["input"][0] == (1, 3, 64, 96)
    with pytest.raises(InputError, match="^batch: expected a positive int"):
        EngineConfig(batch=(2, 1, 4))


# -- plan_typing --------------------------------------------------------------------------

TRT10 = {"strongly_typed_available": True, "weak_flags_available": True}
TRT11 = {"strongly_typed_available": True, "weak_flags_available": False}


@pytest.mark.parametrize("onnx_p,engine_p,kw,dla,expected", [
    ("fp32", None, TRT10, False, TypingPlan(True, (), "fp32")),
    ("fp16", "fp16", TRT10, False, TypingPlan(True, (), "fp16")),
    ("int8", None, TRT11, False, TypingPlan(True, (), "int8")),
    ("fp32", "fp16", TRT10, False, TypingPlan(False, ("FP16",), "fp16")),
    ("fp16", None, TRT10, True, TypingPlan(False, ("FP16",), "fp16")),  # DLA on TRT 10
    ("int8", None, TRT10, True, TypingPlan(False, ("INT8", "FP16"), "int8")),
    ("fp16", None, TRT11, True, TypingPlan(True, (), "fp16")),  # DLA on TRT 11
])
def test_plan_typing_choices(onnx_p, engine_p, kw, dla, expected) -> None:  # type: ignore[no-untyped-def]
    assert plan_typing(onnx_p, engine_p, dla=dla, **kw) == expected


def test_plan_typing_refusals() -> None:
    with pytest.raises(ExportError, match="only strongly typed"):
        plan_typing("fp32", "fp16", dla=False, **TRT11)
    with pytest.raises(ExportError, match="Q/DQ"):
        plan_typing("fp32", "int8", dla=False, **TRT10)
    with pytest.raises(InputError, match="DLA"):
        plan_typing("fp32", None, dla=True, **TRT10)
    with pytest.raises(ExportError, match="expected an fp32 ONNX"):
        plan_typing("fp16", "fp32", dla=False, **TRT10)
    with pytest.raises(ExportError, match="strongly typed build"):
        plan_typing("fp32", "fp16", dla=False, prefer_strong=True, **TRT10)
    assert plan_typing("fp16", None, dla=False, prefer_strong=False, **TRT10).flags == ("FP16",)


# -- EngineConfig and refusals ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,what", [
    ({"workspace": 0}, "workspace"), ({"dla_core": -1}, "dla_core"),
    ({"optimization_level": 6}, "optimization_level"), ({"precision": "fp64"}, "precision"),
    ({"dynamic_profiles": 0}, "dynamic_profiles"),
])
def test_engine_config_validates(kwargs, what) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match=f"^{what}: expected"):
        EngineConfig(**kwargs)


def _onnx(path: Path, meta: ArtifactMetadata | None) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["logits"])], "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 64, 96])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 64, 96])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if meta is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.save(model, str(path))
    return path


def test_read_onnx_metadata(tmp_path: Path) -> None:
    assert read_onnx_metadata(_onnx(tmp_path / "a.onnx", _meta())) == _meta()
    with pytest.raises(ArtifactError, match="expected segedge metadata"):
        read_onnx_metadata(_onnx(tmp_path / "b.onnx", None))


def _stubs_only() -> types.ModuleType:
    return types.ModuleType("tensorrt")  # what tensorrt-stubs alone leaves importable


@pytest.mark.parametrize("setup,device_id,expected", [
    ({"tensorrt": None}, 0, "Python package 'tensorrt' cannot be imported (import of tensorrt "
                            "halted; None in sys.modules)"),
    ({"tensorrt": _stubs_only}, 0, "'tensorrt' is only type stubs or an empty namespace here, "
                                   "not the TensorRT library (pip install tensorrt on a CUDA "
                                   "machine)"),
    ({"cuda": None}, 0, "cuda-python cannot be imported (import of cuda.cudart halted; None in "
                        "sys.modules); pip install cuda-python"),
    ({"devices": ()}, 0, "no usable CUDA GPU (CUDA cudaGetDeviceCount: expected cudaSuccess, got "
                         "cudaErrorNoDevice)"),
    ({}, 2, "CUDA device 2 requested, 1 device(s) present"),
])
def test_tensorrt_available_says_why_not_in_one_line(
        monkeypatch: pytest.MonkeyPatch, fake_gpu: Callable[..., FakeGpu],  # noqa: F811
        setup: dict[str, Any], device_id: int, expected: str) -> None:
    fake_gpu(**({"devices": setup["devices"]} if "devices" in setup else {}))
    if "tensorrt" in setup:
        module = setup["tensorrt"]
        monkeypatch.setitem(sys.modules, "tensorrt", module() if callable(module) else module)
    if "cuda" in setup:
        for path in ("cuda.bindings.runtime", "cuda.cudart"):
            monkeypatch.setitem(sys.modules, path, None)
    ok, why = tensorrt_available(device_id)
    assert ok is False and why == expected and "\n" not in why


def test_tensorrt_available_with_a_gpu(fake_gpu: Callable[..., FakeGpu]) -> None:  # noqa: F811
    fake_gpu(generation=11)
    assert tensorrt_available() == (True, "TensorRT 11.4.0.106, 1 CUDA device(s)")


def test_the_descriptor_asks_the_same_check_the_build_uses(
        monkeypatch: pytest.MonkeyPatch, fake_gpu: Callable[..., FakeGpu]) -> None:  # noqa: F811
    """segdoctor, segbench and the auto chooser ask ``descriptor("tensorrt")``; the build asks
    the backend's own check: one answer, including the trt.Runtime it must create."""
    import segedge.export.tensorrt.build as build_module
    from segedge.runtime.backends import tensorrt as trt_backend
    from segedge.runtime.backends.base import descriptor

    assert build_module.tensorrt_available is trt_backend.tensorrt_available
    gpu = fake_gpu(generation=11)
    entry = descriptor("tensorrt")
    assert entry.available() == (True, "TensorRT 11.4.0.106, 1 CUDA device(s)")
    assert entry.version() == gpu.trt.version == "11.4.0.106"
    fake_gpu(init_fails=True)  # imports, finds the GPU, cannot create a Runtime
    ok, why = entry.available()
    assert not ok and why.startswith("TensorRT could not create a Runtime: ")
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert entry.version() == "absent"
    assert entry.available()[1].startswith("Python package 'tensorrt' cannot be imported")


def test_build_without_tensorrt_is_backend_unavailable(tmp_path: Path, no_tensorrt: None
                                                       ) -> None:
    onnx_path = _onnx(tmp_path / "m.onnx", _meta())
    plan = tmp_path / "m.plan"
    with pytest.raises(BackendUnavailableError, match="cannot build a TensorRT engine") as info:
        build_engine(onnx_path, plan)
    assert "\n" not in str(info.value)
    assert not plan.exists() and not (tmp_path / "m.plan.json").exists()


def test_build_refuses_missing_onnx(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        build_engine(tmp_path / "none.onnx", tmp_path / "x.plan")


def test_module_imports_without_tensorrt() -> None:
    code = ("import sys, segedge.export.tensorrt.build as m; "
            "assert 'tensorrt' not in sys.modules, 'tensorrt imported eagerly'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("knobs,expected", [
    ({"driver_version": 0, "cuda_python": "12.8.0"},
     "no usable CUDA GPU (CUDA cudaGetDeviceCount: expected cudaSuccess, got RuntimeError: "
     "Failed to dlopen libcuda.so.1)"),
    ({"driver_version": 0, "cuda_python": "12.3.0"},  # only cuda.cudart there
     "no usable CUDA GPU (CUDA cudaGetDeviceCount: expected cudaSuccess, got RuntimeError: "
     "Failed to dlopen libcuda.so.1)"),
    ({"driver_version": 0, "cuda_python": "12.9.0"},
     "no usable CUDA GPU (CUDA cudaGetDeviceCount: expected cudaSuccess, got "
     "cudaErrorInsufficientDriver)"),
    ({"init_fails": True},
     "TensorRT could not create a Runtime: expected TensorRT to initialise CUDA, got TypeError: "
     "pybind11::init(): factory function returned nullptr (a CUDA driver too old for this "
     "TensorRT, no GPU memory, or CUDA/TensorRT libraries from different releases)"),
])
def test_tensorrt_available_survives_what_the_real_bindings_raise(
        fake_gpu: Callable[..., FakeGpu], knobs: dict[str, Any], expected: str) -> None:  # noqa: F811
    fake_gpu(**knobs)
    assert tensorrt_available() == (False, expected)


@pytest.mark.parametrize("generation", [10, 11])
def test_a_builder_that_cannot_initialise_is_backend_unavailable(
        tmp_path: Path, fake_gpu: Callable[..., FakeGpu], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        generation: int) -> None:
    import segedge.export.tensorrt.build as build_module

    gpu = fake_gpu(generation=generation)
    monkeypatch.setattr(build_module, "tensorrt_available",
                        lambda device_id=0: (True, "probe passed"))
    gpu.trt.init_fails = True  # CUDA went away between the probe and the build
    with pytest.raises(BackendUnavailableError, match=r"^TensorRT could not create a "
                       r"Builder: expected TensorRT to initialise CUDA, got TypeError: "
                       r"pybind11::init\(\): factory function returned nullptr"):
        build_engine(_onnx(tmp_path / "m.onnx", _meta()), tmp_path / "m.plan")
    assert not (tmp_path / "m.plan").exists()


@pytest.mark.parametrize("argv,profiles", [((), None), (("--engine-profiles", "1"), 1),
                                           (("--engine-profiles", "3"), 3)])
def test_engine_profiles_flag_reaches_the_engine_options(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: tuple[str, ...],
        profiles: int | None) -> None:
    from segedge.export import cli as export_cli
    from segedge.export import pipeline

    seen: list[Any] = []
    monkeypatch.setattr(pipeline, "export", seen.append)  # the CLI imports it when called
    export_cli.main(["demo", "-o", str(tmp_path / "m.onnx"), *argv])
    assert len(seen) == 1 and seen[0].engine.profiles == profiles


def test_engine_profiles_below_one_is_one_line_and_exit_2(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
        ) -> None:
    from segedge.export import cli as export_cli
    from segedge.export import pipeline

    seen: list[Any] = []
    monkeypatch.setattr(pipeline, "export", seen.append)
    with pytest.raises(SystemExit) as ended:
        export_cli.main(["demo", "-o", str(tmp_path / "m.onnx"), "--engine-profiles", "0"])
    assert ended.value.code == 2 and seen == []
    assert capsys.readouterr().err == ("segexport: error: --engine-profiles: expected a positive "
                                       "integer, got 0\n")
