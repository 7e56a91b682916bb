"""What this machine is: JetPack/L4T, GPU, driver, CUDA, cuDNN, TensorRT, ONNX Runtime,
OpenVINO, DLA cores, power mode.  Every probe answers or says why not; none raises."""

from __future__ import annotations

import ctypes
import platform
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from segedge.runtime.backends.cuda import (
    device_count,
    gpu_info,
    import_cudart,
    one_line,
    versions,
)
from segedge.runtime.backends.tensorrt import tensorrt_available

# L4T major release -> JetPack major (NVIDIA's Jetson Linux release notes).
JETPACK_OF_L4T = {32: "4", 35: "5", 36: "6", 38: "7"}
CUDNN_LIBRARIES = ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so")
ROOT = Path("/")  # where /etc/nv_tegra_release and /proc/device-tree are read (tests move it)


def run_command(cmd: list[str], timeout: float = 10.0) -> str | None:
    """stdout of a tool that may be absent or fail (nvidia-smi, nvpmodel): None then."""
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def find_gpu(root: Path | None = None) -> tuple[bool, str]:
    """(an NVIDIA GPU is here, how it was found or why none was): CUDA, nvidia-smi, Tegra."""
    root = ROOT if root is None else root
    try:
        count = device_count(import_cudart())
        if count:
            return True, f"{count} CUDA device(s)"
        cuda = "CUDA reports 0 devices"
    except Exception as err:  # noqa: BLE001 - no cuda-python, no driver: try the others
        cuda = one_line(err)
    listed = run_command(["nvidia-smi", "-L"])
    if listed and any(line.startswith("GPU ") for line in listed.splitlines()):
        return True, "nvidia-smi lists a GPU (CUDA cannot use it from Python: " + cuda + ")"
    if (root / "etc" / "nv_tegra_release").is_file():
        return True, "a Jetson (L4T release file; CUDA from Python: " + cuda + ")"
    return False, f"no CUDA device ({cuda}), no nvidia-smi GPU, not a Jetson"


def jetson(root: Path | None = None) -> dict[str, str]:
    """L4T release, the JetPack it belongs to, board model and nvpmodel power mode."""
    root = ROOT if root is None else root
    release = root / "etc" / "nv_tegra_release"
    if not release.is_file():
        return {}
    first = release.read_text(errors="replace").splitlines()[0] if release.stat().st_size else ""
    out = {"release_file": first.strip()}
    found = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", first)
    if found:
        major = int(found.group(1))
        out["l4t"] = f"{major}.{found.group(2)}"
        out["jetpack"] = JETPACK_OF_L4T.get(major, "unknown")
    try:
        out["model"] = (root / "proc" / "device-tree" / "model").read_text().strip("\0 \n")
    except OSError:
        pass
    mode = run_command(["nvpmodel", "-q"])
    if mode:
        out["power_mode"] = " ".join(mode.split())
    return out


def cudnn_version() -> str | None:
    """cuDNN's version from the library itself (cudnnGetVersion), or None where none loads."""
    for name in CUDNN_LIBRARIES:
        try:
            value = int(ctypes.CDLL(name).cudnnGetVersion())
        except (OSError, AttributeError):
            continue
        if value >= 90000:  # cuDNN 9: major*10000 + minor*100 + patch
            return f"{value // 10000}.{value % 10000 // 100}.{value % 100}"
        return f"{value // 1000}.{value % 1000 // 100}.{value % 100}"
    return None


def gpus() -> list[dict[str, Any]]:
    try:
        cudart = import_cudart()
        return [{"device": i, **asdict(gpu_info(i, cudart))}
                for i in range(device_count(cudart))]
    except Exception as err:  # noqa: BLE001
        return [{"error": one_line(err)}]


def tensorrt_info(device_id: int = 0) -> dict[str, Any]:
    ok, why = tensorrt_available(device_id)
    info: dict[str, Any] = {"usable": ok, "detail": why}
    if not ok:
        return info
    import tensorrt as trt

    info["version"] = trt.__version__
    try:
        info["dla_cores"] = int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)
    except Exception as err:  # noqa: BLE001
        info["dla_cores_error"] = one_line(err)
    return info


def onnxruntime_info() -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except Exception as err:  # noqa: BLE001
        return {"error": one_line(err)}
    return {"version": ort.__version__, "available_providers": ort.get_available_providers()}


def openvino_info() -> dict[str, Any] | None:
    """OpenVINO's version and devices where it is installed; None where it is not."""
    try:
        import openvino as ov
    except ImportError:
        return None
    except Exception as err:  # noqa: BLE001
        return {"error": one_line(err)}
    info: dict[str, Any] = {"version": getattr(ov, "__version__", "unknown")}
    try:
        from segedge.runtime.backends.openvino import shared_core

        info["devices"] = list(shared_core().available_devices)
    except Exception as err:  # noqa: BLE001
        info["devices_error"] = one_line(err)
    return info


def platform_report(device_id: int = 0, root: Path | None = None) -> dict[str, Any]:
    from segedge.runtime import __version__

    cuda: dict[str, Any]
    try:
        cuda = versions(import_cudart())
    except Exception as err:  # noqa: BLE001
        cuda = {"error": one_line(err)}
    return {
        "segedge": __version__, "host": platform.node(), "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "jetson": jetson(root), "gpus": gpus(), "cuda": cuda, "cudnn": cudnn_version(),
        "tensorrt": tensorrt_info(device_id), "onnxruntime": onnxruntime_info(),
        "openvino": openvino_info(),
    }
