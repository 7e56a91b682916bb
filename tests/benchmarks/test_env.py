"""The environment snapshot, the idle measurement and the quiet-gap wait (with a fake clock),
and where GPUs are found (nvidia-smi, CUDA, a Jetson's release file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from segedge.benchmarks import env
from segedge.runtime import platform
from tests.fakes.cuda_fake import ORIN
from tests.fakes.gpu import FakeGpu, fake_gpu  # noqa: F401 - the fixture


def test_environment_names_the_machine() -> None:
    snap = env.environment(threads=2)
    assert snap["threads"] == 2
    assert snap["cpu"]["logical_cores"] >= 1 and snap["cpu"]["model"]
    assert snap["libraries"]["onnxruntime"] not in ("", "absent")
    assert "CPUExecutionProvider" in snap["onnxruntime_providers"]
    assert isinstance(snap["gpus"], list)
    done = env.finish(snap, 12.34)
    assert done["wall_s"] == 12.3 and "load_average_end" in done


def _stat_lines(*samples: tuple[int, int, int, int, int]) -> Callable[[], str]:
    lines = iter(f"cpu  {u} {n} {s} {i} {w} 0 0 0 0 0" for u, n, s, i, w in samples)
    return lambda: next(lines)


def test_idle_share_is_computed_from_two_proc_stat_samples() -> None:
    slept: list[float] = []
    # 400 jiffies pass, 300 of them idle (idle + iowait)
    read = _stat_lines((100, 0, 100, 800, 0), (150, 0, 150, 1050, 50))
    assert env.cpu_idle_fraction(0.2, read=read, sleep=slept.append) == 0.75
    assert slept == [0.2]
    assert env.cpu_idle_fraction(0.1, read=_stat_lines((1, 0, 1, 8, 0), (1, 0, 1, 8, 0)),
                                 sleep=slept.append) is None  # no time passed
    assert env.cpu_idle_fraction(0.1, read=lambda: "cpu x", sleep=slept.append) is None


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="no /proc/stat (not Linux)")
def test_idle_share_on_this_machine_is_a_fraction() -> None:
    idle = env.cpu_idle_fraction(0.05)
    assert idle is not None and 0.0 <= idle <= 1.0


class _Clock:
    """A sampler that takes exactly one window of fake time per sample."""

    def __init__(self, idles: list[float | None]) -> None:
        self.now, self.idles, self.samples = 100.0, list(idles), 0

    def __call__(self) -> float:
        return self.now

    def sample(self, window: float) -> float | None:
        self.now += window
        self.samples += 1
        return self.idles.pop(0) if self.idles else 0.1


def test_wait_for_idle_stops_at_the_first_quiet_window() -> None:
    clock = _Clock([0.2, 0.95, 0.1])
    assert env.wait_for_idle(0.9, 10.0, sample=clock.sample, clock=clock) == (0.95, 1.0)
    assert clock.samples == 2


def test_wait_for_idle_gives_up_within_the_budget() -> None:
    clock = _Clock([])  # never quiet enough
    assert env.wait_for_idle(0.9, 2.5, sample=clock.sample, clock=clock) == (0.1, 2.5)
    assert clock.samples == 5  # 5 windows of 0.5 s: a sixth would pass the budget


def test_wait_for_idle_stops_when_idle_cannot_be_read() -> None:
    clock = _Clock([None])
    assert env.wait_for_idle(0.9, 10.0, sample=clock.sample, clock=clock) == (None, 0.5)


# -- GPUs -------------------------------------------------------------------------------------

def test_gpus_come_from_the_first_probe_that_finds_one() -> None:
    def smi() -> list[dict[str, str]]:
        return [{"name": "RTX", "source": "nvidia-smi"}]

    def none() -> list[dict[str, str]]:
        return []

    def fail() -> list[dict[str, str]]:
        raise AssertionError("asked after a probe found GPUs")

    assert env.gpus((smi, fail)) == [{"name": "RTX", "source": "nvidia-smi"}]
    assert env.gpus((none, smi)) == [{"name": "RTX", "source": "nvidia-smi"}]
    assert env.gpus((none, none)) == []


def test_jetson_gpu_is_found_without_nvidia_smi(
        fake_gpu: Callable[..., FakeGpu], monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    fake_gpu(devices=(ORIN,))
    monkeypatch.setattr(platform, "run_command", lambda cmd, timeout=5.0: None)  # no nvidia-smi
    assert env.gpus() == [{"name": "Orin", "compute_capability": "8.7",
                           "memory.total": "32768 MiB", "integrated": "yes", "source": "cuda"}]


def test_tegra_release_file_names_a_jetson(tmp_path: Path) -> None:
    assert platform.tegra_gpus(tmp_path) == []
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_text("NVIDIA Jetson AGX Orin\0")
    assert platform.tegra_gpus(tmp_path) == [{"name": "NVIDIA Jetson AGX Orin (integrated GPU)",
                                          "integrated": "yes", "source": "tegra"}]
    assert env.jetson(tmp_path)["l4t"] == "# R36 (release), REVISION: 4.3"
