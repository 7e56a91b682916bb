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
from tests.fakes.trt_fake import ABSENT_IN_8, REMOVED_IN_11, STUBS_VERSION, VERSIONS, FakeTensorRT

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
    for cls, names in REMOVED_IN_11.items():
        for name in names:
            assert hasattr(getattr(ten, cls), name) or cls == "Builder"
            assert not hasattr(getattr(eleven, cls), name), f"{cls}.{name} in TensorRT 11"
    assert hasattr(ten.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert hasattr(eleven.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")  # accepted, ignored
    assert not hasattr(eight.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    assert hasattr(ten.BuilderFlag, "GPU_FALLBACK") and hasattr(eleven.BuilderFlag,
                                                                 "GPU_FALLBACK")


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
