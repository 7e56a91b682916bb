"""Thin TensorRT engine builder: verified ONNX -> plan + JSON sidecar.

Written against the documented TensorRT 10/11 Python API.  Strongly typed
networks (precision comes from the ONNX: an fp16 ONNX gives an fp16 engine)
are preferred; TensorRT 10's weak-typing builder flags (FP16/INT8) are the
fallback where the requested precision differs from the ONNX, and the path
used for DLA on TensorRT 10 (JetPack 6), which does not take strongly typed
networks there.  TensorRT 11 removed those flags, so there the ONNX must
already hold the wanted precision.  INT8 means a TensorRT-flavoured Q/DQ ONNX
(signed int8, zero points 0); the ONNX Runtime CPU flavour (U8S8) is refused
here, whoever calls, and builder-side calibration is not offered.

No GPU runs here: build_engine runs in CI against a recording fake of
``tensorrt`` and cuda-python (tests/fakes), checked against the real bindings
(tests/real_bindings) and tensorrt-stubs; ``segdoctor`` proves it on a device.
A TensorRT or CUDA that cannot initialise (the real bindings raise TypeError,
cuda-python 12.3-12.8 RuntimeError) is a BackendUnavailableError here.
``import tensorrt`` happens inside functions so this module imports anywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segedge.export.precision import modes as precision_modes
from segedge.export.tensorrt.profiles import HW, has_dynamic_input, profile_shapes
from segedge.export.tensorrt.qdq import quantization_refusal
from segedge.runtime.backends.cuda import cuda_run, gpu_identity, import_cudart
from segedge.runtime.backends.tensorrt import THROUGHPUT_SLOTS, tensorrt_available, trt_object
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, ExportError, InputError
from segedge.runtime.io import write_bytes_atomic
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata, Precision
from segedge.runtime.precisions import precision, precisions
from segedge.runtime.sidecar import (
    EngineSidecar,
    ProfileShapes,
    engine_cache_key,
    is_stale,
    read_sidecar,
    sha256_file,
    sidecar_path,
    write_sidecar,
)

if TYPE_CHECKING:
    import tensorrt as trt

__all__ = ["BuildResult", "EngineConfig", "TypingPlan", "build_engine", "plan_typing",
           "profile_shapes", "quantization_refusal", "read_onnx_metadata",
           "tensorrt_available"]


@dataclass(frozen=True)
class EngineConfig:
    """How to build; ``precision=None`` keeps what the ONNX holds."""

    precision: Precision | None = None
    min_hw: HW | None = None  # (H, W); None for a static-size ONNX
    opt_hw: HW | None = None
    max_hw: HW | None = None
    batch: int | tuple[int, int, int] | None = None  # None: the ONNX's static batch, else 1
    workspace: int | None = None  # bytes for MemoryPoolType.WORKSPACE; None: TensorRT default
    timing_cache: Path | None = None  # loaded before, saved after every build
    dla_core: int | None = None
    gpu_fallback: bool = True  # DLA: let unsupported layers run on the GPU
    strongly_typed: bool | None = None  # None: automatic; True: require; False: builder flags
    optimization_level: int | None = None  # builder_optimization_level 0..5
    # Identical profiles for a dynamic plan, one per runtime throughput slot (TensorRT: one
    # context at a time per profile); each costs build time and plan size.  Static: TensorRT's
    # one default profile.
    dynamic_profiles: int = THROUGHPUT_SLOTS
    device_id: int = 0
    verbose: bool = False

    def __post_init__(self) -> None:
        known = precision_modes.names()  # read now: a mode may be registered after import
        if self.precision is not None and self.precision not in known:
            raise InputError("precision", " or ".join(known), repr(self.precision))
        if self.workspace is not None and self.workspace <= 0:
            raise InputError("workspace", "a positive number of bytes", self.workspace)
        if self.dla_core is not None and self.dla_core < 0:
            raise InputError("dla_core", "a DLA core index >= 0", self.dla_core)
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise InputError("optimization_level", "0..5", self.optimization_level)
        if not isinstance(self.dynamic_profiles, int) or self.dynamic_profiles < 1:
            raise InputError("dynamic_profiles", "an int >= 1", self.dynamic_profiles)
        if self.batch is not None:
            batches = (self.batch,) * 3 if isinstance(self.batch, int) else tuple(self.batch)
            if len(batches) != 3 or any(not isinstance(b, int) or b <= 0 for b in batches) or \
                    not batches[0] <= batches[1] <= batches[2]:
                raise InputError("batch", "a positive int or (min, opt, max) ascending",
                                 self.batch)

    def settings(self, dynamic: bool = True) -> dict[str, Any]:
        """The build choices besides precision and profile that change the plan; the profile
        count only for a plan with a dynamic input (a static plan has TensorRT's one default
        profile whatever ``dynamic_profiles`` says: a change must not rebuild it)."""
        return {"workspace": self.workspace, "optimization_level": self.optimization_level,
                "dla_core": self.dla_core,
                "dynamic_profiles": self.dynamic_profiles if dynamic else None,
                "gpu_fallback": self.gpu_fallback if self.dla_core is not None else None}


@dataclass(frozen=True)
class TypingPlan:
    """How precision reaches TensorRT: strongly typed network, or weak-typing builder flags."""

    strongly_typed: bool
    flags: tuple[str, ...]  # BuilderFlag member names
    precision: Precision


def plan_typing(onnx_precision: Precision, engine_precision: Precision | None, *,
                strongly_typed_available: bool, weak_flags_available: bool, dla: bool,
                prefer_strong: bool | None = None) -> TypingPlan:
    """Choose strong typing or builder flags; refuse combinations TensorRT cannot build."""
    target: Precision = engine_precision or onnx_precision
    # every rule asks the precisions' descriptors (runtime.precisions), never their names
    want, have = precision(target), precision(onnx_precision)
    if want.quantized and not have.quantized:
        raise ExportError(f"{target.upper()} engine: expected a Q/DQ-quantized ONNX (export "
                          f"with precision {target}), got a {onnx_precision} ONNX; builder "
                          "calibration is not offered")
    if have.quantized and not want.quantized:
        raise ExportError(f"{target} engine: expected a float ONNX, got a Q/DQ "
                          f"({onnx_precision}) ONNX")
    if dla and not want.dla:
        on_dla = " or ".join(p.name for p in precisions() if p.dla and p.artifact)
        raise InputError("precision for DLA", f"{on_dla} (DLA has no {target.upper()} kernels)",
                         target)
    strong_fits = target == onnx_precision and strongly_typed_available
    if prefer_strong is True:
        if not strong_fits:
            raise ExportError(
                f"strongly typed build: expected a {target} ONNX and a TensorRT with "
                f"STRONGLY_TYPED, got a {onnx_precision} ONNX"
                + ("" if strongly_typed_available else " and no STRONGLY_TYPED flag"))
        return TypingPlan(True, (), target)
    if strong_fits and prefer_strong is None and not (dla and weak_flags_available):
        return TypingPlan(True, (), target)
    if not weak_flags_available:
        raise ExportError(f"this TensorRT builds only strongly typed networks: expected an ONNX "
                          f"already in {target}, got a {onnx_precision} ONNX; export it in "
                          f"{target} first")
    if want.bits > have.bits:  # an engine never widens the ONNX it is built from
        raise ExportError(f"{target} engine: expected an {target} ONNX, got an "
                          f"{onnx_precision} ONNX")
    # runtime/precisions owns the weak-typing flags; the mode reads them (one table, not two)
    return TypingPlan(False, precision_modes.get(target).tensorrt_flags(dla), target)


@dataclass(frozen=True)
class BuildResult:
    plan: Path
    sidecar: EngineSidecar
    reused: bool  # an up-to-date plan with the same cache key was already there
    warnings: tuple[str, ...] = ()


def read_onnx_metadata(path: Path) -> ArtifactMetadata:
    from segedge.export.onnx.tools import read_metadata

    meta = read_metadata(path)
    if meta is not None:
        return meta
    raise ArtifactError(f"{path}: expected segedge metadata (metadata_props key "
                        f"{METADATA_KEY!r}), got none; pass meta= for a foreign ONNX")


def _dynamic_inputs(
    network: trt.INetworkDefinition, shapes: ProfileShapes, onnx_path: Path
) -> bool:
    """Check the parsed network's inputs against the profile; True if any dim is dynamic."""
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(int(tensor.shape[j]) for j in range(len(tensor.shape)))
        if tensor.name not in shapes:
            raise ArtifactError(f"{onnx_path}: expected inputs {sorted(shapes)}, got "
                                f"network input {tensor.name!r}")
        low, _, high = shapes[tensor.name]
        if len(dims) != len(low) or any(d >= 0 and not lo == d == hi
                                         for d, lo, hi in zip(dims, low, high, strict=False)):
            raise InputError(f"profile for {tensor.name!r}", f"shapes matching {dims}",
                             f"{low}..{high}")
        dynamic = dynamic or any(d < 0 for d in dims)
    return dynamic


def _configure_dla(trt_mod: Any, builder: trt.Builder, network: trt.INetworkDefinition,
                   bconfig: trt.IBuilderConfig, config: EngineConfig) -> tuple[str, ...]:
    """Put the network on a DLA core; return the layers that will fall back to the GPU."""
    core, cores = int(config.dla_core or 0), int(builder.num_DLA_cores)
    if core >= cores:
        raise BackendUnavailableError(f"dla_core: expected an index below {cores} (the DLA "
                                      f"cores this device has), got {core}")
    bconfig.default_device_type = trt_mod.DeviceType.DLA
    bconfig.DLA_core = core
    fallback = tuple(network.get_layer(i).name for i in range(network.num_layers)
                     if not bconfig.can_run_on_DLA(network.get_layer(i)))
    if fallback and not config.gpu_fallback:
        raise ExportError(f"{len(fallback)} layer(s) cannot run on DLA and GPU fallback is off: "
                          f"{', '.join(fallback[:5])}{' ...' if len(fallback) > 5 else ''}")
    if config.gpu_fallback:
        bconfig.set_flag(trt_mod.BuilderFlag.GPU_FALLBACK)
    return fallback


def _load_timing_cache(bconfig: trt.IBuilderConfig, path: Path) -> str | None:
    """Attach the timing cache at ``path`` (or a fresh one); a warning if it did not fit."""
    blob = path.read_bytes() if path.is_file() else b""
    try:
        cache = bconfig.create_timing_cache(blob)
        if cache is not None and bconfig.set_timing_cache(cache, False):
            return None
    except Exception as err:  # noqa: BLE001 - a bad cache only costs build time
        reason = f"unreadable ({' '.join(str(err).split())})"
    else:
        reason = "built for another TensorRT/GPU"
    bconfig.set_timing_cache(bconfig.create_timing_cache(b""), False)
    return f"timing cache {path} is {reason}; starting a fresh one"


def _weak_flags(trt: Any) -> bool:
    """TensorRT 8/10 type networks weakly unless told; TensorRT 11 removed those flags."""
    return hasattr(trt.BuilderFlag, "FP16")


def _strong_bit(trt: Any) -> int:
    """create_network flags for a strongly typed network: TensorRT 10's STRONGLY_TYPED bit;
    0 on TensorRT 11, where every network is strongly typed and the member, where it is
    still there (11.4: value 0), is deprecated and ignored."""
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if _weak_flags(trt) else 0


def _typing(trt: Any, meta: ArtifactMetadata, config: EngineConfig) -> TypingPlan:
    weak = _weak_flags(trt)
    return plan_typing(
        meta.precision, config.precision,
        strongly_typed_available=not weak or hasattr(trt.NetworkDefinitionCreationFlag,
                                                     "STRONGLY_TYPED"),
        weak_flags_available=weak,
        dla=config.dla_core is not None, prefer_strong=config.strongly_typed)


def _reusable(plan_path: Path, key: str, onnx_sha: str, trt_version: str, gpu: tuple[str, str]
              ) -> EngineSidecar | None:
    """The sidecar of an up-to-date plan built from the same key, or None."""
    if not (plan_path.is_file() and sidecar_path(plan_path).is_file()):
        return None
    try:
        old = read_sidecar(plan_path)
    except ArtifactError:
        return None
    if old.cache_key != key or is_stale(old, onnx_sha, trt_version, *gpu) is not None:
        return None
    return old


def build_engine(onnx_path: str | Path, plan_path: str | Path,
                 config: EngineConfig | None = None, meta: ArtifactMetadata | None = None,
                 *, force: bool = False) -> BuildResult:
    """Build (or reuse) ``plan_path`` + sidecar from a segedge ONNX."""
    onnx_path, plan_path, config = Path(onnx_path), Path(plan_path), config or EngineConfig()
    if not onnx_path.is_file():
        raise ArtifactError(f"{onnx_path}: expected an ONNX file, got no such file")
    ok, why = tensorrt_available(config.device_id)
    if not ok:
        raise BackendUnavailableError(f"cannot build a TensorRT engine: {why}")
    import tensorrt as trt

    meta = meta or read_onnx_metadata(onnx_path)
    refusal = quantization_refusal(onnx_path, meta)
    if refusal is not None:
        raise ExportError(f"{onnx_path}: no TensorRT engine: {refusal}")
    shapes = profile_shapes(meta, config.min_hw, config.opt_hw, config.max_hw, config.batch)
    tplan = _typing(trt, meta, config)
    cuda_run(import_cudart().cudaSetDevice, config.device_id,
             what=f"cudaSetDevice({config.device_id})")
    gpu_name, gpu_cc = gpu_identity(config.device_id)
    onnx_sha = sha256_file(onnx_path)
    settings = {**config.settings(has_dynamic_input(meta, shapes)),
                "strongly_typed": tplan.strongly_typed,
                "builder_flags": list(tplan.flags)}
    key = engine_cache_key(onnx_sha, trt.__version__, gpu_cc, tplan.precision, shapes, settings)
    old = None if force else _reusable(plan_path, key, onnx_sha, trt.__version__,
                                       (gpu_name, gpu_cc))
    if old is not None:
        return BuildResult(plan_path, old, reused=True)

    logger = trt.Logger(trt.Logger.VERBOSE if config.verbose else trt.Logger.WARNING)
    builder = trt_object(trt.Builder, logger, what="Builder")  # TypeError on no CUDA
    flags = _strong_bit(trt) if tplan.strongly_typed else 0  # TensorRT 8 has no such member
    network = trt_object(builder.create_network, flags, what="network definition")
    parser = trt_object(trt.OnnxParser, network, logger, what="OnnxParser")
    if not parser.parse_from_file(str(onnx_path)):
        errors = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: "
                          f"{'; '.join(errors[:3]) or 'no detail'} (run the TensorRT lint)")
    dynamic = _dynamic_inputs(network, shapes, onnx_path)

    bconfig = builder.create_builder_config()
    if config.workspace is not None:
        bconfig.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace)
    if config.optimization_level is not None:
        bconfig.builder_optimization_level = config.optimization_level
    for flag in tplan.flags:
        bconfig.set_flag(getattr(trt.BuilderFlag, flag))
    for _ in range(config.dynamic_profiles if dynamic else 0):  # one per runtime slot
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in shapes.items():
            profile.set_shape(name, trt.Dims(list(low)), trt.Dims(list(opt)), trt.Dims(list(high)))
        bconfig.add_optimization_profile(profile)
    profiles = max(1, int(bconfig.num_optimization_profiles))  # static: the default one
    fallback: tuple[str, ...] = ()
    if config.dla_core is not None:
        fallback = _configure_dla(trt, builder, network, bconfig, config)
    warnings: list[str] = []
    if config.timing_cache is not None:
        warning = _load_timing_cache(bconfig, config.timing_cache)
        warnings += [warning] if warning else []

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, bconfig)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT build failed (see the TensorRT log: workspace, "
                          "precision or an unsupported layer)")
    if config.timing_cache is not None:
        write_bytes_atomic(config.timing_cache,
                           bytes(memoryview(bconfig.get_timing_cache().serialize())))

    sidecar_path(plan_path).unlink(missing_ok=True)  # a plan never pairs with a stale sidecar
    write_bytes_atomic(plan_path, memoryview(serialized))  # 0644: a service account reads it
    sidecar = EngineSidecar(
        plan_sha256=sha256_file(plan_path), onnx_sha256=onnx_sha,
        segedge=json.loads(meta.with_changes(precision=tplan.precision).to_json()),
        tensorrt_version=trt.__version__, gpu_name=gpu_name, compute_capability=gpu_cc,
        precision=tplan.precision, profile=shapes, build_time_s=round(seconds, 3),
        built_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        strongly_typed=tplan.strongly_typed, builder_flags=tplan.flags,
        dla_core=config.dla_core, dla_fallback_layers=fallback, cache_key=key,
        extra={"build": settings, "optimization_profiles": profiles})
    write_sidecar(plan_path, sidecar)
    return BuildResult(plan_path, sidecar, reused=False, warnings=tuple(warnings))
