"""What machine this is: NVIDIA GPUs, a Jetson's L4T/JetPack/board/power mode, the CPU model.

One implementation for everything that asks: ``segdoctor`` (is there a GPU at all, the
platform report), segbench (the machine written into every results file) and the auto
chooser (its cache is keyed by the CPU model).  Every probe answers or says why not; none
raises and none changes anything.  GPUs are found three ways, because each misses some
machines: CUDA itself (cuda-python; what segedge will really use), ``nvidia-smi`` (a driver
whose CUDA Python cannot load), and a Jetson's Tegra release file (Jetson has no
``nvidia-smi --query-gpu``).
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from segedge.runtime.backends.cuda import GpuInfo, device_count, gpu_info, import_cudart, one_line

ROOT = Path("/")  # where /etc/nv_tegra_release and /proc/device-tree are read (tests move it)
# L4T major release -> JetPack major (NVIDIA's Jetson Linux release notes).
JETPACK_OF_L4T = {32: "4", 35: "5", 36: "6", 38: "7"}
GPU_QUERY = ("name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,"
             "power.limit,pstate")
# CPU features that decide which CPU runtime and precision win (bf16, int8 dot products).
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                "amx_bf16", "amx_int8", "amx_fp16", "asimd", "asimddp", "bf16", "i8mm")

GpuRows = list[dict[str, str]]


def run_command(cmd: list[str], timeout: float = 10.0) -> str | None:
    """stdout of a tool that may be absent or fail (nvidia-smi, nvpmodel): None then."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# -- Jetson -----------------------------------------------------------------------------------

def tegra_release(root: Path | None = None) -> str | None:
    """The first line of /etc/nv_tegra_release ('' for an empty file); None off a Jetson."""
    release = (ROOT if root is None else root) / "etc" / "nv_tegra_release"
    if not release.is_file():
        return None
    try:
        lines = release.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return lines[0].strip() if lines else ""


def board_model(root: Path | None = None) -> str | None:
    """The board's name from the device tree ('NVIDIA Jetson Orin NX'), None where unreadable."""
    try:
        return ((ROOT if root is None else root) / "proc" / "device-tree" / "model"
                ).read_text().strip("\0 \n")
    except OSError:
        return None


def jetson(root: Path | None = None) -> dict[str, str]:
    """L4T release line and version, the JetPack it belongs to, board model and nvpmodel power
    mode; empty off a Jetson."""
    first = tegra_release(root)
    if first is None:
        return {}
    out = {"release_file": first}
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", first)
    if found:
        major = int(found.group(1))
        out["l4t"] = f"{major}.{found.group(2)}"
        out["jetpack"] = JETPACK_OF_L4T.get(major, "unknown")
    model = board_model(root)
    if model is not None:
        out["model"] = model
    mode = run_command(["nvpmodel", "-q"])
    if mode:
        out["power_mode"] = " ".join(mode.split())
    return out


# -- GPUs -------------------------------------------------------------------------------------

def cuda_devices() -> tuple[list[GpuInfo], str | None]:
    """The devices CUDA reports, and why none where it raised (None: it answered, maybe 0)."""
    try:
        cudart = import_cudart()
        count = device_count(cudart)
        return [gpu_info(i, cudart) for i in range(count)], None
    except Exception as err:  # noqa: BLE001 - no cuda-python, no driver, a binding's own error
        return [], one_line(err)


def cuda_gpus() -> GpuRows:
    """Devices as CUDA reports them (works on Jetson, where nvidia-smi cannot query)."""
    return [{"name": i.name, "compute_capability": i.compute_capability,
             "memory.total": f"{i.total_memory // 2**20} MiB",
             "integrated": "yes" if i.integrated else "no", "source": "cuda"}
            for i in cuda_devices()[0]]


def nvidia_smi_gpus() -> GpuRows:
    """The GPUs nvidia-smi lists, with driver, memory, clocks and power limit."""
    text = run_command(["nvidia-smi", f"--query-gpu={GPU_QUERY}", "--format=csv,noheader"],
                       timeout=5.0)
    if not text:
        return []
    keys = GPU_QUERY.split(",")
    return [{**dict(zip(keys, (v.strip() for v in line.split(",")), strict=False)),
             "source": "nvidia-smi"} for line in text.splitlines() if line.strip()]


def tegra_gpus(root: Path | None = None) -> GpuRows:
    """A Jetson's integrated GPU, known from its Tegra release file without any library."""
    if tegra_release(root) is None:
        return []
    model = board_model(root) or "NVIDIA Jetson"
    return [{"name": f"{model} (integrated GPU)", "integrated": "yes", "source": "tegra"}]


GpuProbe = Callable[[], GpuRows]
# Richest first: nvidia-smi adds the driver, clocks and power limit to what CUDA says.
GPU_PROBES: tuple[GpuProbe, ...] = (nvidia_smi_gpus, cuda_gpus, tegra_gpus)


def gpus(probes: tuple[GpuProbe, ...] | None = None) -> GpuRows:
    """The GPUs here, from the first probe that finds any (nvidia-smi, CUDA, Tegra)."""
    for probe in probes if probes is not None else GPU_PROBES:
        found = probe()
        if found:
            return found
    return []


def find_gpu(root: Path | None = None) -> tuple[bool, str]:
    """(an NVIDIA GPU is here, how it was found or why none was).  CUDA is asked first (what
    segedge will use); the others find a GPU whose CUDA Python cannot load, which is then a
    problem to fix rather than a CPU-only machine."""
    devices, error = cuda_devices()
    if devices:
        return True, f"{len(devices)} CUDA device(s)"
    cuda = error or "CUDA reports 0 devices"
    if nvidia_smi_gpus():
        return True, "nvidia-smi lists a GPU (CUDA cannot use it from Python: " + cuda + ")"
    if tegra_release(root) is not None:
        return True, "a Jetson (L4T release file; CUDA from Python: " + cuda + ")"
    return False, f"no CUDA device ({cuda}), no nvidia-smi GPU, not a Jetson"


def gpu_memory_mib(pid: int) -> float | None:
    """GPU memory a process holds now (nvidia-smi), or None where that cannot be read."""
    text = run_command(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                        "--format=csv,noheader,nounits"], timeout=5.0)
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


# -- CPU --------------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the machine a timing belongs to)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


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
