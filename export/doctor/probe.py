"""What this machine is: JetPack/L4T, GPU, driver, CUDA, cuDNN, TensorRT, ONNX Runtime,
OpenVINO, DLA cores, power mode.  Every probe answers or says why not; none raises.

GPUs and the Jetson are found by runtime.platform (segbench asks it too); the libraries'
versions and availability come from the backend descriptors (runtime.backends.base).
"""

from __future__ import annotations

import ctypes
import platform
from dataclasses import asdict
from pathlib import Path
from typing import Any

from segedge.runtime.backends.base import descriptor
from segedge.runtime.backends.cuda import import_cudart, one_line, versions
from segedge.runtime.backends.tensorrt import tensorrt_available
from segedge.runtime.platform import cuda_devices, jetson

CUDNN_LIBRARIES = ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so")


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
    """Every CUDA device with what CUDA says of it, or the one error that stopped CUDA."""
    devices, error = cuda_devices()
    if error is not None:
        return [{"error": error}]
    return [{"device": i, **asdict(info)} for i, info in enumerate(devices)]


def dla_core_count() -> int:
    """DLA cores TensorRT's builder sees (Jetson AGX/NX Orin: 2); raises what the bindings raise."""
    import tensorrt as trt

    return int(trt.Builder(trt.Logger(trt.Logger.ERROR)).num_DLA_cores)


def tensorrt_info(device_id: int = 0) -> dict[str, Any]:
    ok, why = tensorrt_available(device_id)
    info: dict[str, Any] = {"usable": ok, "detail": why}
    if not ok:
        return info
    info["version"] = descriptor("tensorrt").version()
    try:
        info["dla_cores"] = dla_core_count()
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
