"""What a serving engine must know about a verified segedge artifact, read once.

Triton and DeepStream both need the tensors (names, element types, shapes),
the batch rule and the segedge metadata; an ONNX gives them from its graph, a
TensorRT plan from its sidecar (runtime/sidecar.py) plus the segedge output
convention (export/onnx/wrap.py: logits and confidence float32, labels uint8),
since a plan cannot be read without TensorRT.  A file without segedge metadata
is refused: a hand-off must carry what the export verified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnx

from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata
from segedge.runtime.sidecar import read_sidecar, sha256_file
from segedge.runtime.tasks import get_task

ArtifactKind = Literal["onnx", "plan"]
Dim = int | None  # None: symbolic (batch, or a dynamic height/width)
PLAN_SUFFIXES = (".plan", ".engine", ".trt")

# ONNX TensorProto element type -> numpy-style name; the subset segedge graphs use.
ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.DOUBLE: "float64", onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT8: "int8", onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64", onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.UINT16: "uint16", onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.BFLOAT16: "bfloat16",
}


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: name, numpy-style dtype, shape with None for symbolic dims."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ArtifactError("tensor: expected a name, got an empty one")
        if self.dtype not in ONNX_DTYPES.values():
            raise ArtifactError(f"tensor {self.name}: expected one of "
                                f"{sorted(ONNX_DTYPES.values())}, got dtype {self.dtype!r}")
        if any(d is not None and d < 1 for d in self.shape):
            raise ArtifactError(f"tensor {self.name}: expected positive dims, got {self.shape}")


@dataclass(frozen=True)
class DeployArtifact:
    """A verified artifact as the hand-offs see it (see module docstring)."""

    path: Path
    kind: ArtifactKind
    metadata: ArtifactMetadata
    metadata_json: str  # exactly what the artifact stores under METADATA_KEY
    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def __post_init__(self) -> None:
        if len(self.inputs) != 1:
            raise ArtifactError(f"{self.path}: expected one image input, got "
                                f"{[t.name for t in self.inputs]}")
        if not self.outputs:
            raise ArtifactError(f"{self.path}: expected at least one output, got none")
        if ArtifactMetadata.from_json(self.metadata_json, str(self.path)) != self.metadata:
            raise ArtifactError(f"{self.path}: metadata_json does not match the metadata")

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    @property
    def static_batch(self) -> int | None:
        """The fixed batch of every tensor, or None when the batch dim is symbolic."""
        return self.input.shape[0] if self.input.shape else None


def _dims(value: onnx.ValueInfoProto) -> tuple[Dim, ...]:
    return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                 for d in value.type.tensor_type.shape.dim)


def _tensor(value: onnx.ValueInfoProto, path: Path) -> TensorInfo:
    elem = value.type.tensor_type.elem_type
    if elem not in ONNX_DTYPES:
        raise ArtifactError(f"{path}: tensor {value.name}: expected a numeric element type, got "
                            f"{onnx.TensorProto.DataType.Name(elem)}")
    return TensorInfo(value.name, ONNX_DTYPES[elem], _dims(value))


def load_onnx(path: Path) -> tuple[onnx.ModelProto, DeployArtifact]:
    """The ONNX (weights loaded) and what the hand-offs need of it."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 - protobuf raises several types for a bad file
        raise ArtifactError(f"{path}: expected an ONNX model, got an unreadable file "
                            f"({type(err).__name__})") from None
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        raise ArtifactError(f"{path}: expected a self-contained ONNX, got one with external "
                            "data files (a model repository copies one file)")
    props = {p.key: p.value for p in model.metadata_props}
    meta = ArtifactMetadata.from_props(props, str(path))
    if meta is None:
        raise ArtifactError(f"{path}: expected a verified segedge artifact (metadata_props key "
                            f"{METADATA_KEY!r}, written by segexport), got an ONNX without it; "
                            "export it with segexport first")
    weights = {i.name for i in model.graph.initializer}
    artifact = DeployArtifact(
        path=path, kind="onnx", metadata=meta, metadata_json=props[METADATA_KEY],
        sha256=sha256_file(path),
        inputs=tuple(_tensor(v, path) for v in model.graph.input if v.name not in weights),
        outputs=tuple(_tensor(v, path) for v in model.graph.output))
    return model, artifact


def _plan_tensors(meta: ArtifactMetadata, profile: dict[str, tuple[tuple[int, ...], ...]],
                  path: Path) -> tuple[TensorInfo, tuple[TensorInfo, ...]]:
    """Input from the optimisation profile; outputs from the segedge output convention."""
    spec = meta.input
    if not get_task(meta.task, str(path)).label_maps:  # the output convention below
        raise ArtifactError(f"{path}: expected a semantic-segmentation plan, got task {meta.task}")
    if spec.name not in profile:
        raise ArtifactError(f"{path}: expected a profile for input {spec.name!r} in the "
                            f"sidecar, got {sorted(profile)}")
    lo, _, hi = profile[spec.name]
    shape = tuple(a if a == b else None for a, b in zip(lo, hi, strict=True))
    if len(shape) != 4:
        raise ArtifactError(f"{path}: expected a 4-D image input, got profile {lo}..{hi}")
    dtype = "uint8" if spec.format == "uint8" else "float32"
    image = TensorInfo(spec.name, dtype, shape)
    n = shape[0]
    h, w = (shape[1], shape[2]) if spec.layout == "NHWC" else (shape[2], shape[3])
    out = meta.output
    outputs = []
    if out.logits:
        outputs.append(TensorInfo(out.logits, "float32", (n, meta.num_classes, h, w)))
    if out.labels:
        outputs.append(TensorInfo(out.labels, "uint8", (n, h, w)))
    if out.confidence:
        outputs.append(TensorInfo(out.confidence, "float32", (n, h, w)))
    return image, tuple(outputs)


def load_plan(path: Path) -> DeployArtifact:
    """A TensorRT plan and its sidecar (checked against the plan's bytes)."""
    sidecar = read_sidecar(path, verify=True)
    meta = sidecar.metadata
    image, outputs = _plan_tensors(meta, sidecar.profile, path)
    return DeployArtifact(path=path, kind="plan", metadata=meta,
                          metadata_json=json.dumps(sidecar.segedge, sort_keys=True),
                          sha256=sidecar.plan_sha256, inputs=(image,), outputs=outputs)


def load_artifact(path: str | Path) -> DeployArtifact:
    """An .onnx or a TensorRT plan (.plan/.engine/.trt with its sidecar); exit 2 otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError("ARTIFACT", "an existing .onnx or TensorRT plan file", path)
    if path.suffix.lower() == ".onnx":
        return load_onnx(path)[1]
    if path.suffix.lower() in PLAN_SUFFIXES:
        return load_plan(path)
    raise InputError("ARTIFACT", "an .onnx file or a TensorRT plan (" + ", ".join(PLAN_SUFFIXES)
                     + ") with its sidecar", path.name)
