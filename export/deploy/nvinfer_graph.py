"""The ONNX that DeepStream's nvinfer can run as a semantic segmenter, and its proof.

nvinfer (network-type=2) feeds a float NCHW tensor ``y = net-scale-factor * (x
- offsets[c])`` (x: 0..255 pixels in ``model-color-format``) and reads ONE
float NCHW output of class scores, which it argmaxes per pixel keeping a class
only where its score exceeds ``segmentation-threshold`` (and -1, its running
maximum's start).  A segedge artifact does not fit as exported:

- a ``uint8`` artifact takes NHWC bytes and normalises inside: the copy takes
  float NCHW pixels instead (the leading ``Cast`` becomes a ``Transpose``), and
  nvinfer passes pixels through (scale 1, offsets 0): exact, any std;
- a ``float`` artifact expects ``(x/255 - mean) / std`` per channel; nvinfer has
  one scale for all channels, so a per-channel std is folded into a leading
  ``Mul`` (nvinfer subtracts the mean with scale 1; the graph divides); never
  averaged.  A uniform std needs no change: scale = 1 / (255 std);
- outputs are logits or an in-graph argmax (uint8 labels, no scores): the copy
  outputs ``scores = Softmax(logits, axis=1)`` at input resolution, so every
  score is in (0, 1), threshold 0 classifies every pixel, and nvinfer's argmax
  equals segedge's.

`verify` runs both graphs with ONNX Runtime, the original on segedge's
preprocessing and the copy on nvinfer's, and compares the label maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from segedge.export.deploy.artifact import DeployArtifact
from segedge.export.verify.compare import LabelComparator
from segedge.runtime.errors import ArtifactError, VerificationError
from segedge.runtime.metadata import ArtifactMetadata
from segedge.runtime.tasks import get_task

SCORES = "scores"
PIXEL_INPUT = "pixels"
MIN_AGREEMENT = 99.99  # percent of pixels; softmax is monotonic, only exact ties may differ
MAX_SCORE_DIFF = 1e-4  # softmax(original logits) vs the copy's scores, where logits exist


@dataclass(frozen=True)
class NvinferPreprocess:
    """What nvinfer must do before the copy: y = scale * (x - offsets[c]), x in `color`."""

    scale: float
    offsets: tuple[float, float, float]
    color: str  # "RGB" or "BGR": model-color-format 0 or 1
    folded_std: tuple[float, float, float] | None  # per-channel 1/(255 std) inside the copy
    note: str

    def __post_init__(self) -> None:
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise ArtifactError(f"net-scale-factor: expected a positive number, got {self.scale}")
        if self.color not in ("RGB", "BGR"):
            raise ArtifactError(f"model-color-format: expected RGB or BGR, got {self.color}")

    def apply(self, pixels_nhwc: np.ndarray) -> np.ndarray:
        """nvinfer's preprocessing on N x H x W x 3 pixels already in `color` order."""
        x = np.asarray(pixels_nhwc, np.float32).transpose(0, 3, 1, 2)
        offsets = np.asarray(self.offsets, np.float32).reshape(1, 3, 1, 1)
        return (np.float32(self.scale) * (x - offsets)).astype(np.float32)


def preprocess_for(meta: ArtifactMetadata) -> NvinferPreprocess:
    """How nvinfer must normalise for the copy of this artifact (see module docstring)."""
    spec = meta.input
    if spec.format == "uint8":
        return NvinferPreprocess(1.0, (0.0, 0.0, 0.0), spec.color_order, None,
                                 "uint8 artifact normalises inside its graph: nvinfer passes "
                                 "pixels (net-scale-factor 1, offsets 0)")
    offsets = tuple(float(255.0 * m) for m in spec.mean)
    if len(set(spec.std)) == 1:
        return NvinferPreprocess(1.0 / (255.0 * spec.std[0]), offsets,  # type: ignore[arg-type]
                                 spec.color_order, None,
                                 "uniform std: net-scale-factor = 1/(255 std) reproduces it")
    folded = tuple(float(1.0 / (255.0 * s)) for s in spec.std)
    return NvinferPreprocess(1.0, offsets, spec.color_order, folded,  # type: ignore[arg-type]
                             f"per-channel std {list(spec.std)} cannot be one "
                             "net-scale-factor: folded into a leading Mul in the copy")


def _consumers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in graph.node if name in n.input]


def _attr(node: onnx.NodeProto, key: str, default: object = None) -> object:
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == key),
                default)


def _scores_source(model: onnx.ModelProto, meta: ArtifactMetadata) -> str:
    """The NCHW class-score tensor: the logits output, or the input of the in-graph argmax."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    if meta.output.logits and meta.output.logits in outputs:
        return meta.output.logits
    labels = meta.output.labels
    producer = {o: n for n in graph.node for o in n.output}
    node = producer.get(labels or "")
    while node is not None and node.op_type in ("Cast", "Identity"):
        node = producer.get(node.input[0])
    if node is None or node.op_type != "ArgMax" or _attr(node, "axis", 0) != 1:
        raise ArtifactError(f"{meta.model}: expected a logits output or labels from an ArgMax "
                            f"over axis 1, got {node.op_type if node else 'no producer'} for "
                            f"{labels!r}")
    return node.input[0]


def _replace_input(model: onnx.ModelProto, meta: ArtifactMetadata,
                   pre: NvinferPreprocess) -> None:
    """The image input becomes float NCHW nvinfer-preprocessed pixels."""
    graph = model.graph
    old = next(i for i in graph.input if i.name == meta.input.name)
    dims = [d.dim_param or d.dim_value for d in old.type.tensor_type.shape.dim]
    if meta.input.format == "uint8":
        if meta.input.layout != "NHWC":
            raise ArtifactError(f"{meta.model}: expected uint8 NHWC input, got "
                                f"{meta.input.layout}")
        users = _consumers(graph, old.name)
        floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
        if not users or any(n.op_type != "Cast" or _attr(n, "to") not in floats for n in users):
            raise ArtifactError(f"{meta.model}: expected the uint8 input to feed only Casts to "
                                f"float, got {[n.op_type for n in users]}")
        nchw = [dims[0], dims[3], dims[1], dims[2]]
        # float NCHW pixels -> NHWC -> the same Casts: integers 0..255 convert exactly
        graph.node.insert(0, helper.make_node("Transpose", [PIXEL_INPUT], ["segedge_nhwc"],
                                              perm=[0, 2, 3, 1], name="segedge_to_nhwc"))
        for node in users:
            node.input[0] = "segedge_nhwc"
    else:
        if meta.input.layout != "NCHW":
            raise ArtifactError(f"{meta.model}: expected float NCHW input, got "
                                f"{meta.input.layout}")
        nchw = dims
        if pre.folded_std is None:
            for node in _consumers(graph, old.name):
                node.input[:] = [PIXEL_INPUT if i == old.name else i for i in node.input]
        else:
            factor = numpy_helper.from_array(
                np.asarray(pre.folded_std, np.float32).reshape(1, 3, 1, 1), "segedge_inv_std")
            graph.initializer.append(factor)
            graph.node.insert(0, helper.make_node("Mul", [PIXEL_INPUT, factor.name],
                                                  [old.name], name="segedge_fold_std"))
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info(PIXEL_INPUT, TensorProto.FLOAT, nchw))


def _prune(graph: onnx.GraphProto) -> None:
    """Drop nodes (and initializers) no longer needed by the graph outputs."""
    needed = {o.name for o in graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def nvinfer_model(model: onnx.ModelProto, artifact: DeployArtifact) -> tuple[onnx.ModelProto,
                                                                            NvinferPreprocess]:
    """The copy nvinfer runs (see module docstring) and the preprocessing it needs."""
    meta = artifact.metadata
    if not get_task(meta.task, str(artifact.path)).label_maps:
        raise ArtifactError(f"{artifact.path}: expected a semantic segmenter for nvinfer "
                            f"network-type=2, got task {meta.task}")
    pre = preprocess_for(meta)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    source = _scores_source(copy, meta)
    inferred = onnx.shape_inference.infer_shapes(copy)
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    if source not in known or len(known[source].type.tensor_type.shape.dim) != 4:
        raise ArtifactError(f"{artifact.path}: expected 4-D NCHW class scores at {source!r}, "
                            "got an unknown shape")
    _replace_input(copy, meta, pre)
    graph = copy.graph
    logits = source
    if known[source].type.tensor_type.elem_type != TensorProto.FLOAT:
        logits = f"{source}_fp32"
        graph.node.append(helper.make_node("Cast", [source], [logits], to=TensorProto.FLOAT,
                                           name="segedge_scores_fp32"))
    graph.node.append(helper.make_node("Softmax", [logits], [SCORES], axis=1,
                                       name="segedge_scores"))
    dims = [d.dim_param or d.dim_value for d in known[source].type.tensor_type.shape.dim]
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(SCORES, TensorProto.FLOAT, dims))
    del graph.value_info[:]
    _prune(graph)
    for prop in copy.metadata_props:
        if prop.key == "segedge":  # the copy is not a segedge artifact: say what it is
            prop.key = "segedge_source"
    onnx.checker.check_model(copy)
    return copy, pre


def _labels_of(outputs: dict[str, np.ndarray], meta: ArtifactMetadata) -> np.ndarray:
    out = meta.output
    if out.labels and out.labels in outputs:
        return outputs[out.labels].astype(np.int64)
    return outputs[out.logits or ""].argmax(1)


def verify(original: onnx.ModelProto, copy: onnx.ModelProto, artifact: DeployArtifact,
           pre: NvinferPreprocess, frames: list[np.ndarray]) -> dict[str, float]:
    """Original (segedge preprocessing) vs copy (nvinfer preprocessing) with ONNX Runtime.

    `frames` are H x W x 3 pixels in the artifact's colour order at its input size.
    Raises VerificationError below MIN_AGREEMENT or above MAX_SCORE_DIFF.
    """
    import onnxruntime as ort

    from segedge.runtime.normalization import Normalization

    meta = artifact.metadata
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    cpu = ["CPUExecutionProvider"]
    ref = ort.InferenceSession(original.SerializeToString(), opts, providers=cpu)
    new = ort.InferenceSession(copy.SerializeToString(), opts, providers=cpu)
    batch = np.stack(frames).astype(np.uint8)
    if meta.input.format == "uint8":
        feed = batch
    else:
        norm = Normalization.from_unit(meta.input.mean, meta.input.std)
        feed = norm.apply(batch).astype(np.float32).transpose(0, 3, 1, 2)
    comparator = LabelComparator(candidate="the nvinfer copy", reference=str(artifact.path))
    worst = 0.0
    for i in range(len(frames)):  # one at a time: a static batch of 1 is the common case
        got = dict(zip([o.name for o in ref.get_outputs()],
                       ref.run(None, {meta.input.name: feed[i:i + 1]}), strict=True))
        scores = new.run([SCORES], {PIXEL_INPUT: pre.apply(batch[i:i + 1])})[0]
        comparator.add(scores.argmax(1), _labels_of(got, meta))
        if meta.output.logits and meta.output.logits in got:
            logits = got[meta.output.logits].astype(np.float64)
            soft = np.exp(logits - logits.max(1, keepdims=True))
            soft /= soft.sum(1, keepdims=True)
            worst = max(worst, float(np.abs(soft - scores).max()))
    agreement = comparator.result().agreement  # the one definition of agreement
    if agreement < MIN_AGREEMENT or worst > MAX_SCORE_DIFF:
        raise VerificationError(
            f"{artifact.path}: expected the nvinfer copy to give segedge's labels (>= "
            f"{MIN_AGREEMENT} % agreement, score diff <= {MAX_SCORE_DIFF}), got "
            f"{agreement:.4f} % and {worst:.2e}")
    return {"argmax_agreement": agreement, "max_score_diff": worst, "frames": len(frames)}
