"""segdoctor: one line and its own exit code without a GPU; the whole check flow against the
TensorRT/CUDA fakes (TensorRT 10 and 11, DLA, failures with fixes); the platform probes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomllib

from segedge.export.doctor import checks, cli
from segedge.runtime import platform
from segedge.runtime.backends import onnxruntime as ort_backend
from segedge.runtime.errors import InputError
from tests.fakes.cuda_fake import ORIN
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[2]
Gpu = Callable[..., FakeGpu]
ARGS = ["--frames", "2", "--iters", "2"]


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CUDA from Python, no nvidia-smi, no Tegra release file, whatever this machine has."""
    for path in ("cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, path, None)
    monkeypatch.setattr(platform, "run_command", lambda cmd, timeout=10.0: None)
    monkeypatch.setattr(platform, "ROOT", tmp_path / "root")


def _gpu_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime-gpu whose providers run: sessions on the CPU, nodes reported on the EP."""
    import onnxruntime as ort

    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        ort_backend.TRT_EP, ort_backend.CUDA_EP, ort_backend.CPU_EP])

    def session(path: Any, so: Any = None, providers: list[Any] | None = None, **kw: Any) -> Any:
        made = real(path, so, providers=["CPUExecutionProvider"], **kw)
        first = (providers or ["CPUExecutionProvider"])[0]
        made._segedge_ran = first if isinstance(first, str) else first[0]
        return made

    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(ort_backend, "executed_providers",
                        lambda s, feed: {s._segedge_ran: 3} if s.run(None, feed) else {})


def _run(args: list[str]) -> int:
    try:
        cli.main(args)
    except SystemExit as done:
        return int(done.code or 0)
    return 0


def test_no_gpu_is_one_line_and_its_own_exit_code(
        no_gpu: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["--json", str(tmp_path / "r.json")]) == cli.EXIT_NO_GPU == 5
    out, err = capsys.readouterr()
    assert err == ""
    assert out == ("segdoctor: no NVIDIA GPU here (no CUDA device (import of cuda.cudart halted; "
                   "None in sys.modules), no nvidia-smi GPU, not a Jetson); segedge runs on the "
                   "CPU (exit 5)\n")
    assert not (tmp_path / "r.json").exists()


@pytest.mark.skipif(platform.find_gpu()[0], reason="this machine has an NVIDIA GPU")
def test_the_installed_command_here_prints_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", "from segedge.export.doctor.cli import main; "
                           "main()"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 5 and done.stderr == ""
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("segdoctor: no NVIDIA GPU")
    assert list(tmp_path.iterdir()) == []


def test_pyproject_installs_segdoctor() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["segdoctor"] == "segedge.export.doctor.cli:main"
    import importlib.util

    spec = importlib.util.spec_from_file_location("segedge_setup", REPO / "setup.py")
    assert spec is not None and spec.loader is not None
    setup_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_module)  # setup() only runs as __main__
    assert "segedge.export.doctor" in setup_module.segedge_packages(REPO)
    gpu = project["project"]["optional-dependencies"]["gpu"]
    assert any(p.startswith("tensorrt-cu12") and "<11" in p for p in gpu)
    assert any(p.startswith("cuda-python") and "<13" in p for p in gpu)
    # enable_fallback=0 (segedge's provider options are never dropped) is read from ORT 1.23
    assert any(p.startswith("onnxruntime-gpu>=1.23") for p in gpu)
    for name in ("demo_fp32.onnx", "demo_fp16.onnx", "demo_int8.onnx", "demo_clip.mp4"):
        assert (checks.ASSETS / name).is_file(), name


EXPECTED = ["cuda", "tensorrt", "onnxruntime-gpu",
            "cpu fp32", "engine fp32", "tensorrt fp32", "ort-tensorrt fp32",
            "cpu fp16", "engine fp16", "tensorrt fp16", "ort-tensorrt fp16",
            "cpu int8", "engine int8", "tensorrt int8", "ort-tensorrt int8",
            "ort-cuda fp32"]


@pytest.mark.parametrize("generation", [10, 11])
def test_every_check_passes_on_a_working_stack(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str], generation: int) -> None:
    gpu = fake_gpu(generation=generation)
    _gpu_onnxruntime(monkeypatch)
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), "--workdir", str(tmp_path / "w"), *ARGS]) == 0
    data = json.loads(report.read_text())
    assert data["ready"] is True and data["exit_code"] == 0
    assert [c["name"] for c in data["checks"]] == [*EXPECTED, "dla"]
    assert [c["status"] for c in data["checks"]] == ["pass"] * len(EXPECTED) + ["n/a"]
    for check in data["checks"]:
        if check["name"].startswith(("tensorrt ", "ort-")):
            assert check["agreement"] == 100.0 and check["ms"] > 0
    assert data["platform"]["tensorrt"]["version"] == gpu.trt.version
    assert data["platform"]["gpus"][0]["name"] == "NVIDIA Fake RTX"
    out = capsys.readouterr().out
    assert f"TensorRT: {gpu.trt.version}" in out
    assert out.splitlines()[-1] == (f"segdoctor: READY; {len(EXPECTED)} passed, 1 n/a; "
                                    f"report {report}")
    assert sorted(p.name for p in (tmp_path / "w").glob("*.plan")) == [
        "demo_fp16.plan", "demo_fp32.plan", "demo_int8.plan"]
    assert gpu.trt.violations == [] and gpu.cuda.live() == {"device": 0, "host": 0, "streams": 0}


def test_a_jetson_with_dla_also_proves_the_dla_engine(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    fake_gpu(generation=10, devices=(ORIN,), num_dla_cores=2)
    _gpu_onnxruntime(monkeypatch)
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), "--quiet", *ARGS]) == 0
    by_name = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert by_name["engine fp16 dla0"]["status"] == "pass"
    assert "flags FP16" in by_name["engine fp16 dla0"]["detail"]
    assert by_name["tensorrt fp16 dla0"]["status"] == "pass"
    assert "dla" not in by_name


def test_a_failing_check_says_the_fix_and_exits_not_ready(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    gpu = fake_gpu(context_fails=True)
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), *ARGS]) == cli.EXIT_NOT_READY == 3
    data = json.loads(report.read_text())
    by_name = {c["name"]: c for c in data["checks"]}
    assert data["ready"] is False
    assert by_name["tensorrt fp32"]["status"] == "fail"
    assert by_name["tensorrt fp32"]["fix"] == checks.FIX_RUN
    assert by_name["engine fp32"]["status"] == "pass"
    assert by_name["onnxruntime-gpu"]["status"] == "fail"  # CPU-only onnxruntime here
    assert by_name["ort-tensorrt fp32"]["status"] == "n/a"
    out = capsys.readouterr().out
    assert f"      fix: {checks.FIX_RUN}" in out
    assert out.splitlines()[-1] == (
        "segdoctor: NOT READY (4 failed: onnxruntime-gpu, tensorrt fp32, tensorrt fp16, "
        f"tensorrt int8); 8 passed, 5 n/a; report {report}")
    assert gpu.cuda.live() == {"device": 0, "host": 0, "streams": 0}


def test_without_tensorrt_the_engines_are_not_applicable(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    fake_gpu()
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), "--quiet", *ARGS]) == 3
    by_name = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert by_name["cuda"]["status"] == "pass"
    assert by_name["tensorrt"]["status"] == "fail" and by_name["tensorrt"]["fix"] == \
        checks.FIX_TENSORRT
    assert by_name["engine int8"] == {"name": "engine int8", "status": "n/a", "fix": "",
                                      "detail": "TensorRT is not usable (see tensorrt)",
                                      "ms": None, "agreement": None}


def test_check_and_config_validate_themselves(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="^check x: expected a fix to try with a failure"):
        checks.Check("x", "fail", "broken")
    with pytest.raises(InputError, match="^check x status: expected pass, fail or n/a"):
        checks.Check("x", "ok", "")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="^--frames: expected a positive integer"):
        checks.DoctorConfig(tmp_path, frames=0)


def test_jetson_release_and_power_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n")
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_text("NVIDIA Jetson Orin NX\0")
    monkeypatch.setattr(platform, "run_command", lambda cmd, timeout=10.0:
                        "NV Power Mode: MAXN\n0" if cmd[0] == "nvpmodel" else None)
    assert platform.jetson(tmp_path) == {
        "release_file": "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, "
                        "EABI: aarch64", "l4t": "36.4.3", "jetpack": "6",
        "model": "NVIDIA Jetson Orin NX", "power_mode": "NV Power Mode: MAXN 0"}
    assert platform.jetson(tmp_path / "elsewhere") == {}
    for path in ("cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, path, None)
    found, how = platform.find_gpu(tmp_path)
    assert found and how.startswith("a Jetson (L4T release file; CUDA from Python: ")


def test_masks_that_differ_from_the_cpu_fail_with_the_agreement(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    gpu = fake_gpu()
    context = gpu.trt.module.IExecutionContext
    honest = context._run

    def wrong_left_half(self: Any, feed: Any) -> Any:  # a kernel that breaks half the image
        out = honest(self, feed)
        labels = out["labels"].copy()
        labels[..., : labels.shape[-1] // 2] = 255
        return {**out, "labels": labels}

    monkeypatch.setattr(context, "_run", wrong_left_half)
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), "--quiet", *ARGS]) == 3
    by_name = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    check = by_name["tensorrt fp32"]
    assert check["status"] == "fail" and check["fix"] == checks.FIX_MASKS
    assert 45.0 <= check["agreement"] <= 55.0
    assert check["detail"] == (f"masks agree {check['agreement']:.2f}% with the CPU, expected "
                               ">= 99.5%")


def _smi_lists_a_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """nvidia-smi sees a GPU that CUDA from Python cannot use: the doctor must run its checks."""
    monkeypatch.setattr(platform, "run_command", lambda cmd, timeout=10.0:
                        "GPU 0: NVIDIA Stand-in (UUID: GPU-0)" if cmd[0] == "nvidia-smi" else None)
    monkeypatch.setattr(platform, "ROOT", tmp_path / "root")


@pytest.mark.parametrize("cuda_python,cuda_error", [
    # 12.3-12.8 raise: "Failed to dlopen libcuda.so.1" on the first call (the GPU search
    # made it), 'Function "cuInit" not found' on every later one, as the real 12.3 does
    ("12.8.0", 'RuntimeError: Function "cuInit" not found (libcuda.so.1, the CUDA driver, did '
               'not load)'),
    ("12.9.0", "cudaErrorInsufficientDriver"),  # 12.9+ return the code
])
def test_a_driver_that_does_not_load_is_not_ready_with_the_cuda_fix(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str], cuda_python: str, cuda_error: str) -> None:
    fake_gpu(driver_version=0, cuda_python=cuda_python)
    _smi_lists_a_gpu(monkeypatch, tmp_path)
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), *ARGS]) == cli.EXIT_NOT_READY
    out, err = capsys.readouterr()
    assert err == "" and "Traceback" not in out
    saved = json.loads(report.read_text())
    by_name = {c["name"]: c for c in saved["checks"]}
    assert by_name["cuda"]["status"] == "fail" and by_name["cuda"]["fix"] == checks.FIX_CUDA
    assert by_name["cuda"]["detail"] == ("CUDA cudaGetDeviceCount: expected cudaSuccess, got "
                                         + cuda_error)
    assert by_name["tensorrt"]["status"] == "fail" and by_name["tensorrt"]["fix"] == \
        checks.FIX_CUDA
    assert by_name["engine fp32"]["status"] == "n/a"
    assert "driver" not in saved["platform"]["cuda"]  # cudaDriverGetVersion: 0 or raised
    assert "GPU: none from CUDA; no CUDA driver found, runtime " in out
    assert "driver CUDA 0.0" not in out


def test_tensorrt_that_cannot_initialise_cuda_is_not_ready_with_the_driver_fix(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    fake_gpu(init_fails=True)  # trt.Runtime/Builder: TypeError, as the real bindings raise
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), "--quiet", *ARGS]) == cli.EXIT_NOT_READY
    by_name = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    assert by_name["cuda"]["status"] == "pass"
    assert by_name["tensorrt"]["fix"] == checks.FIX_TENSORRT_INIT
    assert by_name["tensorrt"]["detail"].startswith(
        "TensorRT could not create a Runtime: expected TensorRT to initialise CUDA, got "
        "TypeError: pybind11::init(): factory function returned nullptr")
    assert by_name["dla"]["status"] == "n/a"
    assert "Traceback" not in capsys.readouterr().err


def test_gpu_providers_that_cannot_load_name_the_missing_cuda_libraries(
        tmp_path: Path, fake_gpu: Gpu, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import onnxruntime as ort

    fake_gpu()
    real = ort.InferenceSession
    monkeypatch.setattr(ort, "get_available_providers", lambda: [
        ort_backend.TRT_EP, ort_backend.CUDA_EP, ort_backend.CPU_EP])

    def session(path: Any, so: Any = None, providers: list[Any] | None = None, **kw: Any) -> Any:
        first = (providers or ["CPUExecutionProvider"])[0]
        if (first if isinstance(first, str) else first[0]) != "CPUExecutionProvider":
            raise RuntimeError("Failed to load library libonnxruntime_providers_cuda.so with "
                               "error: libcudnn.so.9: cannot open shared object file")
        return real(path, so, providers=providers, **kw)

    monkeypatch.setattr(ort, "InferenceSession", session)
    report = tmp_path / "r.json"
    assert _run(["--json", str(report), "--quiet", "--frames", "1", "--iters", "1"]) == 3
    by_name = {c["name"]: c for c in json.loads(report.read_text())["checks"]}
    for name in ("ort-tensorrt fp32", "ort-cuda fp32"):
        assert by_name[name]["status"] == "fail" and by_name[name]["fix"] == checks.FIX_ORT_LOAD
        assert "libcudnn.so.9" in by_name[name]["detail"]
    assert 'pip install "onnxruntime-gpu[cuda,cudnn]"' in checks.FIX_ORT_LOAD
