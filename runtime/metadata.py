"""The self-description every segedge artifact carries.

Stored as one JSON document under the ONNX `metadata_props` key
``segedge`` (and copied into a TensorRT plan's sidecar JSON), so the runtime
needs no flags: classes, palette, normalisation, colour order, layout, size
and output kind all travel with the model.  Versioned by ``schema``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from segedge.runtime.errors import ArtifactError

SCHEMA_VERSION = 1
METADATA_KEY = "segedge"

InputFormat = Literal["uint8", "float"]
Layout = Literal["NHWC", "NCHW"]
ColorOrder = Literal["RGB", "BGR"]
OutputKind = Literal["logits", "labels", "both", "instances"]
Precision = Literal["fp32", "fp16", "int8"]
ResizeMode = Literal["stretch", "letterbox"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """How to feed the graph.

    ``mean``/``std`` are in 0..1 units and in the model's colour order.  With
    ``format == "uint8"`` the graph takes raw NHWC bytes in ``color_order`` and
    normalises inside; with ``"float"`` the caller normalises to NCHW float32.
    ``size`` is (H, W) for a static graph, or None when height/width are
    symbolic; ``stride`` is what any size must be a multiple of.
    """

    name: str = "input"
    format: InputFormat = "float"
    layout: Layout = "NCHW"
    color_order: ColorOrder = "RGB"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    size: tuple[int, int] | None = (512, 512)
    batch: int | None = 1
    stride: int = 1
    resize: ResizeMode = "stretch"
    dynamic_axes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputSpec:
    """Which graph outputs exist and what they hold (all at input resolution)."""

    kind: OutputKind = "logits"
    logits: str | None = "logits"
    labels: str | None = None
    confidence: str | None = None
    # instance segmentation (kind "instances"): padded to max_detections, `count` valid
    boxes: str | None = None
    scores: str | None = None
    masks: str | None = None
    count: str | None = None
    max_detections: int | None = None


@dataclass(frozen=True)
class ArtifactMetadata:
    """Everything a runtime needs to use an artifact; see module docstring."""

    model: str
    family: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    task: Literal["semantic", "instance"] = "semantic"
    precision: Precision = "fp32"
    opset: int | None = None
    exporter: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_changes(self, **changes: Any) -> ArtifactMetadata:
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "metadata"
                   ) -> ArtifactMetadata | None:
        """The one metadata reader: an ONNX's metadata_props (as ONNX, ONNX Runtime's
        custom_metadata_map or OpenVINO's rt_info give them) -> metadata, or None when the
        artifact is not segedge's."""
        raw = props.get(METADATA_KEY)
        return None if raw is None else cls.from_json(raw, source)

    @classmethod
    def from_json(cls, text: str, source: str = "metadata") -> ArtifactMetadata:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArtifactError(f"{source}: segedge metadata is not valid JSON ({err})") from err
        return cls.from_dict(raw, source)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "metadata") -> ArtifactMetadata:
        if not isinstance(raw, dict):
            raise ArtifactError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        schema = raw.get("schema")
        if schema != SCHEMA_VERSION:
            raise ArtifactError(
                f"{source}: expected segedge metadata schema {SCHEMA_VERSION}, got {schema!r}; "
                "re-export with this segedge version"
            )
        try:
            inp = dict(raw.get("input", {}))
            for key in ("mean", "std", "size", "dynamic_axes"):
                if inp.get(key) is not None:
                    inp[key] = tuple(inp[key])
            out = dict(raw.get("output", {}))
            return cls(
                model=str(raw["model"]),
                family=str(raw["family"]),
                classes=tuple(str(c) for c in raw["classes"]),
                palette=tuple(tuple(int(v) for v in p) for p in raw["palette"]),  # type: ignore[misc]
                input=InputSpec(**inp),
                output=OutputSpec(**out),
                task=raw.get("task", "semantic"),
                precision=raw.get("precision", "fp32"),
                opset=raw.get("opset"),
                exporter=raw.get("exporter"),
                versions=dict(raw.get("versions", {})),
                extra=dict(raw.get("extra", {})),
                schema=schema,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ArtifactError(f"{source}: segedge metadata is incomplete ({err})") from err


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Pascal-VOC style bit-interleaved palette: distinct, deterministic colours."""
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)
