"""Read what a provider must know *before* ONNX Runtime opens a model, without the onnx package.

ONNX Runtime shows an artifact's metadata only on a built session, but the
TensorRT provider's options (INT8 on, optimisation profile, engine cache
folder) must be fixed before the session is built.  The runtime has no onnx
package (edge boxes), so this walks the ModelProto's protobuf wire format for
the three things needed: metadata_props, the top-level op types and a content
hash.  Large initializers are skipped by slicing, never decoded.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from segedge.runtime.errors import ArtifactError

# Field numbers from onnx.proto (ModelProto, GraphProto, NodeProto, StringStringEntryProto).
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_NODE = 1
_NODE_OP_TYPE = 4
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


@dataclass(frozen=True)
class OnnxPeek:
    """The parts of an ONNX file a provider needs up front."""

    sha256: str  # of the file's bytes: a re-export with new weights changes it
    metadata_props: dict[str, str]
    op_types: frozenset[str]  # top-level graph only

    @property
    def has_qdq(self) -> bool:
        return bool({"QuantizeLinear", "DequantizeLinear"} & self.op_types)


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, memoryview | int]]:
    """(field number, value) of one message; length-delimited values as zero-copy slices."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield field, value
            continue
        if wire == 2:
            size, i = _varint(buf, i)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i + size > len(buf):
            raise ValueError("truncated field")
        yield field, buf[i:i + size]
        i += size


def _text(value: memoryview | int) -> str:
    return bytes(value).decode("utf-8", "replace") if isinstance(value, memoryview) else ""


def peek_bytes(data: bytes) -> OnnxPeek:
    buf = memoryview(data)
    props: dict[str, str] = {}
    ops: set[str] = set()
    for field, value in _fields(buf):
        if field == _MODEL_METADATA and isinstance(value, memoryview):
            entry = dict(_fields(value))
            props[_text(entry.get(_ENTRY_KEY, 0))] = _text(entry.get(_ENTRY_VALUE, 0))
        elif field == _MODEL_GRAPH and isinstance(value, memoryview):
            for gfield, node in _fields(value):
                if gfield == _GRAPH_NODE and isinstance(node, memoryview):
                    for nfield, op in _fields(node):
                        if nfield == _NODE_OP_TYPE:
                            ops.add(_text(op))
    return OnnxPeek(hashlib.sha256(data).hexdigest(), props, frozenset(ops))


_CACHE: dict[tuple[str, int, int], OnnxPeek] = {}
_CACHE_SIZE = 8


def peek(path: str | Path) -> OnnxPeek:
    """Peek at an ONNX file (memoised on path, size and mtime: reopening costs nothing)."""
    path = Path(path)
    try:
        stat = os.stat(path)
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _CACHE:
            while len(_CACHE) >= _CACHE_SIZE:  # bounded: drop the oldest
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = peek_bytes(path.read_bytes())
        return _CACHE[key]
    except OSError as err:
        raise ArtifactError(f"{path}: expected a readable ONNX file, got {err.strerror}") from err
    except ValueError as err:
        raise ArtifactError(f"{path}: expected an ONNX protobuf, got a malformed file "
                            f"({err})") from err
