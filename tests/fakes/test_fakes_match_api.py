"""The fakes offer only what the real APIs have, with the real parameter names.

TensorRT: against tensorrt-stubs (``pip install --no-deps tensorrt-stubs``; skipped with the
reason where absent).  cuda-python: against the installed ``cuda.bindings.runtime``.
"""

from __future__ import annotations

import ast
import enum
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import cuda_fake, stubs
from tests.fakes.cuda_fake import FakeCuda
from tests.fakes.trt_fake import (
    ABSENT_IN_8,
    DEPRECATED_IN_11,
    REMOVED_IN_11,
    STUBS_VERSION,
    VERSIONS,
    FakeTensorRT,
)

STUBS = stubs.load()
needs_stubs = pytest.mark.skipif(STUBS is None, reason="tensorrt-stubs is not installed "
                                 "(pip install --no-deps tensorrt-stubs)")
FAKE_SOURCES = [Path(__file__).with_name(n) for n in
                ("trt_fake_types.py", "trt_fake_build.py", "trt_fake_run.py")]


def _instance_attributes() -> dict[str, set[str]]:
    """Public ``self.x = ...`` assignments per fake class, read from the fake's source."""
    found: dict[str, set[str]] = {}
    for path in FAKE_SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            names = found.setdefault(node.name, set())
            for sub in ast.walk(node):
                targets = sub.targets if isinstance(sub, ast.Assign) else \
                    [sub.target] if isinstance(sub, ast.AnnAssign) else []
                for target in targets:
                    for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and \
                                t.value.id == "self" and not t.attr.startswith("_"):
                            names.add(t.attr)
    return found


def _fake_members(cls: type) -> dict[str, Any]:
    """Public members a fake class defines itself (not those of bytes/object/enum)."""
    out: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith(("tests.fakes", "tensorrt")):
            out.update({k: v for k, v in vars(klass).items()
                        if not k.startswith("_") or k == "__init__"})
    return out


def _params(fn: Any) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


@needs_stubs
@pytest.mark.parametrize("generation", sorted(VERSIONS))
def test_every_name_the_tensorrt_fake_offers_is_in_the_stubs(generation: int) -> None:
    assert STUBS is not None
    module = FakeTensorRT(FakeCuda(), generation).module
    attributes = _instance_attributes()
    public = {n for n in vars(module) if not n.startswith("_")}
    assert public <= STUBS.module_names, public - STUBS.module_names
    problems = []
    for name in sorted(public):
        cls = getattr(module, name)
        stub = STUBS.members(name)
        if isinstance(cls, type) and issubclass(cls, enum.Enum):
            problems += [f"{name}.{m}" for m in cls.__members__ if m not in stub]
            continue
        for member, value in _fake_members(cls).items():
            if member == "__init__" and "__init__" not in stub:
                continue  # not constructible from Python in the real API either
            if member not in stub:
                problems.append(f"{name}.{member}: not in tensorrt-stubs")
            elif callable(value) and not isinstance(value, type) and stub[member] is not None \
                    and _params(value) not in stub[member]:
                problems.append(f"{name}.{member}{_params(value)}: stubs have {stub[member]}")
        for base in [c.__name__ for c in cls.__mro__]:
            problems += [f"{name}.{a}" for a in attributes.get(base, ()) if a not in stub]
    assert problems == []


@needs_stubs
def test_the_tensorrt_11_table_names_real_tensorrt_10_apis() -> None:
    assert STUBS is not None
    assert STUBS.version.startswith(STUBS_VERSION)
    for table in (REMOVED_IN_11, ABSENT_IN_8):
        for cls, names in table.items():
            assert set(names) <= set(STUBS.members(cls)), (cls, names)


def test_generations_differ_as_nvidia_documents() -> None:
    ten, eleven, eight = (FakeTensorRT(FakeCuda(), g).module for g in (10, 11, 8))
    newest_ten = FakeTensorRT(FakeCuda(), version="10.16.0.72").module
    for cls, names in REMOVED_IN_11.items():
        for name in names:
            assert hasattr(getattr(newest_ten, cls), name) or cls == "Builder"
            assert not hasattr(getattr(eleven, cls), name), f"{cls}.{name} in TensorRT 11"
    for cls, names in DEPRECATED_IN_11.items():  # deprecated, still there
        assert all(hasattr(getattr(eleven, cls), n) for n in names), (cls, names)
    assert not hasattr(ten.BuilderFlag, "FP4") and hasattr(newest_ten.BuilderFlag, "FP4")
    assert int(ten.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
    assert int(eleven.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0  # accepted, ignored
    assert not hasattr(eleven.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert not hasattr(eight.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert hasattr(ten.BuilderFlag, "GPU_FALLBACK") and hasattr(eleven.BuilderFlag,
                                                                 "GPU_FALLBACK")


def test_read_only_properties_refuse_writes() -> None:
    ten, eleven = (FakeTensorRT(FakeCuda(), g).module for g in (10, 11))
    builder = ten.Builder(ten.Logger())
    with pytest.raises(AttributeError):
        builder.logger = ten.Logger()
    writable = ten.ITensor("x", (1,), "FLOAT")
    writable.dtype = ten.DataType.HALF  # TensorRT 10: settable
    with pytest.raises(AttributeError):
        eleven.ITensor("x", (1,), "FLOAT").dtype = eleven.DataType.HALF


@pytest.mark.parametrize("generation", [10, 11])
def test_tensorrt_that_cannot_initialise_raises_type_error(generation: int) -> None:
    for cuda in (FakeCuda(driver_version=0), FakeCuda(devices=())):
        trt = FakeTensorRT(cuda, generation).module
        for factory in (trt.Builder, trt.Runtime):
            with pytest.raises(TypeError, match="factory function returned nullptr"):
                factory(trt.Logger())
    trt = FakeTensorRT(FakeCuda(), generation, init_fails=True).module
    with pytest.raises(TypeError, match="nullptr"):
        trt.Runtime(trt.Logger())


def test_cuda_without_a_driver_fails_as_each_cuda_python_does() -> None:
    old = FakeCuda(driver_version=0, cuda_python="12.8.0").module
    assert old.cudaRuntimeGetVersion() == (old.cudaError_t.cudaSuccess, 12060)
    with pytest.raises(RuntimeError, match="Failed to dlopen libcuda.so.1"):
        old.cudaGetDeviceCount()
    with pytest.raises(RuntimeError, match='Function "cuInit" not found'):
        old.cudaSetDevice(0)
    new = FakeCuda(driver_version=0, cuda_python="12.9.0").module
    assert new.cudaGetDeviceCount() == (new.cudaError_t.cudaErrorInsufficientDriver, None)
    assert new.cudaDriverGetVersion() == (new.cudaError_t.cudaSuccess, 0)
    assert FakeCuda(cuda_python="12.3.0").module_paths() == ("cuda.cudart",)
    assert FakeCuda(cuda_python="12.6.0").module_paths()[0] == "cuda.bindings.runtime"


def _real_cudart() -> Any:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return None


REAL = _real_cudart()


@pytest.mark.skipif(REAL is None, reason="cuda-python (cuda.bindings.runtime) is not installed")
def test_cuda_fake_matches_cuda_python() -> None:
    fake = FakeCuda().module
    for name in cuda_fake.FUNCTIONS:
        real = getattr(REAL, name)
        assert _params(getattr(fake, name)) == list(inspect.signature(real).parameters), name
    for enum_name in ("cudaError_t", "cudaMemcpyKind"):
        real_enum, fake_enum = getattr(REAL, enum_name), getattr(fake, enum_name)
        for member in fake_enum:
            assert int(getattr(real_enum, member.name)) == int(member), (enum_name, member)
    for const in ("cudaHostAllocDefault", "cudaHostAllocPortable", "cudaHostAllocMapped"):
        assert getattr(REAL, const) == getattr(fake, const)
    prop = REAL.cudaDeviceProp()
    fake_prop = fake.cudaDeviceProp(cuda_fake.FakeDevice())
    for attr in vars(fake_prop):
        assert hasattr(prop, attr), attr
    public = {n for n in vars(fake) if not n.startswith("_")}
    assert public <= set(dir(REAL)), public - set(dir(REAL))
