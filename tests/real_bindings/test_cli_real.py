"""The segedge CLI, installed as users get it, over the REAL TensorRT and cuda-python bindings
on a machine without a GPU (stand-in TensorRT libraries, no CUDA driver): every GPU option
ends with its documented exit code and at most a few lines, never exit 1 or a traceback.

Pairs: TensorRT 10.3 with cuda-python 12.3 (raises RuntimeError where libcuda cannot be
opened) and TensorRT 11.4 with cuda-python 12.9 (returns cudaErrorInsufficientDriver).
Skipped with the reason where tests/real_bindings/setup.sh could not install them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.real_bindings import envs

ASSETS = envs.REPO / "runtime" / "assets"
PAIRS = [("10.3.0", "12.3.0"), ("11.4.0.106", "12.9.10")]
NO_GPU = "no usable CUDA GPU (CUDA cudaGetDeviceCount: expected cudaSuccess, got "
CUDA_ERROR = {"12.3.0": "RuntimeError: Failed to dlopen libcuda.so.1)",
              "12.9.10": "cudaErrorInsufficientDriver)"}


@pytest.fixture(scope="module", params=PAIRS, ids=lambda p: f"trt{p[0]}-cuda{p[1]}")
def real(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[envs.RealEnv, str]:
    trt_version, cuda_version = request.param
    trt, cuda = envs.folder("trt", trt_version), envs.folder("cuda", cuda_version)
    if trt is None or cuda is None:
        pytest.skip(envs.missing_reason("trt" if trt is None else "cuda",
                                        trt_version if trt is None else cuda_version))
    major = int(trt_version.split(".")[0])
    libs = envs.build_standins(tmp_path_factory.mktemp(f"libs{major}"), major)
    if libs is None:
        pytest.skip("no C compiler (cc) here to build the stand-in TensorRT libraries")
    return envs.RealEnv((trt, cuda), libs), cuda_version


def _run(env: envs.RealEnv, cwd: Path, *argv: str, timeout: float = 300,
         path: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = {"PATH": f"{path}{os.pathsep}{os.environ['PATH']}"} if path else {}
    exe = shutil.which(argv[0])
    assert exe is not None, f"{argv[0]} is not installed (pip install -e .)"
    done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, cwd=cwd,
                          env=env.env(HOME=str(cwd), **extra), timeout=timeout)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert done.returncode != 1, done.stderr  # 1 is an internal error: never on these paths
    return done


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_the_real_bindings_load_over_the_stand_ins(real: tuple[envs.RealEnv, str],
                                                    tmp_path: Path) -> None:
    env, cuda_version = real
    code = ("import tensorrt, segedge.runtime.backends.cuda as c;"
            "print(tensorrt.__version__, c.import_cudart().__name__)")
    done = subprocess.run(["python", "-c", code], capture_output=True, text=True,
                          env=env.env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    trt_version = str(env.paths[0].name).removeprefix("trt-")
    module = "cuda.cudart" if cuda_version.startswith("12.3") else "cuda.bindings.runtime"
    assert done.stdout.split() == [trt_version, module]


def test_segdoctor_says_no_gpu_in_one_line(real: tuple[envs.RealEnv, str],
                                           tmp_path: Path) -> None:
    env, cuda_version = real
    done = _run(env, tmp_path, "segdoctor", "--json", "d.json")
    assert done.returncode == 5 and done.stderr == ""
    assert _lines(done.stdout) == [
        f"segdoctor: no NVIDIA GPU here (no CUDA device (CUDA cudaGetDeviceCount: expected "
        f"cudaSuccess, got {CUDA_ERROR[cuda_version][:-1]}), no nvidia-smi GPU, not a Jetson); "
        "segedge runs on the CPU (exit 5)"]


def test_segdoctor_where_nvidia_smi_sees_a_gpu_cuda_cannot_use(
        real: tuple[envs.RealEnv, str], tmp_path: Path) -> None:
    env, _ = real
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "GPU 0: NVIDIA Stand-in (UUID: GPU-0)"\n')
    smi.chmod(0o755)
    done = _run(env, tmp_path, "segdoctor", "--json", "d.json", "--frames", "1", "--iters", "1",
                path=bin_dir)
    assert done.returncode == 3, done.stdout + done.stderr
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["exit_code"] == 3 and report["ready"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["cuda"]["status"] == by_name["tensorrt"]["status"] == "fail"
    assert {by_name[f"engine {p}"]["status"] for p in ("fp32", "fp16", "int8")} == {"n/a"}
    assert "driver" not in report["platform"]["cuda"]
    assert "no CUDA driver found" in done.stdout and "driver CUDA 0.0" not in done.stdout


def test_an_explicit_engine_is_refused_in_one_line(real: tuple[envs.RealEnv, str],
                                                   tmp_path: Path) -> None:
    env, cuda_version = real
    done = _run(env, tmp_path, "segexport", "demo", "--engine", "-o", "e.onnx")
    assert done.returncode == 2
    assert _lines(done.stderr) == [f"segexport: error: --engine: expected TensorRT and a CUDA "
                                   f"GPU, got {NO_GPU}{CUDA_ERROR[cuda_version]}"]
    assert list(tmp_path.glob("e.*")) == []


def test_segrun_on_a_plan_is_refused_in_one_line(real: tuple[envs.RealEnv, str],
                                                 tmp_path: Path) -> None:
    env, cuda_version = real
    (tmp_path / "m.plan").write_bytes(b"not a plan: the backend must refuse before reading it")
    done = _run(env, tmp_path, "segrun", "m.plan", str(ASSETS / "demo_clip.mp4"), "-o",
                "out.mp4")
    assert done.returncode == 2
    assert _lines(done.stderr) == [f"segrun: error: tensorrt backend unavailable for m.plan: "
                                   f"{NO_GPU}{CUDA_ERROR[cuda_version]}"]
    assert not (tmp_path / "out.mp4").exists()


def test_segbench_gpu_rows_are_skipped_with_the_reason(real: tuple[envs.RealEnv, str],
                                                       tmp_path: Path) -> None:
    env, cuda_version = real
    done = _run(env, tmp_path, "segbench", str(ASSETS / "demo_fp32.onnx"), "--backends",
                "tensorrt,ort-tensorrt,ort-cuda", "--precisions", "fp32", "--iters", "1",
                "--warmup", "0", "--json", "b.json", "--workdir", "w")
    assert done.returncode == 4  # every cell skipped: documented as degraded
    assert len(_lines(done.stderr)) <= 3
    records = json.loads((tmp_path / "b.json").read_text())["records"]
    by_backend = {r["backend"]: r for r in records}
    assert set(by_backend) == {"tensorrt", "ort-tensorrt", "ort-cuda"}
    assert all(r["status"] == "skipped" for r in records)
    # cuda-python 12.3 says "dlopen" once per process, then that cuInit is missing
    assert by_backend["tensorrt"]["reason"] in (
        NO_GPU + CUDA_ERROR[cuda_version], NO_GPU + 'RuntimeError: Function "cuInit" not found '
        "(libcuda.so.1, the CUDA driver, did not load))")


def test_fp16_export_says_no_engine_built_and_exits_0(real: tuple[envs.RealEnv, str],
                                                      tmp_path: Path) -> None:
    env, cuda_version = real
    if not cuda_version.startswith("12.3"):
        pytest.skip("one pair is enough for the ~10 s export (the refusal is the same path)")
    done = _run(env, tmp_path, "segexport", "demo", "--fp16", "--verify-count", "1", "-o",
                "d.onnx")
    assert done.returncode == 0, done.stderr
    assert (f"no TensorRT engine built: {NO_GPU}{CUDA_ERROR[cuda_version]}; the fp16 ONNX is "
            "ready for TensorRT on the target (segexport --engine there)") in done.stderr
    assert (tmp_path / "d.onnx").is_file() and not (tmp_path / "d.plan").exists()


@pytest.mark.slow
def test_int8_export_says_no_engine_built_and_exits_0(real: tuple[envs.RealEnv, str],
                                                      tmp_path: Path) -> None:
    env, cuda_version = real
    if cuda_version.startswith("12.3"):
        pytest.skip("one pair is enough for the INT8 export (fp16 covers the other)")
    done = _run(env, tmp_path, "segexport", "demo", "--int8", "--calib",
                str(ASSETS / "demo_clip.mp4"), "--calib-count", "16", "--verify-count", "1",
                "-o", "q.onnx", timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"no TensorRT engine built: {NO_GPU}{CUDA_ERROR[cuda_version]}" in done.stderr
    assert (tmp_path / "q.onnx").is_file() and not (tmp_path / "q.plan").exists()
