"""Small ONNX graph edits the exporter needs: names, pruning, metadata, checks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from onnx import ModelProto

from segedge.runtime.errors import ExportError
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata

if TYPE_CHECKING:
    import onnxruntime as ort


def rename_dynamic_dims(model: ModelProto, names: dict[int, str]) -> None:
    """Give the input's symbolic dims readable names (dynamo writes s0, s77...) everywhere."""
    if not names:
        return
    dims = model.graph.input[0].type.tensor_type.shape.dim
    mapping = {dims[i].dim_param: new for i, new in names.items()
               if i < len(dims) and dims[i].dim_param}
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def prune_outputs(model: ModelProto, keep: list[str]) -> None:
    """Drop graph outputs not in `keep` and every node/initializer only they needed."""
    missing = set(keep) - {o.name for o in model.graph.output}
    if missing:
        raise ExportError(f"graph outputs: expected {sorted(missing)} to exist, got "
                          f"{[o.name for o in model.graph.output]}")
    outputs = [o for o in model.graph.output if o.name in keep]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    needed = set(keep)
    live = []
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            live.append(node)
            needed.update(i for i in node.input if i)
            for attr in node.attribute:  # subgraphs (If/Loop) read outer names
                for g in [attr.g, *attr.graphs]:
                    for sub in g.node:
                        needed.update(sub.input)
    del model.graph.node[:]
    model.graph.node.extend(reversed(live))
    inits = [i for i in model.graph.initializer if i.name in needed]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    vinfo = [v for v in model.graph.value_info if v.name in needed]
    del model.graph.value_info[:]
    model.graph.value_info.extend(vinfo)


def set_metadata(model: ModelProto, meta: ArtifactMetadata) -> None:
    props = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.append(onnx.StringStringEntryProto(key=METADATA_KEY, value=meta.to_json()))
    model.producer_name = "segedge"
    model.doc_string = f"segedge {meta.model} ({meta.family}), {meta.precision}"


def read_metadata(model: ModelProto | str | Path) -> ArtifactMetadata | None:
    """segedge metadata of an in-memory ONNX or an ONNX file (weights not loaded), or None."""
    source = "metadata"
    if not isinstance(model, ModelProto):
        source = str(model)
        model = onnx.load(str(model), load_external_data=False)
    return ArtifactMetadata.from_props({p.key: p.value for p in model.metadata_props}, source)


def check(model: ModelProto) -> ModelProto:
    """onnx.checker + strict shape inference; returns the shape-inferred model."""
    try:
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:  # noqa: BLE001 - checker/inference errors are many types
        raise ExportError(f"ONNX check failed: {str(err).strip().splitlines()[0][:300]}") from None


def opset_of(model: ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def simplify(model: ModelProto) -> tuple[ModelProto, str | None]:
    """onnxslim (constant folding, dead code, fusion); on failure keep the original."""
    try:
        import onnxslim

        slim = onnxslim.slim(model)
        if not isinstance(slim, ModelProto):
            return model, "onnxslim returned no model"
        return slim, None
    except Exception as err:  # noqa: BLE001 - a simplifier bug must not fail the export
        return model, f"{type(err).__name__}: {str(err)[:200]}"


def session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """The CPU session every export-side check runs (parity, precision, pruning proof).

    ORT's per-iteration shape warnings (Mask R-CNN's mask paste loop) are kept quiet.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
