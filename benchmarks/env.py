"""The machine a table was measured on: numbers without it cannot be compared.

Everything is read without side effects and without failing: a probe that
cannot answer (no nvidia-smi, no /proc) leaves its field out.  GPUs, the Jetson
and the CPU model are found by runtime.platform (the one discovery segdoctor and
the auto chooser use too): nvidia-smi, else CUDA itself, else a Jetson's Tegra
release file.
"""

from __future__ import annotations

import importlib
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from segedge.runtime.platform import (  # noqa: F401 - re-exported: segbench's machine facts
    CPU_FEATURES,
    cpu_features,
    cpu_model,
    gpu_memory_mib,
    gpus,
)
from segedge.runtime.platform import jetson as platform_jetson

LIBRARIES = ("segedge", "numpy", "cv2", "onnxruntime", "openvino", "onnx", "torch",
             "torchvision", "tensorrt", "matplotlib", "psutil")
IDLE_WINDOW_S = 0.5


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


def jetson(root: Path | None = None) -> dict[str, str]:
    """The Jetson a results file was measured on (runtime.platform.jetson); empty elsewhere.
    Results files keep their ``l4t`` field as the whole release line, as they always did."""
    info = platform_jetson(root)
    if not info:
        return {}
    return {"l4t": info["release_file"],
            **{k: info[k] for k in ("jetpack", "model", "power_mode") if k in info}}


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
