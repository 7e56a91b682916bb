"""DeepStream hand-off: an nvinfer config for semantic segmentation and a deepstream-app config.

Writes into DIR: ``<model>_nvinfer.onnx`` (the copy nvinfer can run, built and
checked by nvinfer_graph.py), ``nvinfer_config.txt`` (Gst-nvinfer ``[property]``
group), ``labels.txt`` (one class per line) and ``deepstream_app_config.txt``
(N sources batched by nvstreammux, nvinfer, the segmentation visualiser, a
tiler, the OSD and an MP4 file sink).  Keys are the ones DeepStream's
parsers read (gstnvinfer_property_parser.h, deepstream_config_file_parser.c;
the tests hold the lists with their URLs).  Not run on a DeepStream install
here: nothing in this project has run DeepStream yet.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import segedge.runtime as runtime_package
from segedge.export.deploy.artifact import DeployArtifact, load_onnx
from segedge.export.deploy.nvinfer_graph import (
    SCORES,
    NvinferPreprocess,
    nvinfer_model,
    verify,
)
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.io import check_writable, write_bytes_atomic, write_text_atomic
from segedge.runtime.precisions import precision
from segedge.runtime.redact import redact
from segedge.runtime.sidecar import read_sidecar, sha256_file

# Gst-nvinfer network-mode values (its own numbering of FP32, INT8, FP16 engines)
NVINFER_FP32, NVINFER_INT8, NVINFER_FP16 = 0, 1, 2
COLOR_FORMAT = {"RGB": 0, "BGR": 1}  # Gst-nvinfer model-color-format
SOURCE_URI, SOURCE_RTSP = 2, 4  # deepstream-app [sourceK] type
NVINFER_CONFIG = "nvinfer_config.txt"
APP_CONFIG = "deepstream_app_config.txt"
LABELS = "labels.txt"
VERIFY_FRAMES = 4
DEMO_CLIP = Path(runtime_package.__file__).resolve().parent / "assets" / "demo_clip.mp4"


@dataclass(frozen=True)
class DeepStreamOptions:
    """`segdeploy deepstream` flags; width/height: network size for a dynamic-size artifact."""

    sources: tuple[str, ...] = ()
    engine: Path | None = None
    batch: int | None = None
    width: int | None = None
    height: int | None = None
    mux_width: int = 1280
    mux_height: int = 720
    output_file: str = "segedge_deepstream.mp4"

    def __post_init__(self) -> None:
        for flag, value in (("--batch", self.batch), ("--width", self.width),
                            ("--height", self.height), ("--mux-width", self.mux_width),
                            ("--mux-height", self.mux_height)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(flag, "a positive integer", value)
        if (self.width is None) != (self.height is None):
            raise InputError("--width/--height", "both or neither", (self.width, self.height))
        if not self.output_file or "/" in self.output_file:
            raise InputError("--output-file", "a file name (written beside the configs)",
                             self.output_file)


@dataclass(frozen=True)
class DeepStreamBundle:
    """What was written, and the lines the CLI reports."""

    folder: Path
    onnx: Path
    nvinfer_config: Path
    app_config: Path
    labels: Path
    preprocess: NvinferPreprocess
    batch: int
    size: tuple[int, int]
    agreement: float


def source_uri(source: str) -> tuple[str, int]:
    """A deepstream-app uri and source type: rtsp:// -> RTSP, a path -> file:// URI."""
    if "://" in source:
        scheme = source.split("://", 1)[0].lower()
        if scheme not in ("file", "rtsp", "http", "https"):
            raise InputError("--sources", "a file path or a file://, rtsp:// or http(s):// URI",
                             redact(source))
        return source, SOURCE_RTSP if scheme == "rtsp" else SOURCE_URI
    path = Path(source).expanduser().resolve()
    return path.as_uri(), SOURCE_URI


def _size(artifact: DeployArtifact, options: DeepStreamOptions) -> tuple[int, int]:
    """Network (height, width): the artifact's static size, or --height/--width when dynamic."""
    meta = artifact.metadata
    if meta.input.size is not None:
        size = tuple(meta.input.size)
        given = (options.height, options.width)
        if options.width is not None and given != size:
            raise InputError("--width/--height", f"the artifact's static size {size[1]}x"
                             f"{size[0]} (or nothing)", f"{options.width}x{options.height}")
        return size  # type: ignore[return-value]
    if options.width is None or options.height is None:
        raise InputError("--width/--height", "the network input size (the artifact's height "
                         "and width are dynamic)", "none")
    stride = meta.input.stride
    if options.width % stride or options.height % stride:
        raise InputError("--width/--height", f"multiples of the artifact's stride {stride}",
                         f"{options.width}x{options.height}")
    return options.height, options.width


def _batch(artifact: DeployArtifact, options: DeepStreamOptions, sources: int) -> int:
    static = artifact.static_batch
    wanted = options.batch or (static if static is not None else sources)
    if static is not None and wanted != static:
        raise InputError("--batch", f"the artifact's static batch {static} (re-export with "
                         "--dynamic to batch streams in one call)", wanted)
    return wanted


def _check_engine(engine: Path, copy_sha: str, batch: int) -> None:
    """An engine nvinfer can use was built from the copy (its sidecar says so), for `batch`."""
    sidecar = read_sidecar(engine, verify=True)
    if sidecar.onnx_sha256 != copy_sha:
        raise InputError("--engine", f"a plan built from the nvinfer copy (ONNX sha256 "
                         f"{copy_sha}): nvinfer feeds float NCHW and reads class scores",
                         f"a plan built from ONNX sha256 {sidecar.onnx_sha256}; leave --engine "
                         "out and nvinfer builds one from onnx-file")
    top = max((shapes[2][0] for shapes in sidecar.profile.values()), default=0)
    if top < batch:
        raise InputError("--engine", f"a plan whose profile allows batch {batch}",
                         f"maximum batch {top}")


def nvinfer_config(artifact: DeployArtifact, pre: NvinferPreprocess, onnx_name: str,
                   engine: str, batch: int, size: tuple[int, int], dynamic_size: bool,
                   agreement: float) -> str:
    """Gst-nvinfer [property] group for network-type=2 (semantic segmentation)."""
    meta = artifact.metadata
    offsets = ";".join(f"{v:.6g}" for v in pre.offsets)
    lines = [
        f"# Written by segdeploy from {artifact.path.name} (sha256 {artifact.sha256}).",
        "# UNVERIFIED on a real DeepStream install: checked against DeepStream's documented",
        "# keys and, with ONNX Runtime, the copy below against the artifact.",
        f"# {onnx_name}: the artifact with float NCHW pixel input and '{SCORES}' = softmax",
        "# class scores at input resolution (nvinfer argmaxes them; threshold 0 keeps every",
        f"# pixel's argmax); label agreement with the artifact {agreement:.4f} %.",
        f"# Normalisation: {pre.note}.",
        "[property]",
        "gpu-id=0",
        "gie-unique-id=1",
        "process-mode=1",
        "network-type=2",
        f"onnx-file={onnx_name}",
        f"model-engine-file={engine}",
        f"labelfile-path={LABELS}",
        f"batch-size={batch}",
        f"network-mode={network_mode(meta.precision)}",
        f"net-scale-factor={pre.scale!r}",
        f"offsets={offsets}",
        f"model-color-format={COLOR_FORMAT[pre.color]}",
        "network-input-order=0",
        f"maintain-aspect-ratio={1 if meta.input.resize == 'letterbox' else 0}",
        f"num-detected-classes={meta.num_classes}",
        f"output-blob-names={SCORES}",
        "segmentation-threshold=0.0",
    ]
    if meta.input.resize == "letterbox":
        lines.append("symmetric-padding=1")
    if dynamic_size:
        lines.append(f"infer-dims=3;{size[0]};{size[1]}")
    if precision(meta.precision).quantized:
        lines.insert(7, "# INT8: Q/DQ in the ONNX (explicit quantisation), no calibration file.")
    return "\n".join(lines) + "\n"


def network_mode(name: str) -> int:
    """Gst-nvinfer's network-mode for an artifact precision, from what the precision is
    (runtime.precisions): Q/DQ INT8, a 16-bit float, else FP32."""
    spec = precision(name)
    if spec.quantized:
        return NVINFER_INT8
    return NVINFER_FP16 if spec.bits == 16 else NVINFER_FP32


def app_config(sources: list[tuple[str, int]], batch: int, size: tuple[int, int],
               options: DeepStreamOptions) -> str:
    """deepstream-app config: N sources -> streammux -> nvinfer -> segvisual -> tiler -> sink."""
    n = len(sources)
    rows = int(math.floor(math.sqrt(n))) or 1
    cols = int(math.ceil(n / rows))
    live = int(any(kind == SOURCE_RTSP for _, kind in sources))
    note = ([f"# nvinfer batch-size {batch} < {n} sources: the artifact's static batch, so "
             "frames are inferred", f"# {batch} at a time (segexport --dynamic batches all "
             "streams in one call)."] if batch < n else [])
    lines = ["# Written by segdeploy; UNVERIFIED on a real DeepStream install.", *note,
             "[application]", "enable-perf-measurement=1", "perf-measurement-interval-sec=5", "",
             "[tiled-display]", "enable=1", f"rows={rows}", f"columns={cols}",
             f"width={options.mux_width}", f"height={options.mux_height}", "gpu-id=0", ""]
    for k, (uri, kind) in enumerate(sources):
        lines += [f"[source{k}]", "enable=1", f"type={kind}", f"uri={uri}", "num-sources=1",
                  "gpu-id=0", ""]
    lines += ["[streammux]", "gpu-id=0", f"live-source={live}", f"batch-size={n}",
              "batched-push-timeout=40000", f"width={options.mux_width}",
              f"height={options.mux_height}", "enable-padding=0", "",
              "[primary-gie]", "enable=1", "gpu-id=0", f"batch-size={batch}",
              "gie-unique-id=1", f"config-file={NVINFER_CONFIG}", "",
              "[segvisual]", "enable=1", "gpu-id=0", f"width={size[1]}", f"height={size[0]}", "",
              "[osd]", "enable=1", "gpu-id=0", "border-width=1", "text-size=15",
              "text-color=1;1;1;1", "text-bg-color=0.3;0.3;0.3;1", "font=Serif",
              "show-clock=0", "",
              "[sink0]", "enable=1", "type=3", "container=1", "codec=1", "bitrate=4000000",
              "sync=0", "source-id=0", "gpu-id=0", f"output-file={options.output_file}", ""]
    return "\n".join(lines)


def write_deepstream(artifact_path: str | Path, out_dir: str | Path,
                     options: DeepStreamOptions) -> DeepStreamBundle:
    """Build, verify and write the DeepStream bundle (ONNX artifacts only)."""
    artifact_path = Path(artifact_path)
    if artifact_path.suffix.lower() != ".onnx":
        raise InputError("ARTIFACT", "a segedge .onnx (nvinfer needs an ONNX it can adapt; pass a "
                         "plan built from the written copy with --engine)", artifact_path.name)
    if not artifact_path.is_file():
        raise InputError("ARTIFACT", "an existing .onnx file", artifact_path)
    out_dir = Path(out_dir)
    check_writable(out_dir / NVINFER_CONFIG, "-o")
    model, artifact = load_onnx(artifact_path)
    sources = [source_uri(s) for s in (options.sources or (str(DEMO_CLIP),))]
    size = _size(artifact, options)
    batch = _batch(artifact, options, len(sources))
    copy, pre = nvinfer_model(model, artifact)
    from segedge.export import scenes

    frames = [f if pre.color == "BGR" else f[..., ::-1].copy()
              for f in scenes.frames(VERIFY_FRAMES, size)]  # scenes are BGR
    report = verify(model, copy, artifact, pre, frames)
    blob = copy.SerializeToString()
    onnx_name = f"{artifact_path.stem}_nvinfer.onnx"
    copy_sha = _sha_bytes(blob)
    # where nvinfer saves what it builds: its mode names are segedge's precision names
    engine = f"{onnx_name}_b{batch}_gpu0_{artifact.metadata.precision}.engine"
    if options.engine is not None:
        _check_engine(options.engine, copy_sha, batch)
        engine = os.path.relpath(options.engine.resolve(), out_dir.resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = write_bytes_atomic(out_dir / onnx_name, blob)
    if sha256_file(onnx_path) != copy_sha:
        raise ArtifactError(f"{onnx_path}: expected sha256 {copy_sha} after writing, got another")
    labels = write_text_atomic(out_dir / LABELS, "\n".join(artifact.metadata.classes) + "\n")
    infer_cfg = write_text_atomic(out_dir / NVINFER_CONFIG, nvinfer_config(
        artifact, pre, onnx_name, engine, batch, size, artifact.metadata.input.size is None,
        report["argmax_agreement"]))
    app = write_text_atomic(out_dir / APP_CONFIG, app_config(sources, batch, size, options))
    return DeepStreamBundle(folder=out_dir, onnx=onnx_path, nvinfer_config=infer_cfg,
                            app_config=app, labels=labels, preprocess=pre, batch=batch,
                            size=size, agreement=report["argmax_agreement"])


def _sha_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()
