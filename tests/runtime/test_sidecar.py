"""Plan sidecar (round trip, corruption, sha mismatch, cache keys, staleness) and the pure
parts of the TensorRT backend (dtype map, profile range, input validation, refusal without TRT).

The backend's CUDA/TensorRT paths run against the fakes in test_backend_tensorrt.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime.backends import tensorrt as trt_backend
from segedge.runtime.backends import tensorrt_slots
from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, InputError, ShapeError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec, default_palette
from segedge.runtime.sidecar import (
    EngineSidecar,
    engine_cache_key,
    is_stale,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_sidecar,
)

PROFILE = {"input": ((1, 3, 256, 256), (1, 3, 512, 512), (1, 3, 1024, 1024))}
META = ArtifactMetadata(model="m", family="f", classes=("a", "b", "c"),
                        palette=default_palette(3), input=InputSpec(size=None, stride=32),
                        precision="fp16")


def _plan(
    tmp_path: Path, payload: bytes = b"\x00plan-bytes\xff" * 64
) -> tuple[Path, EngineSidecar]:
    plan = tmp_path / "model.plan"
    plan.write_bytes(payload)
    sidecar = EngineSidecar(
        plan_sha256=sha256_file(plan), onnx_sha256="a" * 64,
        segedge=json.loads(META.to_json()), tensorrt_version="10.13.0.35",
        gpu_name="Orin", compute_capability="8.7", precision="fp16", profile=PROFILE,
        build_time_s=12.5, built_at="2025-01-01T00:00:00+00:00", strongly_typed=True,
        cache_key="k")
    write_sidecar(plan, sidecar)
    return plan, sidecar


# -- sidecar file -------------------------------------------------------------------------

def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # > one 1 MiB chunk
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert sha256_file(path, chunk=4096) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ArtifactError, match="no such file"):
        sha256_file(tmp_path / "missing")


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    plan, written = _plan(tmp_path)
    assert sidecar_path(plan) == tmp_path / "model.plan.json"
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*tmp"))
    read = read_sidecar(plan)
    assert read == written
    assert read.profile["input"][2] == (1, 3, 1024, 1024)
    assert read.metadata == META
    raw = json.loads(sidecar_path(plan).read_text())
    assert raw["segedge"]["classes"] == ["a", "b", "c"]  # an object, not a JSON string
    assert plan.read_bytes().startswith(b"\x00plan-bytes")  # plan left untouched


def test_missing_sidecar_names_it(tmp_path: Path) -> None:
    plan = tmp_path / "lonely.plan"
    plan.write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"lonely\.plan\.json"):
        read_sidecar(plan)


@pytest.mark.parametrize("corrupt", [
    lambda text: text[: len(text) // 2],  # truncated
    lambda text: "[]",  # wrong top-level type
    lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "profile"}),
    lambda text: json.dumps({**json.loads(text), "schema": 99}),
    lambda text: json.dumps({**json.loads(text), "profile": {"input": [[1, 3]]}}),
])
def test_corrupt_sidecar_is_artifact_error(tmp_path: Path, corrupt) -> None:  # type: ignore[no-untyped-def]
    plan, _ = _plan(tmp_path)
    path = sidecar_path(plan)
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(ArtifactError) as info:
        read_sidecar(plan)
    assert "\n" not in str(info.value)


def test_sha_mismatch_names_expected_and_got(tmp_path: Path) -> None:
    plan, sidecar = _plan(tmp_path)
    plan.write_bytes(b"another plan")
    got = hashlib.sha256(b"another plan").hexdigest()
    with pytest.raises(ArtifactError, match="sha256 mismatch") as info:
        read_sidecar(plan)
    assert sidecar.plan_sha256 in str(info.value) and got in str(info.value)
    assert read_sidecar(plan, verify=False).plan_sha256 == sidecar.plan_sha256


def test_rewrite_replaces_atomically(tmp_path: Path) -> None:
    plan, sidecar = _plan(tmp_path)
    write_sidecar(plan, replace(sidecar, build_time_s=1.0))
    assert read_sidecar(plan).build_time_s == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.plan", "model.plan.json"]


# -- cache key and staleness ------------------------------------------------------------

def test_cache_key_is_stable_and_sensitive() -> None:
    base = ("a" * 64, "10.13.0.35", "8.7", "fp16", PROFILE)
    key = engine_cache_key(*base)
    assert key == engine_cache_key(*base) and len(key) == 32
    reordered = {"z": ((1,), (1,), (1,)), **PROFILE}
    assert engine_cache_key(*base[:4], reordered) == engine_cache_key(
        *base[:4], dict(reversed(list(reordered.items()))))
    bigger = {"input": (PROFILE["input"][0], PROFILE["input"][1], (1, 3, 2048, 2048))}
    variants = [("b" * 64, *base[1:]), (base[0], "10.14.0", *base[2:]),
                (*base[:2], "9.0", *base[3:]), (*base[:3], "int8", base[4]), (*base[:4], bigger)]
    assert len({engine_cache_key(*v) for v in variants} | {key}) == 6
    settings = {"workspace": 1 << 28, "optimization_level": None, "strongly_typed": True}
    with_settings = engine_cache_key(*base, settings)
    assert with_settings != key and with_settings == engine_cache_key(*base, dict(settings))
    assert engine_cache_key(*base, {**settings, "workspace": 1 << 29}) != with_settings
    assert engine_cache_key(*base, {}) == key  # no settings: the key stays what it was


def test_is_stale_reasons(tmp_path: Path) -> None:
    _, sc = _plan(tmp_path)
    assert is_stale(sc, "a" * 64, "10.13.0.35", "Orin", "8.7") is None
    assert is_stale(sc, None, "10.13.0.35") is None  # unknowns are not checked
    onnx_reason = is_stale(sc, "b" * 64, "10.13.0.35", "Orin", "8.7")
    assert onnx_reason and "a" * 64 in onnx_reason and "b" * 64 in onnx_reason
    assert "10.13.0.35" in (is_stale(sc, "a" * 64, "10.14.1") or "")
    assert "8.9" in (is_stale(sc, "a" * 64, "10.13.0.35", "Orin", "8.9") or "")
    assert "RTX 4090" in (is_stale(sc, None, "10.13.0.35", "RTX 4090", "8.7") or "")


# -- TensorRT backend: pure parts ---------------------------------------------------------

def test_numpy_dtype_mapping() -> None:
    assert tensorrt_slots.numpy_dtype("FLOAT") == np.float32
    assert tensorrt_slots.numpy_dtype("HALF") == np.float16
    assert tensorrt_slots.numpy_dtype("UINT8") == np.uint8
    assert tensorrt_slots.numpy_dtype("INT64") == np.int64
    with pytest.raises(ArtifactError, match="got BF16"):
        tensorrt_slots.numpy_dtype("BF16", "logits")


def test_profile_range_check() -> None:
    profile = PROFILE["input"]
    tensorrt_slots.check_in_profile("input", (1, 3, 256, 1024), profile)  # edges are inside
    with pytest.raises(ShapeError, match=r"min \(1, 3, 256, 256\) .. max \(1, 3, 1024, 1024\), "
                                          r"got \(1, 3, 2048, 512\)"):
        tensorrt_slots.check_in_profile("input", (1, 3, 2048, 512), profile)
    with pytest.raises(ShapeError, match="expected rank 4"):
        tensorrt_slots.check_in_profile("input", (3, 512, 512), profile)


def test_validate_input_casts_floats_and_refuses_other_types() -> None:
    profile = ((1, 3, 8, 8),) * 3
    frame = np.asfortranarray(np.random.default_rng(0).random((1, 3, 8, 8), np.float32))
    out = tensorrt_slots.validate_input(frame, "input", np.dtype(np.float16), profile)
    assert out.dtype == np.float16 and out.flags.c_contiguous
    np.testing.assert_allclose(out, frame, atol=1e-3)
    with pytest.raises(InputError, match="dtype: expected uint8, got float32"):
        tensorrt_slots.validate_input(frame, "input", np.dtype(np.uint8), profile)
    with pytest.raises(ShapeError):
        tensorrt_slots.validate_input(np.zeros((1, 3, 9, 8), np.float32), "input",
                                   np.dtype(np.float32), profile)


def test_runtime_mismatch_is_refused(tmp_path: Path) -> None:
    plan, sc = _plan(tmp_path)
    trt_backend.check_runtime_match(sc, plan, "10.13.0.35", "Orin", "8.7")
    with pytest.raises(ArtifactError, match="plan built with 10.13.0.35, running 10.3.0"):
        trt_backend.check_runtime_match(sc, plan, "10.3.0", "Orin", "8.7")
    with pytest.raises(ArtifactError, match="compute capability"):
        trt_backend.check_runtime_match(sc, plan, "10.13.0.35", "H100", "9.0")


def test_availability_probe_never_raises() -> None:
    ok, why = trt_backend.tensorrt_available()
    assert isinstance(ok, bool) and why and "\n" not in why


def test_create_without_tensorrt_is_one_line_backend_unavailable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # absent, whatever this machine has
    plan, _ = _plan(tmp_path)
    for opener in (lambda: trt_backend.create(plan, BackendOptions()),
                   lambda: open_backend(plan)):
        with pytest.raises(BackendUnavailableError, match="tensorrt backend unavailable") as info:
            opener()
        assert "\n" not in str(info.value)


def test_runtime_modules_import_without_tensorrt_torch_onnx() -> None:
    code = ("import sys; import segedge.runtime.backends.tensorrt, segedge.runtime.sidecar; "
            "bad = {'tensorrt', 'torch', 'onnx', 'pycuda'} & set(sys.modules); "
            "assert not bad, bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
