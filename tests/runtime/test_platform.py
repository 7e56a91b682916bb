"""One discovery of the machine (runtime.platform): segdoctor's "is there a GPU", its platform
report and segbench's results files give the same answer on a Jetson, a CUDA machine and a
machine where only nvidia-smi sees the GPU."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from segedge.benchmarks import env
from segedge.export.doctor import probe
from segedge.runtime import platform
from segedge.runtime.backends import auto
from tests.fakes.cuda_fake import ORIN
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture

RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64"


def _no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    for path in ("cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, path, None)


def _jetson_root(root: Path, release: str = RELEASE + "\n") -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "nv_tegra_release").write_text(release)
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "proc" / "device-tree" / "model").write_text("NVIDIA Jetson Orin NX\0")
    return root


def test_a_jetson_is_one_answer_for_the_doctor_and_segbench(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _jetson_root(tmp_path / "root")
    _no_cuda(monkeypatch)
    monkeypatch.setattr(platform, "run_command", lambda cmd, timeout=10.0:
                        "NV Power Mode: MAXN\n0" if cmd[0] == "nvpmodel" else None)
    monkeypatch.setattr(platform, "ROOT", root)
    doctor = probe.platform_report()["jetson"]
    assert doctor == {"release_file": RELEASE, "l4t": "36.4.3", "jetpack": "6",
                      "model": "NVIDIA Jetson Orin NX", "power_mode": "NV Power Mode: MAXN 0"}
    # segbench's results files keep the whole release line as their l4t field
    assert env.jetson() == {"l4t": RELEASE, "jetpack": "6", "model": "NVIDIA Jetson Orin NX",
                            "power_mode": "NV Power Mode: MAXN 0"}
    found, how = platform.find_gpu()
    assert found and how.startswith("a Jetson (L4T release file; CUDA from Python: import of ")
    assert env.gpus() == [{"name": "NVIDIA Jetson Orin NX (integrated GPU)", "integrated": "yes",
                           "source": "tegra"}]


def test_an_empty_release_file_is_still_a_jetson_without_a_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _jetson_root(tmp_path, release="")
    monkeypatch.setattr(platform, "run_command", lambda cmd, timeout=10.0: None)
    assert platform.jetson(root) == {"release_file": "", "model": "NVIDIA Jetson Orin NX"}
    assert env.jetson(root) == {"l4t": "", "model": "NVIDIA Jetson Orin NX"}
    assert platform.jetson(tmp_path / "elsewhere") == env.jetson(tmp_path / "elsewhere") == {}


def test_a_cuda_gpu_is_found_by_cuda_first_and_named_alike(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        fake_gpu: Callable[..., FakeGpu]) -> None:  # noqa: F811
    fake_gpu(devices=(ORIN,))
    asked: list[str] = []
    monkeypatch.setattr(platform, "run_command",
                        lambda cmd, timeout=10.0: asked.append(cmd[0]))  # type: ignore[func-returns-value]
    monkeypatch.setattr(platform, "ROOT", tmp_path)
    assert platform.find_gpu() == (True, "1 CUDA device(s)")
    assert asked == []  # CUDA answered: no nvidia-smi needed
    assert [g["name"] for g in probe.gpus()] == [g["name"] for g in env.gpus()] == ["Orin"]
    assert probe.gpus()[0]["compute_capability"] == env.gpus()[0]["compute_capability"] == "8.7"


def test_only_nvidia_smi_sees_the_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_cuda(monkeypatch)
    line = "NVIDIA A2, 550.54, 15356 MiB, 210 MHz, 405 MHz, 1770 MHz, 60.00 W, P8"
    monkeypatch.setattr(platform, "run_command", lambda cmd, timeout=10.0:
                        line if cmd[:2] == ["nvidia-smi", f"--query-gpu={platform.GPU_QUERY}"]
                        else None)
    monkeypatch.setattr(platform, "ROOT", tmp_path)
    found, how = platform.find_gpu()
    assert found and how.startswith("nvidia-smi lists a GPU (CUDA cannot use it from Python: ")
    assert env.gpus() == [{"name": "NVIDIA A2", "driver_version": "550.54",
                           "memory.total": "15356 MiB", "clocks.sm": "210 MHz",
                           "clocks.mem": "405 MHz", "clocks.max.sm": "1770 MHz",
                           "power.limit": "60.00 W", "pstate": "P8", "source": "nvidia-smi"}]
    assert probe.gpus() == [{"error": "import of cuda.cudart halted; None in sys.modules"}]


def test_the_cpu_model_is_read_once() -> None:
    """segbench's results files and the auto chooser's cache key name the CPU alike."""
    assert env.cpu_model is platform.cpu_model and auto.cpu_model is platform.cpu_model
    assert platform.cpu_model().strip() == platform.cpu_model() != ""
