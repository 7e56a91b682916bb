"""A recording fake of the ``tensorrt`` Python module: TensorRT 8.6, 10 and 11 behaviours.

Names and parameter names follow tensorrt-stubs ``STUBS_VERSION`` (checked by
test_fakes_match_api); what differs by generation follows NVIDIA's migration
guides (tables below).  The fake is functional: the ONNX parser reads the file
with ``onnx``, a "plan" is JSON carrying the ONNX, and an execution context
runs it with ONNX Runtime on the CPU, reading inputs from and writing outputs
to the fake CUDA memory (``cuda_fake``) at the addresses it was given.  So
masks from the fake engine equal the CPU path's, and everything TensorRT
would reject is recorded as a violation and answered as TensorRT would
(False / None): a dynamic input without a profile, precision flags on a
strongly typed network, an output shape read before the input shapes were
set, an I/O tensor without an address or with too small a buffer, execution
on another CUDA device than the context's, two live execution contexts of a
dynamic engine on one optimization profile, a DLA plan deserialised before
``Runtime.DLA_core`` was set, a U8S8 Q/DQ graph.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass, field
from typing import Any

from tests.fakes import trt_fake_build as build
from tests.fakes import trt_fake_run as run
from tests.fakes.cuda_fake import FakeCuda
from tests.fakes.trt_fake_types import (
    _BUILDER_FLAGS,
    ABSENT_IN_8,
    ADDED_IN,
    CREATION_FLAGS,
    DEPRECATED_IN_11,
    INIT_FAILURE,
    REAL_VERSIONS,
    REMOVED_IN_11,
    STUBS_VERSION,
    VERSIONS,
    DataType,
    DeviceType,
    Dims,
    IHostMemory,
    ILayer,
    ILogger,
    ITensor,
    Logger,
    MemoryPoolType,
    ParserError,
    TensorIOMode,
    major_minor,
)

__all__ = ["STUBS_VERSION", "VERSIONS", "REAL_VERSIONS", "REMOVED_IN_11", "DEPRECATED_IN_11",
           "ABSENT_IN_8", "INIT_FAILURE", "FakeTensorRT"]


@dataclass
class FakeTensorRT:
    """The fake's state and knobs; ``module`` is what ``import tensorrt`` returns."""

    cuda: FakeCuda
    generation: int = 10
    num_dla_cores: int = 0
    dla_unsupported: tuple[str, ...] = ("ArgMax", "TopK")  # op types DLA cannot run
    build_fails: bool = False
    context_fails: bool = False  # create_execution_context() -> None (out of device memory)
    contexts_before_failure: int | None = None  # ... once an engine has this many contexts
    init_fails: bool = False  # Builder/Runtime raise TypeError although CUDA answers (driver
    # too old for this TensorRT); they also do wherever the fake CUDA has no driver or device
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    version: str = ""

    def __post_init__(self) -> None:
        self.version = self.version or VERSIONS[self.generation]
        self.generation = major_minor(self.version)[0]
        self.module = _module(self)

    def check_init(self) -> None:
        """Builder()/Runtime(): the real bindings raise TypeError where TensorRT cannot
        initialise CUDA (pybind11's answer to the NULL its factory returned)."""
        if self.init_fails or self.cuda.driver_version <= 0 or not self.cuda.devices:
            raise TypeError(INIT_FAILURE)

    def record(self, *call: Any) -> None:
        self.calls.append(call)

    def violate(self, message: str) -> None:
        self.violations.append(message)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


def _flag_enum(name: str, members: dict[str, int], fake: FakeTensorRT) -> Any:
    removed = set(REMOVED_IN_11.get(name, ())) if fake.generation >= 11 else set()
    absent = set(ABSENT_IN_8.get(name, ())) if fake.generation < 10 else set()
    version = major_minor(fake.version)
    newer = {k for k, first in ADDED_IN.get(name, {}).items() if version < first}
    return enum.IntEnum(name, {k: v for k, v in members.items()
                               if k not in removed | absent | newer})


def _module(fake: FakeTensorRT) -> Any:
    module = types.ModuleType("tensorrt")
    module.__version__ = fake.version  # type: ignore[attr-defined]
    bound: dict[str, type] = {}
    for cls in (build.INetworkDefinition, build.OnnxParser, build.IOptimizationProfile,
                build.ITimingCache, build.IBuilderConfig, build.Builder, run.Runtime,
                run.ICudaEngine, run.IExecutionContext):
        attrs: dict[str, Any] = {"_fake": fake, "__module__": "tensorrt"}
        if cls is build.Builder and fake.generation < 11:  # queries TensorRT 11 removed
            attrs.update({name: property(lambda self: True) for name in REMOVED_IN_11["Builder"]})
        bound[cls.__name__] = type(cls.__name__, (cls,), attrs)
    bound["IBuilderConfig"]._cache_type = bound["ITimingCache"]  # type: ignore[attr-defined]
    for name, cls in bound.items():
        setattr(module, name, cls)
    for cls in (Dims, ILogger, Logger, IHostMemory, ITensor, ILayer, ParserError):
        setattr(module, cls.__name__, cls)
    if fake.generation >= 11:  # ITensor.dtype became read-only (strong typing only)
        read_only = property(lambda self: self._dtype)
        module.ITensor = type("ITensor", (ITensor,),  # type: ignore[attr-defined]
                              {"dtype": read_only, "__module__": "tensorrt"})
    module.BuilderFlag = _flag_enum("BuilderFlag", _BUILDER_FLAGS, fake)  # type: ignore[attr-defined]
    creation: dict[str, int] = CREATION_FLAGS[min(max(fake.generation, 8), 11)]
    module.NetworkDefinitionCreationFlag = _flag_enum(  # type: ignore[attr-defined]
        "NetworkDefinitionCreationFlag", creation, fake)
    for value in (DataType, DeviceType, MemoryPoolType, TensorIOMode):
        setattr(module, value.__name__, value)
    return module

