"""Shared parts of the TensorRT fake: version tables, enums and the small value types."""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

STUBS_VERSION = "10.13.0.35"  # the tensorrt-stubs release the fake's names are checked against
# ``tensorrt.__version__`` of each generation the fake plays: JetPack 5, JetPack 6, TensorRT 11.
VERSIONS = {8: "8.6.2.3", 10: "10.3.0", 11: "11.4.0.106"}
# The real bindings tests/real_bindings loads (tensorrt_cu12_bindings) and compares the fake with,
# version by version; the fake also plays 10.16 (FakeTensorRT(..., version="10.16.0.72")).
REAL_VERSIONS = ("10.3.0", "10.16.0.72", "11.4.0.106")
# TensorRT 11 removed these (NVIDIA TensorRT docs, "Migrating from TensorRT 10.x to 11.x",
# Removed Python APIs; confirmed on the 11.4 bindings); a TensorRT 11 fake must not offer them.
REMOVED_IN_11: dict[str, tuple[str, ...]] = {
    "BuilderFlag": ("FP16", "INT8", "FP8", "BF16", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                    "PREFER_PRECISION_CONSTRAINTS"),
    "Builder": ("platform_has_fast_fp16", "platform_has_fast_int8"),
}
# Still there in TensorRT 11.4 but deprecated and without effect: BuilderFlag.DIRECT_IO, and
# NetworkDefinitionCreationFlag.STRONGLY_TYPED (every 11 network is strongly typed; value 0).
DEPRECATED_IN_11: dict[str, tuple[str, ...]] = {
    "BuilderFlag": ("DIRECT_IO",), "NetworkDefinitionCreationFlag": ("STRONGLY_TYPED",)}
# Members newer than some generation the fake plays: (major, minor) of the first release with it.
# FP4 came with 10.8 (10.3 lacks it, 10.16 has it: tests/real_bindings); BF16 with 9.0, INT4 10.0.
ADDED_IN: dict[str, dict[str, tuple[int, int]]] = {
    "BuilderFlag": {"FP4": (10, 8), "BF16": (9, 0), "INT4": (10, 0)}}
# TensorRT 8.6 (JetPack 5) predates strongly typed networks.
ABSENT_IN_8: dict[str, tuple[str, ...]] = {"NetworkDefinitionCreationFlag": ("STRONGLY_TYPED",)}
PRECISION_FLAGS = ("FP16", "INT8", "FP8", "BF16", "INT4", "FP4")

_BUILDER_FLAGS = {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "TF32": 6,
                  "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10,
                  "DIRECT_IO": 11, "FP8": 15, "BF16": 17, "INT4": 22, "FP4": 26}
# Network-creation flags differ by generation: 11 dropped EXPLICIT_BATCH and renumbered
# STRONGLY_TYPED to 0 (deprecated, ignored).
CREATION_FLAGS: dict[int, dict[str, int]] = {
    8: {"EXPLICIT_BATCH": 0}, 10: {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
    11: {"STRONGLY_TYPED": 0}}
_CREATION_FLAGS = CREATION_FLAGS[10]
# What the real bindings raise when TensorRT cannot initialise CUDA (no driver, a driver too
# old, no device): pybind11's answer to a factory that returned NULL.
INIT_FAILURE = "pybind11::init(): factory function returned nullptr"


def major_minor(version: str) -> tuple[int, int]:
    parts = (version.split(".") + ["0"])[:2]
    return int(parts[0]), int(parts[1])


_DATA_TYPES = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "FP8": 6,
               "BF16": 7, "INT64": 8, "INT4": 9}
_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL", 2: "UINT8", 7: "INT64",
                16: "BF16"}
_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
          "BOOL": np.bool_, "UINT8": np.uint8, "INT64": np.int64}
TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
DeviceType = enum.IntEnum("DeviceType", {"GPU": 0, "DLA": 1})
MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1,
                                                 "DLA_LOCAL_DRAM": 2, "DLA_GLOBAL_DRAM": 3})
DataType = enum.IntEnum("DataType", _DATA_TYPES)
_QDQ = ("QuantizeLinear", "DequantizeLinear")


class Dims:
    """Tuple-like, indexable; -1 marks a dynamic dimension."""

    def __init__(self, shape: Any = ()) -> None:
        self._dims = tuple(int(d) for d in shape)

    def __len__(self) -> int:
        return len(self._dims)

    def __getitem__(self, index: int) -> int:
        return self._dims[index]

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, (Dims, tuple, list)) else False

    def __hash__(self) -> int:
        return hash(self._dims)

    def __repr__(self) -> str:
        return f"Dims{self._dims}"


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity  # noqa: PIE794

    def __init__(self) -> None:
        pass

    def log(self, severity: Any, msg: str) -> None:
        pass


class Logger(ILogger):
    def __init__(self, min_severity: Any = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity


class IHostMemory(bytes):
    """Serialized bytes (buffer protocol, as the real one)."""

    @property
    def nbytes(self) -> int:
        return len(self)

    @property
    def dtype(self) -> Any:
        return DataType.UINT8


class ITensor:
    """``dtype`` is writable up to TensorRT 10, read-only in 11 (the module binds that)."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.name, self.shape, self._dtype = name, Dims(shape), DataType[dtype]

    @property
    def dtype(self) -> Any:
        return self._dtype

    @dtype.setter
    def dtype(self, value: Any) -> None:
        self._dtype = value


class ILayer:
    def __init__(self, name: str, op: str) -> None:
        self.name, self._op = name, op

    @property
    def type(self) -> str:
        return self._op


class ParserError:
    def __init__(self, text: str) -> None:
        self._text = text

    def desc(self) -> str:
        return self._text

    def __str__(self) -> str:
        return f"In node -1 with name: and operator: () parseGraph: {self._text}"


class _Bound:
    _fake: Any  # the FakeTensorRT a module's classes are bound to


