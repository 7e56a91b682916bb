"""ONNX Runtime's TensorRT provider options: an engine cache that can never serve a stale engine.

ORT's own cache key hashes the model's file name, I/O names and versions, not
its weights or static shapes, and its docs say to clear the cache whenever
the model changes.  So every artifact gets its own cache folder, named by the
sha256 of its bytes and of every option that changes the engine (precision,
profile, ORT/TensorRT versions, GPU): a re-export with new weights under the
same name, or a new ``--imgsz``, lands in a new folder and builds afresh.
Timing caches (tactic timings, valid across models) stay shared at the root.

INT8 (``trt_int8_enable``) is switched on for a Q/DQ graph, and dynamic
height/width get an optimisation profile from the options or the metadata,
so the engine is built when the session opens, not during the first frame.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from segedge.runtime.backends.base import HW, BackendOptions
from segedge.runtime.backends.onnx_peek import OnnxPeek, peek
from segedge.runtime.errors import ArtifactError
from segedge.runtime.metadata import ArtifactMetadata

log = logging.getLogger("segedge.runtime")

DEFAULT_TRT_CACHE = Path.home() / ".cache" / "segedge" / "ort_trt"
Shape = tuple[int, ...]


@functools.lru_cache(maxsize=1)
def _tensorrt_version() -> str:
    try:
        import tensorrt

        return str(getattr(tensorrt, "__version__", "none"))
    except Exception:  # noqa: BLE001 - absent or broken: the key just says so
        return "none"


@functools.lru_cache(maxsize=8)
def _gpu(device_id: int) -> str:
    try:
        from segedge.runtime.backends.cuda import gpu_info

        info = gpu_info(device_id)
        return f"{info.name} sm{info.compute_capability}"
    except Exception:  # noqa: BLE001 - no cuda-python: ORT still keys engines by GPU itself
        return "unknown"


def _metadata(found: OnnxPeek, path: Path) -> ArtifactMetadata | None:
    try:
        return ArtifactMetadata.from_props(found.metadata_props, str(path))
    except ArtifactError:
        return None


def _round(value: int, stride: int) -> int:
    return max(stride, value // stride * stride)


def profile_hw(meta: ArtifactMetadata | None, options: BackendOptions
               ) -> tuple[HW, HW, HW] | None:
    """(min, opt, max) height/width for a dynamic-size input, or None (static or unknown)."""
    if options.trt_profile is not None:
        return options.trt_profile
    if meta is None or meta.input.size is not None:
        return None
    imgsz = meta.extra.get("imgsz")
    if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2:
        return meta.input.default_profile(int(imgsz[0]), int(imgsz[1]))
    return None


def profile_shapes(meta: ArtifactMetadata, hws: tuple[HW, HW, HW]) -> tuple[Shape, Shape, Shape]:
    batch = meta.input.batch or 1
    low, opt, high = (meta.input.shape(batch, hw) for hw in hws)
    return low, opt, high


def tensorrt_options(options: BackendOptions, model: Path | None = None) -> dict[str, Any]:
    """The TensorRT provider's option dict for ``model`` (cache keyed by its content)."""
    root = Path(options.cache_dir) if options.cache_dir is not None else DEFAULT_TRT_CACHE
    found = peek(model) if model is not None else None
    meta = _metadata(found, model) if found is not None and model is not None else None
    int8 = options.int8 if options.int8 is not None else bool(found and found.has_qdq)
    trt: dict[str, Any] = {"device_id": options.device_id,
                           "trt_fp16_enable": bool(options.fp16), "trt_int8_enable": int8}
    hws = profile_hw(meta, options)
    if hws is not None and meta is not None:
        low, opt, high = profile_shapes(meta, hws)
        name = meta.input.name
        for key, shape in (("min", low), ("opt", opt), ("max", high)):
            trt[f"trt_profile_{key}_shapes"] = f"{name}:{'x'.join(str(d) for d in shape)}"
    elif found is not None and meta is not None and meta.input.size is None:
        log.warning("%s: dynamic height/width and no TensorRT profile (metadata has no imgsz, "
                    "no trt_profile given): the engine is built during the first frame",
                    model.name if model is not None else "model")
    cache = root
    if found is not None:
        import onnxruntime

        key = json.dumps({"onnx": found.sha256, **trt, "device_id": None,
                          "onnxruntime": onnxruntime.__version__,
                          "tensorrt": _tensorrt_version(), "gpu": _gpu(options.device_id)},
                         sort_keys=True)
        cache = root / f"{found.sha256[:16]}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
               trt_timing_cache_enable=True, trt_timing_cache_path=str(root))
    return trt
