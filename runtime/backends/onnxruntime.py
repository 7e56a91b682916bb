"""ONNX Runtime backend: provider choice, metadata, validation, I/O binding.

The provider list is a request; ONNX Runtime silently drops providers it
cannot use (onnxruntime-gpu lists CUDA without a GPU), so the active one is
read back from the session and a fallback is reported as a warning.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, InputError
from segedge.runtime.metadata import (
    ArtifactMetadata,
    OutputSpec,
    default_palette,
)

log = logging.getLogger("segedge.runtime")

TRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
GPU_EPS = (TRT_EP, CUDA_EP)
# What each --provider value asks for, best first; CPU always ends the list.
PROVIDER_CHOICES: dict[str, tuple[str, ...]] = {
    "auto": (TRT_EP, CUDA_EP, CPU_EP),
    "tensorrt": (TRT_EP, CUDA_EP, CPU_EP),
    "cuda": (CUDA_EP, CPU_EP),
    "cpu": (CPU_EP,),
}
_NP_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
             "tensor(uint8)": np.uint8, "tensor(double)": np.float64}
DEFAULT_FOREIGN_STRIDE = 32
DEFAULT_TRT_CACHE = Path.home() / ".cache" / "segedge" / "ort_trt"


def resolve_providers(options: BackendOptions, available: list[str]) -> list[Any]:
    """Provider list (with options) for the request; refuse a named one that is absent."""
    wanted = PROVIDER_CHOICES.get(options.provider)
    if wanted is None:
        raise InputError("provider", f"one of {', '.join(PROVIDER_CHOICES)}",
                         repr(options.provider))
    if options.provider != "auto" and wanted[0] not in available:
        raise BackendUnavailableError(
            f"provider {options.provider}: expected {wanted[0]} in this onnxruntime, got only "
            f"{', '.join(available)} (install onnxruntime-gpu for cuda/tensorrt)")
    providers: list[Any] = []
    for name in wanted:
        if name not in available:
            continue
        if name == TRT_EP:
            trt: dict[str, Any] = {"device_id": options.device_id,
                                   "trt_fp16_enable": bool(options.fp16)}
            # Building TensorRT engines takes minutes: always cache them.
            cache = Path(options.cache_dir) if options.cache_dir is not None else DEFAULT_TRT_CACHE
            cache.mkdir(parents=True, exist_ok=True)
            trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache),
                       trt_timing_cache_enable=True, trt_timing_cache_path=str(cache))
            providers.append((name, trt))
        elif name == CUDA_EP:
            providers.append((name, {"device_id": options.device_id}))
        else:
            providers.append(name)
    return providers


def _shape(arg: Any) -> list[Any]:
    return list(arg.shape) if arg.shape is not None else []


def _describe(arg: Any) -> str:
    return f"{arg.name!r} {arg.type} {_shape(arg)}"


def infer_metadata(session: Any, path: Path, hints: ArtifactMetadata | None) -> ArtifactMetadata:
    """Metadata for a foreign ONNX: shapes from the session, the rest from flags (hints)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    inp = inputs[0]
    shape = _shape(inp)
    if len(inputs) != 1 or len(shape) != 4 or inp.type not in _NP_TYPES:
        got = ", ".join(_describe(i) for i in inputs)
        raise ArtifactError(f"{path}: expected one image input [N,3,H,W] or [N,H,W,3], got {got}")
    if shape[1] == 3:
        layout, hw = "NCHW", shape[2:4]
    elif shape[3] == 3:
        layout, hw = "NHWC", shape[1:3]
    else:
        raise ArtifactError(f"{path}: expected a 3-channel image input, got {_describe(inp)}")
    size = (int(hw[0]), int(hw[1])) if all(isinstance(d, int) and d > 0 for d in hw) else None
    out = outputs[0]
    oshape = _shape(out)
    if len(oshape) == 4 and out.type in ("tensor(float)", "tensor(float16)"):
        output = OutputSpec(kind="logits", logits=out.name)
        channels = oshape[1] if isinstance(oshape[1], int) and oshape[1] > 0 else None
    elif len(oshape) == 3 and "int" in out.type:
        output = OutputSpec(kind="labels", logits=None, labels=out.name)
        channels = None
    else:
        raise ArtifactError(
            f"{path}: expected a segmentation model (output 4-D float logits [N,C,H,W] or 3-D "
            f"integer labels [N,H,W]), got output {_describe(out)}")
    if hints is None:
        log.warning("%s has no segedge metadata: assuming ImageNet mean/std and RGB input "
                    "(--mean/--std/--bgr/--classes override)", path.name)
    base = hints or ArtifactMetadata(model=path.stem, family="foreign", classes=(), palette=())
    classes = base.classes
    if not classes:
        count = channels or 256
        classes = tuple(f"class_{i}" for i in range(count))
        if channels is None:
            log.warning("%s: no segedge metadata and no --classes; labels drawn with a "
                        "generic palette", path.name)
    elif channels is not None and len(classes) != channels:
        raise InputError("--classes", f"{channels} names (the model's output channels)",
                         f"{len(classes)} names")
    palette = base.palette if len(base.palette) >= len(classes) else default_palette(len(classes))
    in_spec = replace(
        base.input, name=inp.name, layout=layout, size=size,
        format="uint8" if inp.type == "tensor(uint8)" else "float",
        batch=shape[0] if isinstance(shape[0], int) else None,
        stride=base.input.stride if base.input.stride > 1 else DEFAULT_FOREIGN_STRIDE,
        dynamic_axes=tuple(str(d) for d in shape if not isinstance(d, int)))
    return replace(base, model=base.model or path.stem, classes=classes, palette=palette,
                   input=in_spec, output=output, exporter=base.exporter or "foreign")


def output_names(meta: ArtifactMetadata) -> list[str]:
    """The graph outputs a run needs, from the metadata (instance or semantic)."""
    out = meta.output
    if out.kind == "instances":
        return [n for n in (out.boxes, out.labels, out.scores, out.masks, out.count) if n]
    return [n for n in (out.logits, out.labels, out.confidence) if n]


def check_metadata(session: Any, path: Path, meta: ArtifactMetadata) -> None:
    """The graph must really have the inputs and outputs its metadata names."""
    instance = meta.task == "instance" or meta.output.kind == "instances"
    if instance and (meta.task != "instance" or meta.output.kind != "instances"):
        raise ArtifactError(f"{path}: expected task 'instance' with 'instances' outputs, got "
                            f"task {meta.task!r} with {meta.output.kind!r} outputs")
    inputs = {i.name for i in session.get_inputs()}
    if meta.input.name not in inputs:
        raise ArtifactError(f"{path}: expected graph input {meta.input.name!r} (from metadata), "
                            f"got inputs {sorted(inputs)}")
    outputs = {o.name for o in session.get_outputs()}
    if instance:
        named = output_names(meta)
        missing = [n for n in named if n not in outputs]
        if len(named) != 5 or missing:
            raise ArtifactError(f"{path}: expected instance outputs boxes, labels, scores, "
                                f"masks, count (from metadata), got {sorted(outputs)}")
        return
    named = [n for n in (meta.output.logits, meta.output.labels, meta.output.confidence) if n]
    wanted = {"logits": meta.output.logits, "labels": meta.output.labels,
              "both": meta.output.labels}[meta.output.kind]
    missing = [n for n in named if n not in outputs]
    if not wanted or missing:
        raise ArtifactError(f"{path}: expected graph outputs {named} for kind "
                            f"{meta.output.kind!r} (from metadata), got {sorted(outputs)}")


class OnnxRuntimeBackend:
    """One InferenceSession; ``infer`` returns the outputs the metadata names."""

    name = "onnxruntime"

    def __init__(self, path: Path, options: BackendOptions, *,
                 io_binding: bool | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.inter_op_num_threads = 1
        if options.threads is not None:
            if options.threads < 1:
                raise InputError("--threads", "a positive integer", options.threads)
            so.intra_op_num_threads = options.threads
        # Idle ORT workers must not spin: decode/draw/encode threads need those cores.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        providers = resolve_providers(options, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as err:  # ORT raises its own pybind types: report them as one line
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
            raise ArtifactError(f"{self.path}: expected a loadable ONNX model, got "
                                f"{type(err).__name__}: {first}") from err
        self._active = self.session.get_providers()
        requested = [p if isinstance(p, str) else p[0] for p in providers]
        if requested[0] in GPU_EPS and self._active[0] != requested[0]:
            log.warning("provider %s was requested but onnxruntime runs %s (fell back)",
                        requested[0], self._active[0])
        found = ArtifactMetadata.from_props(self.session.get_modelmeta().custom_metadata_map,
                                            str(self.path))
        if found is not None:
            self.metadata = found
            if options.metadata is not None and options.metadata.family == "foreign":
                log.warning("%s carries segedge metadata; --mean/--std/--classes/--bgr ignored",
                            self.path.name)
        else:
            self.metadata = infer_metadata(self.session, self.path, options.metadata)
        check_metadata(self.session, self.path, self.metadata)
        self.input_name = self.metadata.input.name
        node = next(i for i in self.session.get_inputs() if i.name == self.input_name)
        self._input_dtype = _NP_TYPES.get(node.type)
        batch = _shape(node)[0] if _shape(node) else 1
        self._batch = batch if isinstance(batch, int) and batch > 1 else 1
        self.output_names = output_names(self.metadata)
        if io_binding is None:
            io_binding = self._active[0] in GPU_EPS
        self._device = "cuda" if self._active[0] in GPU_EPS else "cpu"
        self._device_id = options.device_id if self._device == "cuda" else 0
        self._binding = self.session.io_binding() if io_binding else None

    @property
    def active(self) -> str:
        return self._active[0]

    @property
    def providers(self) -> list[str]:
        return list(self._active)

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if self._input_dtype is not None and tensor.dtype != self._input_dtype:
            tensor = tensor.astype(self._input_dtype)
        n = tensor.shape[0]
        if n < self._batch:  # static batch > 1: pad, then drop the padding from the outputs
            pad = np.repeat(tensor[-1:], self._batch - n, axis=0)
            tensor = np.concatenate([tensor, pad])
        if self._binding is None:
            values = self.session.run(self.output_names, {self.input_name: tensor})
        else:
            binding = self._binding
            binding.bind_cpu_input(self.input_name, np.ascontiguousarray(tensor))
            for name in self.output_names:
                binding.bind_output(name, self._device, self._device_id)
            self.session.run_with_iobinding(binding)
            values = binding.copy_outputs_to_cpu()
            binding.clear_binding_outputs()
        return {name: value[:n] for name, value in zip(self.output_names, values, strict=True)}

    def close(self) -> None:
        self._binding = None


def create(path: Path, options: BackendOptions) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(path, options)
