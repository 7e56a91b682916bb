"""A Triton Inference Server model repository from one verified artifact.

``REPO/<name>/config.pbtxt`` + ``REPO/<name>/<version>/model.onnx`` (platform
``onnxruntime_onnx``) or ``model.plan`` (``tensorrt_plan``).  The config is
built as Triton's own protobuf (``tritonclient``'s ``model_config_pb2``) and
printed with protobuf's text format, so it is in Triton's schema by
construction, not by string formatting.  The segedge metadata travels as
config parameters (``segedge_metadata``: the artifact's JSON, verbatim;
``segedge_sha256``: the model file's hash), which the runtime's Triton backend
reads back, so a client needs no flags either.

Batching, as Triton defines it: a symbolic batch dim becomes ``max_batch_size``
N and dims without it; a static batch becomes ``max_batch_size: 0`` with full
dims (and no dynamic batching: Triton cannot batch such a model).  The model
folder is assembled in a temporary folder beside it and renamed into place.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from segedge.export.deploy.artifact import DeployArtifact, TensorInfo
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, InputError
from segedge.runtime.io import check_writable, write_text_atomic
from segedge.runtime.sidecar import sha256_file

InstanceKind = Literal["cpu", "gpu", "auto"]
METADATA_PARAM = "segedge_metadata"
SHA256_PARAM = "segedge_sha256"
PLATFORMS = {"onnx": ("onnxruntime_onnx", "model.onnx"), "plan": ("tensorrt_plan", "model.plan")}
TRITON_TYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16",
    "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "bool": "TYPE_BOOL",
}
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU", "auto": "KIND_AUTO"}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _schema() -> Any:
    """Triton's ModelConfig schema; tritonclient is the optional `triton` extra."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as err:
        raise BackendUnavailableError(
            f"segdeploy triton: expected tritonclient (pip install 'segedge[triton]'), got "
            f"ImportError: {err}") from None
    return model_config_pb2


@dataclass(frozen=True)
class TritonOptions:
    """The flags of `segdeploy triton`, validated; `dynamic_batching` None = on when batchable."""

    name: str
    max_batch: int = 8
    instances: int = 1
    kind: InstanceKind = "auto"
    dynamic_batching: bool | None = None
    max_queue_delay_us: int = 100
    version: int = 1
    force: bool = False

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or self.name in (".", ".."):
            raise InputError("--name", "a model name of letters, digits, '_', '-', '.' "
                             "(not starting with '.' or '-')", repr(self.name))
        for flag, value, low in (("--max-batch", self.max_batch, 1),
                                 ("--instances", self.instances, 1),
                                 ("--max-queue-delay-us", self.max_queue_delay_us, 0),
                                 ("--version", self.version, 1)):
            if not isinstance(value, int) or value < low:
                raise InputError(flag, f"an integer >= {low}", value)
        if self.kind not in KINDS:
            raise InputError("--kind", "one of " + ", ".join(KINDS), repr(self.kind))


@dataclass(frozen=True)
class TritonModel:
    """What was written: paths, and the batch decision in words for the CLI line."""

    folder: Path
    config: Path
    model_file: Path
    platform: str
    max_batch_size: int
    dynamic_batching: bool
    note: str


def _batchable(artifact: DeployArtifact) -> bool:
    """Every tensor has a symbolic leading dim (the batch Triton may vary)."""
    tensors = artifact.inputs + artifact.outputs
    return all(t.shape and t.shape[0] is None for t in tensors)


def _dims(t: TensorInfo, strip_batch: bool) -> list[int]:
    shape = t.shape[1:] if strip_batch else t.shape
    return [-1 if d is None else int(d) for d in shape]


def _tensor(pb: Any, cls: Any, t: TensorInfo, strip_batch: bool) -> Any:
    if t.dtype not in TRITON_TYPES:
        raise ArtifactError(f"tensor {t.name}: expected a type Triton serves, got {t.dtype}")
    if not strip_batch and any(d is None for d in t.shape[:1]):
        raise ArtifactError(f"tensor {t.name}: expected a static batch, got {t.shape}")
    return cls(name=t.name, data_type=pb.DataType.Value(TRITON_TYPES[t.dtype]),
               dims=_dims(t, strip_batch))


def _profile_max_batch(artifact: DeployArtifact) -> int | None:
    """A plan's largest batch (its optimisation profile), None for an ONNX."""
    if artifact.kind != "plan":
        return None
    from segedge.runtime.sidecar import read_sidecar

    return read_sidecar(artifact.path, verify=False).profile[artifact.input.name][2][0]


def build_config(artifact: DeployArtifact, options: TritonOptions) -> tuple[Any, str]:
    """Triton's ModelConfig for this artifact, and a note on the batch decision."""
    pb = _schema()
    platform, filename = PLATFORMS[artifact.kind]
    if artifact.kind == "plan" and options.kind == "cpu":
        raise InputError("--kind", "gpu or auto for a TensorRT plan (it runs on a GPU only)",
                         "cpu")
    batchable = _batchable(artifact)
    if batchable:
        limit = _profile_max_batch(artifact)
        if limit is not None and options.max_batch > limit:
            raise InputError("--max-batch", f"at most {limit} (the plan's profile maximum)",
                             options.max_batch)
        max_batch = options.max_batch
        dynamic = options.dynamic_batching is not False
        note = f"dynamic batch dim: max_batch_size {max_batch}"
    else:
        if options.dynamic_batching:
            raise InputError("--dynamic-batching", "an artifact with a dynamic batch dim "
                             "(segexport --dynamic)", f"static shape {artifact.input.shape}")
        max_batch, dynamic = 0, False
        note = (f"static batch {artifact.static_batch}: max_batch_size 0, full dims, no "
                "dynamic batching (re-export with --dynamic to let Triton batch)")
    config = pb.ModelConfig(name=options.name, platform=platform, max_batch_size=max_batch,
                            default_model_filename=filename)
    config.input.extend(_tensor(pb, pb.ModelInput, t, batchable) for t in artifact.inputs)
    config.output.extend(_tensor(pb, pb.ModelOutput, t, batchable) for t in artifact.outputs)
    config.version_policy.specific.versions.append(options.version)
    config.instance_group.add(count=options.instances,
                              kind=pb.ModelInstanceGroup.Kind.Value(KINDS[options.kind]))
    if dynamic:
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
    config.parameters[METADATA_PARAM].string_value = artifact.metadata_json
    config.parameters[SHA256_PARAM].string_value = artifact.sha256
    return config, note


def config_text(config: Any, artifact: DeployArtifact, note: str) -> str:
    """config.pbtxt: protobuf's text format of the config, under a comment header."""
    from google.protobuf import text_format

    header = (f"# Written by segdeploy from {artifact.path.name} (sha256 {artifact.sha256}).\n"
              f"# {note}.\n")
    return header + text_format.MessageToString(config)


def _refuse_existing(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise InputError("-o/--name", "a model folder that does not exist yet (or --force)",
                         f"{target} exists")
    if target.exists() and not target.is_dir():
        raise InputError("-o/--name", "a model folder path", f"{target} is a file")


def write_repository(artifact: DeployArtifact, repo: str | Path,
                     options: TritonOptions) -> TritonModel:
    """Write REPO/<name>/ atomically: assembled beside it, renamed into place when complete."""
    repo = Path(repo)
    if repo.exists() and not repo.is_dir():
        raise InputError("-o", "a model repository folder", f"{repo} is a file")
    check_writable(repo / options.name / "config.pbtxt", "-o")
    target = repo / options.name
    _refuse_existing(target, options.force)
    config, note = build_config(artifact, options)  # every refusal happens before any write
    text = config_text(config, artifact, note)
    platform, filename = PLATFORMS[artifact.kind]
    repo.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{options.name}.segdeploy-", dir=repo))
    old: Path | None = None
    try:
        write_text_atomic(work / "config.pbtxt", text)
        model = work / str(options.version) / filename
        model.parent.mkdir()
        with model.open("wb") as dst, artifact.path.open("rb") as src:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        if sha256_file(model) != artifact.sha256:
            raise ArtifactError(f"{artifact.path}: expected the copy to hash to "
                                f"{artifact.sha256}, got another hash (file changed while "
                                "copying?)")
        for folder in (model.parent, work):
            os.chmod(folder, 0o755)
        if target.exists():  # --force: the old folder moves aside, the new one takes its name
            old = Path(tempfile.mkdtemp(prefix=f".{options.name}.old-", dir=repo))
            os.replace(target, old / options.name)
        try:
            os.replace(work, target)
        except OSError:
            if old is not None:  # put the previous model back rather than leave none
                os.replace(old / options.name, target)
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return TritonModel(folder=target, config=target / "config.pbtxt",
                       model_file=target / str(options.version) / filename, platform=platform,
                       max_batch_size=config.max_batch_size,
                       dynamic_batching=config.HasField("dynamic_batching"), note=note)
