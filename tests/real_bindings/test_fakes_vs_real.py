"""The fakes (tests/fakes) against the REAL bindings: tensorrt_cu12_bindings 10.3, 10.16 and
11.4 over stand-in TensorRT libraries, cuda-python 12.3 and 12.9 (the gpu extra's pin, both
ends) on this GPU-less machine.  Per version, in a subprocess each: every name the fake offers
exists with the same enum values, method parameters (pybind11 docstrings), property
writability, and every failing call raises or returns what the real one does (TypeError from
Builder/Runtime; RuntimeError or error codes from CUDA).  A fake that accepts what the real
bindings reject fails here.  Skipped with the reason where setup.sh could not install a wheel.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import cuda_fake
from tests.fakes.cuda_fake import FakeCuda
from tests.fakes.test_fakes_match_api import _fake_members, _instance_attributes
from tests.fakes.trt_fake import REAL_VERSIONS, FakeTensorRT
from tests.real_bindings import envs, introspect

INTROSPECT = Path(introspect.__file__)


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    out = {}
    for major in (10, 11):
        built = envs.build_standins(tmp_path_factory.mktemp(f"standins{major}"), major)
        if built is None:
            pytest.skip("no C compiler (cc) here to build the stand-in TensorRT libraries")
        out[major] = built
    return out


def _real(kind: str, version: str, names: dict[str, list[str]], libs: Path | None
          ) -> dict[str, Any]:
    folder = envs.folder("trt" if kind == "tensorrt" else "cuda", version)
    if folder is None:
        pytest.skip(envs.missing_reason("trt" if kind == "tensorrt" else "cuda", version))
    env = envs.RealEnv((folder,), libs).env()
    done = subprocess.run([sys.executable, str(INTROSPECT), kind, json.dumps(names)],
                          capture_output=True, text=True, env=env, cwd=envs.REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _fake_names(module: Any) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """{public name: members to compare} and the fake's instance attributes per class."""
    attributes = _instance_attributes()
    names: dict[str, list[str]] = {}
    instance: dict[str, set[str]] = {}
    for name in sorted(n for n in vars(module) if not n.startswith("_")):
        value = getattr(module, name)
        if isinstance(value, type) and not introspect.is_enum(value):
            attrs = set().union(*(attributes.get(c.__name__, set()) for c in value.__mro__))
            instance[name] = attrs
            names[name] = sorted(set(_fake_members(value)) | attrs)
        else:
            names[name] = []
    return names, instance


def _describe_fake(module: Any, names: dict[str, list[str]], instance: dict[str, set[str]]
                   ) -> dict[str, Any]:
    described = introspect.describe(module, names)
    for cls, attrs in instance.items():
        for attr in attrs:  # ``self.x = ...`` in the fake: a writable attribute
            if described[cls]["members"][attr]["kind"] == "absent":
                described[cls]["members"][attr] = {"kind": "property", "readonly": False}
    return described


def differences(fake: dict[str, Any], real: dict[str, Any]) -> list[str]:
    """Where the fake offers or accepts what the real module does not."""
    problems = []
    for name, f in fake.items():
        r = real.get(name, {"kind": "absent"})
        if r["kind"] == "absent":
            problems.append(f"{name}: the fake has it, the real module does not")
        elif f["kind"] == "enum":
            for member, value in f["members"].items():
                if member not in r.get("members", {}):
                    problems.append(f"{name}.{member}: not in the real enum")
                elif r["members"][member] != value:
                    problems.append(f"{name}.{member}: fake {value}, real {r['members'][member]}")
        elif f["kind"] == "class":
            for member, fm in f["members"].items():
                problems += _member(f"{name}.{member}", fm, r.get("members", {}).get(
                    member, {"kind": "absent"}))
        elif f["kind"] == "function":
            problems += _member(name, {"kind": "method", "params": f["params"]},
                                {"kind": "method", "params": r.get("params")})
        elif f["kind"] == "value" and f.get("value") != r.get("value"):
            problems.append(f"{name}: fake {f.get('value')!r}, real {r.get('value')!r}")
    return problems


def _member(label: str, fake: dict[str, Any], real: dict[str, Any]) -> list[str]:
    if real["kind"] == "absent":
        return [f"{label}: the fake has it, the real class does not"]
    if fake["kind"] == "property":
        if real["kind"] not in ("property", "value"):
            return [f"{label}: an attribute in the fake, a {real['kind']} in the real one"]
        if real.get("readonly") is True and fake["readonly"] is False:
            return [f"{label}: writable in the fake, read-only in the real bindings"]
        if real.get("readonly") is False and fake["readonly"] is True:
            return [f"{label}: read-only in the fake, writable in the real bindings"]
    elif fake["kind"] == "method":
        if real["kind"] != "method":
            return [f"{label}: a method in the fake, a {real['kind']} in the real one"]
        real_params, fake_params = real.get("params"), fake.get("params")
        if real_params and fake_params and fake_params[0] not in real_params:
            return [f"{label}{fake_params[0]}: the real overloads take {real_params}"]
    return []


@pytest.mark.parametrize("version", REAL_VERSIONS)
def test_tensorrt_fake_matches_the_real_bindings(version: str, standins: dict[int, Path]
                                                 ) -> None:
    fake = FakeTensorRT(FakeCuda(driver_version=0), version=version)
    names, instance = _fake_names(fake.module)
    real = _real("tensorrt", version, names, standins[fake.generation])
    assert real["version"] == fake.version == version
    assert differences(_describe_fake(fake.module, names, instance), real["names"]) == []
    # where TensorRT cannot initialise CUDA the factories raise the same thing
    assert introspect.tensorrt_failures(fake.module) == real["failures"]
    assert real["failures"]["Builder(logger)"] == {
        "raised": "TypeError", "message": "pybind11::init(): factory function returned nullptr"}


CUDA_NAMES = {**{fn: [] for fn in cuda_fake.FUNCTIONS}, "cudaError_t": [], "cudaMemcpyKind": [],
              "cudaHostAllocDefault": [], "cudaHostAllocPortable": [], "cudaHostAllocMapped": [],
              "cudaDeviceProp": ["name", "major", "minor", "integrated", "canMapHostMemory",
                                 "totalGlobalMem", "multiProcessorCount"],
              "cudaStream_t": ["getPtr"]}


@pytest.mark.parametrize("version", envs.CUDA_PYTHON)
def test_cuda_fake_matches_cuda_python_without_a_driver(version: str) -> None:
    fake = FakeCuda(driver_version=0, cuda_python=version)
    real = _real("cudart", version, CUDA_NAMES, None)
    assert real["version"] == fake.module_paths()[0]  # the path import_cudart takes
    assert real["paths"] == list(fake.module_paths())  # 12.3-12.5: only cuda.cudart
    described = introspect.describe(fake.module, CUDA_NAMES)
    for attr in CUDA_NAMES["cudaDeviceProp"]:  # instance attributes of the fake's struct
        described["cudaDeviceProp"]["members"][attr] = {"kind": "property", "readonly": False}
    assert differences(described, real["names"]) == []
    assert introspect.cuda_failures(fake.module) == real["failures"]


def test_differences_catch_a_fake_that_accepts_more() -> None:
    """The comparison itself: a writable fake property, an extra enum member, another value."""
    real = {"Builder": {"kind": "class", "members": {"logger": {"kind": "property",
                                                                "readonly": True}}},
            "BuilderFlag": {"kind": "enum", "members": {"FP16": 0}}}
    fake = {"Builder": {"kind": "class", "members": {"logger": {"kind": "property",
                                                                "readonly": False}}},
            "BuilderFlag": {"kind": "enum", "members": {"FP16": 1, "FP4": 26}}}
    assert differences(fake, real) == [
        "Builder.logger: writable in the fake, read-only in the real bindings",
        "BuilderFlag.FP16: fake 1, real 0", "BuilderFlag.FP4: not in the real enum"]
