"""The JSON sidecar that travels beside a TensorRT plan (``model.plan`` -> ``model.plan.json``).

The plan stays a plain TensorRT plan (``trtexec --loadEngine`` and any other
tool still read it); everything segedge needs to use it, and to know when it
must be rebuilt, sits in the sidecar: hashes of the plan and of the ONNX it
came from, the segedge metadata, the TensorRT version and GPU it was built
for, precision and optimisation-profile shapes.  A plan is tied to its exact
TensorRT version and GPU model, so the runtime refuses a mismatch instead of
letting TensorRT fail obscurely.  Pure Python: no TensorRT, torch or onnx.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from segedge.runtime.errors import ArtifactError
from segedge.runtime.io import write_bytes_atomic
from segedge.runtime.metadata import ArtifactMetadata

SIDECAR_SCHEMA = 1
SIDECAR_SUFFIX = ".json"

Shape = tuple[int, ...]
ProfileShapes = dict[str, tuple[Shape, Shape, Shape]]


@dataclass(frozen=True)
class EngineSidecar:
    """Everything known about a plan; ``segedge`` is ArtifactMetadata as a JSON object."""

    plan_sha256: str
    onnx_sha256: str
    segedge: dict[str, Any]
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "8.7"
    precision: str
    profile: ProfileShapes
    build_time_s: float
    built_at: str = ""  # ISO 8601, UTC
    strongly_typed: bool = False
    builder_flags: tuple[str, ...] = ()
    dla_core: int | None = None
    dla_fallback_layers: tuple[str, ...] = ()
    cache_key: str = ""
    schema: int = SIDECAR_SCHEMA
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def metadata(self) -> ArtifactMetadata:
        return ArtifactMetadata.from_dict(self.segedge, source="sidecar segedge metadata")

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["profile"] = {k: [list(s) for s in v] for k, v in self.profile.items()}
        return raw

    @classmethod
    def from_dict(cls, raw: Any, source: str = "sidecar") -> EngineSidecar:
        if not isinstance(raw, dict):
            raise ArtifactError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        if raw.get("schema") != SIDECAR_SCHEMA:
            raise ArtifactError(f"{source}: expected sidecar schema {SIDECAR_SCHEMA}, "
                                f"got {raw.get('schema')!r}; rebuild the engine")
        try:
            profile = {
                str(name): tuple(tuple(int(d) for d in shape) for shape in shapes)
                for name, shapes in raw["profile"].items()
            }
            if any(len(shapes) != 3 for shapes in profile.values()):
                raise ValueError("profile entries must be [min, opt, max]")
            if not isinstance(raw["segedge"], dict):
                raise TypeError("'segedge' must be a JSON object")
            dla_core = raw.get("dla_core")
            return cls(
                plan_sha256=str(raw["plan_sha256"]),
                onnx_sha256=str(raw["onnx_sha256"]),
                segedge=dict(raw["segedge"]),
                tensorrt_version=str(raw["tensorrt_version"]),
                gpu_name=str(raw["gpu_name"]),
                compute_capability=str(raw["compute_capability"]),
                precision=str(raw["precision"]),
                profile=profile,  # type: ignore[arg-type]
                build_time_s=float(raw["build_time_s"]),
                built_at=str(raw.get("built_at", "")),
                strongly_typed=bool(raw.get("strongly_typed", False)),
                builder_flags=tuple(str(f) for f in raw.get("builder_flags", ())),
                dla_core=None if dla_core is None else int(dla_core),
                dla_fallback_layers=tuple(str(n) for n in raw.get("dla_fallback_layers", ())),
                cache_key=str(raw.get("cache_key", "")),
                schema=SIDECAR_SCHEMA,
                extra=dict(raw.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ArtifactError(f"{source}: sidecar is incomplete or malformed ({err!r}); "
                                "rebuild the engine") from err


def sidecar_path(plan: str | Path) -> Path:
    plan = Path(plan)
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
    except FileNotFoundError as err:
        raise ArtifactError(f"{path}: expected a file to hash, got no such file") from err
    return digest.hexdigest()


def write_sidecar(plan: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path(plan)
    text = json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def read_sidecar(plan: str | Path, verify: bool = True) -> EngineSidecar:
    """Load and (by default) check the sidecar against the plan's bytes."""
    plan = Path(plan)
    path = sidecar_path(plan)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ArtifactError(f"{plan}: expected sidecar {path.name} beside the plan, got no such "
                            "file; rebuild the engine with segexport") from err
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ArtifactError(f"{path}: expected JSON, got a corrupt file ({err})") from err
    sidecar = EngineSidecar.from_dict(raw, source=str(path))
    if verify:
        actual = sha256_file(plan)
        if actual != sidecar.plan_sha256:
            raise ArtifactError(f"{plan}: plan sha256 mismatch: expected {sidecar.plan_sha256} "
                                f"(from {path.name}), got {actual}; rebuild the engine")
    return sidecar


def engine_cache_key(onnx_sha: str, trt_version: str, gpu_cc: str, precision: str,
                     profile: ProfileShapes, settings: Mapping[str, Any] | None = None) -> str:
    """Stable key for 'the same engine': identical inputs build interchangeable plans.

    ``settings`` holds every other build choice that changes the plan (workspace,
    optimisation level, typing mode and builder flags, DLA core and GPU fallback):
    a plan built under other settings must never be reused for these.
    """
    canonical = json.dumps({
        "onnx": onnx_sha, "tensorrt": trt_version, "cc": gpu_cc, "precision": precision,
        "profile": {k: [list(s) for s in v] for k, v in sorted(profile.items())},
        **({"settings": dict(settings)} if settings else {}),
    }, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def is_stale(sidecar: EngineSidecar, onnx_sha: str | None, trt_version: str,
             gpu_name: str | None = None, gpu_cc: str | None = None) -> str | None:
    """Why the plan must be rebuilt for this ONNX/TensorRT/GPU, or None if it still fits.

    ``None`` arguments are not checked (the runtime has no ONNX to hash).
    """
    if onnx_sha is not None and onnx_sha != sidecar.onnx_sha256:
        return (f"source ONNX changed: expected sha256 {sidecar.onnx_sha256}, "
                f"got {onnx_sha}")
    if trt_version != sidecar.tensorrt_version:
        return (f"TensorRT version differs: plan built with {sidecar.tensorrt_version}, "
                f"running {trt_version}")
    if gpu_cc is not None and gpu_cc != sidecar.compute_capability:
        return (f"GPU compute capability differs: plan built for {sidecar.compute_capability}, "
                f"this GPU is {gpu_cc}")
    if gpu_name is not None and gpu_name != sidecar.gpu_name:
        return f"GPU differs: plan built on {sidecar.gpu_name!r}, this is {gpu_name!r}"
    return None
