"""TensorRT compatibility lint for ONNX graphs, before anyone waits for a GPU build.

The supported-op table is data (``data/tensorrt_onnx_ops.json``), transcribed
from onnx-tensorrt's ``docs/operators.md`` for the TensorRT version it names;
update the JSON, not this code, when TensorRT moves.  Only restrictions that
can be read off the graph are checked (attributes, output counts, constant
inputs, input dtypes after ONNX shape inference); the rest stay as text in the
table.  A clean lint is no promise that TensorRT builds the graph: nothing here
ran TensorRT, and the table is the documentation, not the parser.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from segedge.runtime.errors import ArtifactError

TABLE_PATH = Path(__file__).with_name("data") / "tensorrt_onnx_ops.json"

# ONNX TensorProto element type -> the type names the table uses.
_ONNX_TO_TRT: dict[int, str] = {
    onnx.TensorProto.FLOAT: "FP32",
    onnx.TensorProto.FLOAT16: "FP16",
    onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.DOUBLE: "FP64",
    onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64",
    onnx.TensorProto.INT8: "INT8",
    onnx.TensorProto.UINT8: "UINT8",
    onnx.TensorProto.BOOL: "BOOL",
    onnx.TensorProto.FLOAT8E4M3FN: "FP8",
    onnx.TensorProto.INT4: "INT4",
}
if hasattr(onnx.TensorProto, "FLOAT4E2M1"):
    _ONNX_TO_TRT[int(onnx.TensorProto.FLOAT4E2M1)] = "FP4"


_SCALAR_CONSTANTS = {"value_int": onnx.TensorProto.INT64, "value_ints": onnx.TensorProto.INT64,
                     "value_float": onnx.TensorProto.FLOAT, "value_floats": onnx.TensorProto.FLOAT}


@dataclass(frozen=True)
class LintFinding:
    """One reason TensorRT is expected to reject (or need a plugin for) a node."""

    op_type: str
    node: str
    reason: str
    rule: str = "unsupported_op"  # unsupported_op|unknown_op|custom_domain|attribute|dtype|...
    domain: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class OpRule:
    """Checkable restrictions of one supported op (see the table's 'notes')."""

    dtypes: tuple[str, ...]
    restrictions: str = ""
    dtype_of: str = "input0"
    attrs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    forbidden_attrs: tuple[str, ...] = ()
    kernel_ranks: tuple[int, ...] = ()
    max_outputs: int | None = None
    absent_inputs: Mapping[int, str] = field(default_factory=dict)
    constant_inputs: Mapping[int, str] = field(default_factory=dict)
    zero_inputs: Mapping[int, str] = field(default_factory=dict)
    false_inputs: Mapping[int, str] = field(default_factory=dict)
    input_max: Mapping[int, int] = field(default_factory=dict)
    symmetric_pads: bool = False


@dataclass(frozen=True)
class OpTable:
    tensorrt_version: str
    source: str
    opset_min: int
    opset_max: int
    default_domains: tuple[str, ...]
    supported: Mapping[str, OpRule]
    unsupported: Mapping[str, str]
    dtype_aliases: Mapping[str, str] = field(default_factory=dict)


def _int_keys(raw: Mapping[str, Any] | None) -> dict[int, Any]:
    return {int(k): v for k, v in (raw or {}).items()}


def _rule(raw: Mapping[str, Any]) -> OpRule:
    return OpRule(
        dtypes=tuple(raw["dtypes"]),
        restrictions=str(raw.get("restrictions", "")),
        dtype_of=str(raw.get("dtype_of", "input0")),
        attrs=dict(raw.get("attrs", {})),
        forbidden_attrs=tuple(raw.get("forbidden_attrs", ())),
        kernel_ranks=tuple(raw.get("kernel_ranks", ())),
        max_outputs=raw.get("max_outputs"),
        absent_inputs=_int_keys(raw.get("absent_inputs")),
        constant_inputs=_int_keys(raw.get("constant_inputs")),
        zero_inputs=_int_keys(raw.get("zero_inputs")),
        false_inputs=_int_keys(raw.get("false_inputs")),
        input_max=_int_keys(raw.get("input_max")),
        symmetric_pads=bool(raw.get("symmetric_pads", False)),
    )


def load_table(path: str | Path | None = None) -> OpTable:
    """Read the op table; a broken table is an ArtifactError naming the file."""
    path = Path(path) if path is not None else TABLE_PATH
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return OpTable(
            tensorrt_version=str(raw["tensorrt_version"]),
            source=str(raw["source"]),
            opset_min=int(raw["opset_min"]),
            opset_max=int(raw["opset_max"]),
            default_domains=tuple(raw.get("default_domains", ["", "ai.onnx"])),
            supported={op: _rule(r) for op, r in raw["supported"].items()},
            unsupported=dict(raw["unsupported"]),
            dtype_aliases=dict(raw.get("dtype_aliases", {})),
        )
    except FileNotFoundError as err:
        raise ArtifactError(f"{path}: expected the TensorRT op table, got no such file") from err
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ArtifactError(
            f"{path}: expected a TensorRT op table (tensorrt_version, source, opset_min, "
            f"opset_max, supported, unsupported), got an invalid document ({err!r})"
        ) from err


@dataclass
class _Graph:
    """What the checks need to know about tensors visible from one (sub)graph."""

    dtypes: dict[str, int]
    constants: dict[str, np.ndarray]


def _collect(graph: onnx.GraphProto, outer: _Graph | None) -> _Graph:
    info = _Graph(dict(outer.dtypes) if outer else {}, dict(outer.constants) if outer else {})
    for vi in [*graph.input, *graph.output, *graph.value_info]:
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            info.dtypes[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        info.dtypes[init.name] = init.data_type
        info.constants[init.name] = numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if not node.output:
                    continue
                if attr.name == "value":
                    info.dtypes[node.output[0]] = attr.t.data_type
                    info.constants[node.output[0]] = numpy_helper.to_array(attr.t)
                elif attr.name in _SCALAR_CONSTANTS:
                    elem = _SCALAR_CONSTANTS[attr.name]
                    info.dtypes[node.output[0]] = elem
                    info.constants[node.output[0]] = np.asarray(
                        onnx.helper.get_attribute_value(attr),
                        dtype=np.int64 if elem == onnx.TensorProto.INT64 else np.float32)
    return info


def _attr_value(node: onnx.NodeProto, name: str) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return None


def _input(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


def _check_attrs(node: onnx.NodeProto, rule: OpRule) -> Iterator[str]:
    for name in rule.forbidden_attrs:
        if _attr_value(node, name) is not None:
            yield f"attribute {name!r} is not supported"
    for name, spec in rule.attrs.items():
        value = _attr_value(node, name)
        if "all_equal" in spec:
            if value and any(v != spec["all_equal"] for v in value):
                yield f"{name} must be empty or all {spec['all_equal']}, got {list(value)}"
            continue
        when = spec.get("when", {})
        if any((_attr_value(node, k) or rule.attrs.get(k, {}).get("default")) != v
               for k, v in when.items()):
            continue
        if value is None:
            value = spec.get("default")
        if value not in spec["allowed"]:
            allowed = ", ".join(map(str, spec["allowed"]))
            yield f"{name}={value!r} is not supported (supported: {allowed})"
    if rule.kernel_ranks:
        kernel = _attr_value(node, "kernel_shape")
        if kernel is not None and len(kernel) not in rule.kernel_ranks:
            yield (f"expected a {' or '.join(f'{r}D' for r in rule.kernel_ranks)} kernel, "
                   f"got {len(kernel)}D {list(kernel)}")
    if rule.symmetric_pads:
        pads = _attr_value(node, "pads")
        if pads and list(pads[: len(pads) // 2]) != list(pads[len(pads) // 2:]):
            yield f"pads must be equal at the start and end of each axis, got {list(pads)}"


def _check_io(node: onnx.NodeProto, rule: OpRule, info: _Graph) -> Iterator[tuple[str, str]]:
    used = [o for o in node.output if o]
    if rule.max_outputs is not None and len(used) > rule.max_outputs:
        extra = ", ".join(used[rule.max_outputs:])
        yield "outputs", (f"expected at most {rule.max_outputs} used output(s), got "
                          f"{len(used)} (unsupported: {extra})")
    for index, what in rule.absent_inputs.items():
        if _input(node, index):
            yield "inputs", f"input {what!r} is not supported"
    for table, verb in ((rule.constant_inputs, "constant"), (rule.zero_inputs, "zero"),
                        (rule.false_inputs, "false"), (rule.input_max, "bounded")):
        for index, detail in table.items():
            name = _input(node, index)
            if not name:
                continue
            label = detail if isinstance(detail, str) else f"input {index}"
            value = info.constants.get(name)
            if value is None:
                if verb in ("constant", "false"):
                    yield "constant_input", (f"input {label!r} must be a build-time constant "
                                             f"(initializer), got computed tensor {name!r}")
            elif verb == "zero" and np.any(value != 0):
                yield "constant_input", f"{label} must be zero, got {value.ravel()[:4].tolist()}"
            elif verb == "false" and bool(np.any(value)):
                yield "constant_input", f"input {label!r} must evaluate to False"
            elif verb == "bounded" and np.any(value > detail):
                yield "constant_input", f"input {index} must be <= {detail}, got {value.tolist()}"


def _check_dtype(node: onnx.NodeProto, rule: OpRule, info: _Graph,
                 aliases: Mapping[str, str]) -> str | None:
    names = node.output if rule.dtype_of == "output0" else node.input
    if not names or not names[0] or names[0] not in info.dtypes:
        return None  # unknown type: no claim either way
    elem = info.dtypes[names[0]]
    trt = _ONNX_TO_TRT.get(elem, onnx.TensorProto.DataType.Name(elem))
    if aliases.get(trt, trt) in rule.dtypes:
        return None
    where = "output" if rule.dtype_of == "output0" else "input"
    return f"{where} type {trt} is not supported (supported: {', '.join(rule.dtypes)})"


def _walk(graph: onnx.GraphProto, outer: _Graph | None,
          prefix: str) -> Iterator[tuple[onnx.NodeProto, str, _Graph]]:
    info = _collect(graph, outer)
    for index, node in enumerate(graph.node):
        label = f"{prefix}{node.name or f'{node.op_type}_{index}'}"
        yield node, label, info
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subgraphs:
                yield from _walk(sub, info, f"{label}/{attr.name}/")


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    if len(model.functions):
        import onnx.inliner

        model = onnx.inliner.inline_local_functions(model)
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - inference is an aid; lint what we have without it
        return model


def _opset_findings(model: onnx.ModelProto, table: OpTable) -> list[LintFinding]:
    for imp in model.opset_import:
        if imp.domain in table.default_domains and not (
                table.opset_min <= imp.version <= table.opset_max):
            return [LintFinding(
                "<model>", "", f"opset {imp.version} is outside what TensorRT "
                f"{table.tensorrt_version} parses ({table.opset_min}..{table.opset_max})",
                rule="opset")]
    return []


def lint(model: onnx.ModelProto, table: OpTable | None = None) -> list[LintFinding]:
    """Findings, in graph order, for every node TensorRT is documented not to take."""
    table = table or load_table()
    findings = _opset_findings(model, table)
    for node, label, info in _walk(_prepare(model).graph, None, ""):
        op = node.op_type
        if node.domain not in table.default_domains:
            findings.append(LintFinding(
                op, label, f"custom op in domain {node.domain!r}: TensorRT needs a plugin "
                f"registered as {op!r}", rule="custom_domain", domain=node.domain))
            continue
        if op in table.unsupported:
            note = table.unsupported[op] or "marked unsupported in the operator table"
            findings.append(LintFinding(
                op, label, f"not supported by TensorRT {table.tensorrt_version}: {note}"))
            continue
        rule = table.supported.get(op)
        if rule is None:
            findings.append(LintFinding(op, label, f"not in the TensorRT "
                                        f"{table.tensorrt_version} op table", rule="unknown_op"))
            continue
        for reason in _check_attrs(node, rule):
            findings.append(LintFinding(op, label, reason, rule="attribute"))
        for kind, reason in _check_io(node, rule, info):
            findings.append(LintFinding(op, label, reason, rule=kind))
        dtype_reason = _check_dtype(node, rule, info, table.dtype_aliases)
        if dtype_reason:
            findings.append(LintFinding(op, label, dtype_reason, rule="dtype"))
    return findings


def report(findings: list[LintFinding], table: OpTable | None = None) -> dict[str, Any]:
    """The exporter report's ``tensorrt`` section; ``unsupported`` is empty when clean."""
    table = table or load_table()
    return {
        "tensorrt_version": table.tensorrt_version,
        "table_source": table.source,
        "unsupported": [f.to_dict() for f in findings],
    }
