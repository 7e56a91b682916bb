"""The machine a table was measured on: numbers without it cannot be compared.

Everything is read without side effects and without failing: a probe that
cannot answer (no nvidia-smi, no /proc) leaves its field out.  GPUs are found
by nvidia-smi, else by CUDA itself (cuda-python), else on a Jetson by its
Tegra release file: Jetson has no ``nvidia-smi --query-gpu``.
"""

from __future__ import annotations

import importlib
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

LIBRARIES = ("segedge", "numpy", "cv2", "onnxruntime", "openvino", "onnx", "torch",
             "torchvision", "tensorrt", "matplotlib", "psutil")
# CPU features that decide which CPU runtime and precision win (bf16, int8 dot products).
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_bf16", "amx_int8", "amx_fp16", "asimd", "asimddp", "bf16", "i8mm")
IDLE_WINDOW_S = 0.5
GPU_QUERY = ("name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,"
             "power.limit,pstate")


def load_average() -> tuple[float, float, float] | None:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return None
    return (round(one, 2), round(five, 2), round(fifteen, 2))


def _proc_stat_cpu() -> str:
    return Path("/proc/stat").read_text().split("\n", 1)[0]


def cpu_idle_fraction(interval_s: float = 1.0, *, read: Callable[[], str] = _proc_stat_cpu,
                      sleep: Callable[[float], None] = time.sleep) -> float | None:
    """Share of all CPUs that was idle over the next ``interval_s`` (from /proc/stat)."""

    def sample() -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in read().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 4:
            return None
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)

    first = sample()
    sleep(interval_s)
    second = sample()
    if first is None or second is None or second[0] <= first[0]:
        return None
    return round((second[1] - first[1]) / (second[0] - first[0]), 3)


def wait_for_idle(min_idle: float, max_wait_s: float, *,
                  sample: Callable[[float], float | None] = cpu_idle_fraction,
                  clock: Callable[[], float] = time.monotonic) -> tuple[float | None, float]:
    """Sample half-second windows until the CPUs are ``min_idle`` idle or time runs out.

    On a shared machine this starts a measurement in a quiet gap instead of in
    the middle of someone else's burst.  Returns (last idle share, seconds waited).
    """
    start = clock()
    idle = sample(IDLE_WINDOW_S)
    while idle is not None and idle < min_idle \
            and clock() - start + IDLE_WINDOW_S <= max_wait_s:
        idle = sample(IDLE_WINDOW_S)
    return idle, round(clock() - start, 1)


def cpu_model() -> str:
    """The CPU's model name (the runtime's own rule: the auto backend keys its cache by it)."""
    from segedge.runtime.backends.auto import cpu_model as runtime_cpu_model

    return runtime_cpu_model()


def cpu_features(text: str | None = None) -> list[str]:
    """Which of CPU_FEATURES /proc/cpuinfo lists (x86 'flags' or Arm 'Features')."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    found: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            found.update(value.split())
    return [f for f in CPU_FEATURES if f in found]


def library_versions() -> dict[str, str]:
    """Versions of what is importable; absent libraries are reported as absent."""
    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            if name == "segedge":
                from segedge.runtime import __version__

                out[name] = __version__
                continue
            module = importlib.import_module(name)
            version = getattr(module, "__version__", None)
            out[name] = str(version) if version else "stubs only (no library)"
        except Exception:  # noqa: BLE001 - stubs or broken installs: just say so
            out[name] = "absent"
    return out



def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    from segedge.export.doctor.probe import run_command

    return run_command(cmd, timeout)


def _nvidia_smi_gpus() -> list[dict[str, str]]:
    text = _run(["nvidia-smi", f"--query-gpu={GPU_QUERY}", "--format=csv,noheader"])
    if not text:
        return []
    keys = GPU_QUERY.split(",")
    return [{**dict(zip(keys, (v.strip() for v in line.split(",")), strict=False)),
             "source": "nvidia-smi"} for line in text.splitlines() if line.strip()]


def _cuda_gpus() -> list[dict[str, str]]:
    """Devices as CUDA reports them (works on Jetson, where nvidia-smi cannot query)."""
    try:
        from segedge.runtime.backends.cuda import device_count, gpu_info, import_cudart

        cudart = import_cudart()
        count = device_count(cudart)
        infos = [gpu_info(i, cudart) for i in range(count)]
    except Exception:  # noqa: BLE001 - no cuda-python, no driver, no device: just none
        return []
    return [{"name": i.name, "compute_capability": i.compute_capability,
             "memory.total": f"{i.total_memory // 2**20} MiB",
             "integrated": "yes" if i.integrated else "no", "source": "cuda"} for i in infos]


def _tegra_gpus(root: Path = Path("/")) -> list[dict[str, str]]:
    """A Jetson's integrated GPU, known from its Tegra release file without any library."""
    if not (root / "etc" / "nv_tegra_release").is_file():
        return []
    try:
        model = (root / "proc" / "device-tree" / "model").read_text().strip("\0 \n")
    except OSError:
        model = "NVIDIA Jetson"
    return [{"name": f"{model} (integrated GPU)", "integrated": "yes", "source": "tegra"}]


GPU_PROBES: tuple[Callable[[], list[dict[str, str]]], ...] = (_nvidia_smi_gpus, _cuda_gpus,
                                                               _tegra_gpus)


def gpus(probes: tuple[Callable[[], list[dict[str, str]]], ...] | None = None
         ) -> list[dict[str, str]]:
    """The GPUs here, from the first probe that finds any (nvidia-smi, CUDA, Tegra)."""
    for probe in probes if probes is not None else GPU_PROBES:
        found = probe()
        if found:
            return found
    return []


def gpu_memory_mib(pid: int) -> float | None:
    """GPU memory a process holds now (nvidia-smi), or None where that cannot be read."""
    text = _run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                 "--format=csv,noheader,nounits"])
    if not text:
        return None
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def jetson(root: Path = Path("/")) -> dict[str, str]:
    """L4T release and nvpmodel power mode on a Jetson; empty elsewhere."""
    out: dict[str, str] = {}
    release = root / "etc" / "nv_tegra_release"
    if release.is_file():
        out["l4t"] = release.read_text().splitlines()[0].strip()
        mode = _run(["nvpmodel", "-q"])
        if mode:
            out["power_mode"] = " ".join(mode.split())
    return out


def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"model": cpu_model(), "logical_cores": os.cpu_count(),
                            "features": cpu_features()}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        freq = psutil.cpu_freq()
        if freq is not None:
            info["freq_mhz"] = {"current": round(freq.current), "max": round(freq.max)}
        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except Exception:  # noqa: BLE001 - psutil is optional (the bench extra)
        pass
    return info


def environment(threads: int) -> dict[str, Any]:
    """One snapshot at the start of a run (call `finish` at its end for the load average)."""
    import onnxruntime

    return {
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "cpu": cpu_info(),
        "threads": threads,
        "libraries": library_versions(),
        "onnxruntime_providers": list(onnxruntime.get_available_providers()),
        "gpus": gpus(),
        "jetson": jetson(),
        "load_average_start": load_average(),
        "cpu_idle_start": cpu_idle_fraction(),
    }


def finish(env: dict[str, Any], wall_s: float) -> dict[str, Any]:
    return {**env, "load_average_end": load_average(), "cpu_idle_end": cpu_idle_fraction(),
            "wall_s": round(wall_s, 1)}
