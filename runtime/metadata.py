"""The self-description every segedge artifact carries.

Stored as one JSON document under the ONNX `metadata_props` key
``segedge`` (and copied into a TensorRT plan's sidecar JSON), so the runtime
needs no flags: classes, palette, normalisation, colour order, layout, size
and output kind all travel with the model.  Versioned by ``schema``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from segedge.runtime.errors import ArtifactError, InputError

SCHEMA_VERSION = 1
METADATA_KEY = "segedge"

InputFormat = Literal["uint8", "float"]
Layout = Literal["NHWC", "NCHW"]
ColorOrder = Literal["RGB", "BGR"]
OutputKind = Literal["logits", "labels", "both", "instances"]
# An ONNX precision registered in runtime/precisions (fp32, fp16, int8, or a plugin's):
# checked against that registry, not restated here.
Precision = str
ResizeMode = Literal["stretch", "letterbox"]
# Which library's resize the training pipeline used (runtime/resize.py reproduces each).
Interpolation = Literal["cv2-linear", "torch-bilinear", "torch-bilinear-aa", "pil-bilinear"]

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
    # frame resizing (and the nearest rule for labels) of the training pipeline; artifacts
    # written before this field existed keep OpenCV's, as they always ran
    interpolation: Interpolation = "cv2-linear"

    def default_profile(self, h: int, w: int) -> tuple[tuple[int, int], tuple[int, int],
                                                        tuple[int, int]]:
        """TensorRT's (min, opt, max) height/width around an (h, w) working size: half (rounded
        down to the stride, never below it), the size, double. One rule for the engine builder
        and ONNX Runtime's TensorRT provider, so both build the same profile."""
        stride = max(1, self.stride)

        def half(v: int) -> int:
            return max(stride, v // 2 // stride * stride)

        return (half(h), half(w)), (h, w), (h * 2, w * 2)

    def shape(self, batch: int, hw: tuple[int, int]) -> tuple[int, int, int, int]:
        """The input tensor's shape for ``batch`` images of ``hw`` in this layout (one rule
        for the engine builder's profiles and ONNX Runtime's TensorRT provider options)."""
        h, w = int(hw[0]), int(hw[1])
        return (batch, h, w, 3) if self.layout == "NHWC" else (batch, 3, h, w)


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

    def __post_init__(self) -> None:
        from segedge.runtime.precisions import artifact_precision

        artifact_precision(self.precision)  # one line naming the registered ONNX precisions

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
        except InputError as err:  # a value the registries do not know (precision)
            raise ArtifactError(f"{source}: segedge metadata {err}") from err


RGB = tuple[int, int, int]
BLACK: RGB = (0, 0, 0)
# Classes that may be drawn black: "nothing here".  Any other class never is.
VOID_NAMES = frozenset({"void", "background", "unlabelled", "unlabeled"})
# Published road-scene palettes (RGB), keyed by normalised class name (lower case,
# letters and digits only).  CamVid: SegNet's colours (Brostow et al.); Cityscapes: the
# official cityscapesScripts labels.  A class list takes the table matching most names.
ROAD_PALETTES: dict[str, dict[str, RGB]] = {
    "camvid": {
        "sky": (128, 128, 128), "building": (128, 0, 0), "pole": (192, 192, 128),
        "columnpole": (192, 192, 128), "roadmarking": (255, 69, 0), "road": (128, 64, 128),
        "pavement": (60, 40, 222), "sidewalk": (60, 40, 222), "tree": (128, 128, 0),
        "signsymbol": (192, 128, 128), "fence": (64, 64, 128), "car": (64, 0, 128),
        "pedestrian": (64, 64, 0), "bicyclist": (0, 128, 192),
    },
    "cityscapes": {
        "road": (128, 64, 128), "sidewalk": (244, 35, 232), "building": (70, 70, 70),
        "wall": (102, 102, 156), "fence": (190, 153, 153), "pole": (153, 153, 153),
        "trafficlight": (250, 170, 30), "trafficsign": (220, 220, 0),
        "vegetation": (107, 142, 35), "terrain": (152, 251, 152), "sky": (70, 130, 180),
        "person": (220, 20, 60), "rider": (255, 0, 0), "car": (0, 0, 142),
        "truck": (0, 0, 70), "bus": (0, 60, 100), "train": (0, 80, 100),
        "motorcycle": (0, 0, 230), "bicycle": (119, 11, 32),
    },
}


def _normalise(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _bit_colour(label: int) -> RGB:
    """Pascal-VOC style bit-interleaved colour of `label` (distinct for every label)."""
    r = g = b = 0
    c = label
    for shift in range(7, -1, -1):
        r |= ((c >> 0) & 1) << shift
        g |= ((c >> 1) & 1) << shift
        b |= ((c >> 2) & 1) << shift
        c >>= 3
    return (r, g, b)


def default_palette(classes: int | Sequence[str]) -> tuple[RGB, ...]:
    """Distinct, deterministic colours for a class count or, better, the class names.

    Named road-scene classes get their dataset's published colours (a 12-class
    CamVid model with void: CamVid's palette plus black for void) when most names
    are in one table; a class is
    black only when named void/background/unlabelled; every other class gets the
    Pascal-VOC bit-interleaved colour of its index, or the next unused one where
    that is black or already taken.
    """
    names = [""] * classes if isinstance(classes, int) else [str(c) for c in classes]
    keys = [_normalise(n) for n in names]
    named = [k for k in keys if k and k not in VOID_NAMES]
    best = max(ROAD_PALETTES.values(), key=lambda t: sum(k in t for k in named))
    # a road-scene table only for a road-scene class list (most names in it), so a VOC
    # list keeps its colours although "bicycle" is a Cityscapes name too
    table = best if 2 * sum(k in best for k in named) > len(named) else {}
    out: list[RGB | None] = [BLACK if k in VOID_NAMES else table.get(k) for k in keys]
    used = {c for c in out if c is not None}
    spare = len(out)  # colours past the class count are free for the ones that clash
    for i, colour in enumerate(out):
        if colour is not None:
            continue
        pick = _bit_colour(i)
        while pick == BLACK or pick in used:
            pick, spare = _bit_colour(spare), spare + 1
        out[i] = pick
        used.add(pick)
    return tuple(c for c in out if c is not None)
