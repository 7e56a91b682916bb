"""The runtime half of the TensorRT fake: deserialisation, engine, execution context."""

from __future__ import annotations

import base64
import json
import weakref
from typing import Any

import numpy as np

from tests.fakes.trt_fake_types import _NUMPY, DataType, Dims, ILogger, TensorIOMode, _Bound


class Runtime(_Bound):
    def __init__(self, logger: ILogger) -> None:
        self._fake.record("Runtime")
        self._fake.check_init()
        self.DLA_core = -1

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return self._fake.num_dla_cores

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        fake = self._fake
        fake.record("deserialize_cuda_engine", self.DLA_core)
        try:
            plan = json.loads(bytes(serialized_engine))
            assert plan["magic"] == "FAKEPLAN"
        except (ValueError, AssertionError, KeyError, TypeError):
            fake.violate("deserialize: not a plan")
            return None
        if plan["version"] != fake.version:
            fake.violate(f"deserialize: plan from TensorRT {plan['version']}")
            return None
        if plan["dla_core"] is not None and self.DLA_core != plan["dla_core"]:
            fake.violate(f"deserialize: DLA plan for core {plan['dla_core']} with "
                         f"Runtime.DLA_core {self.DLA_core} (set it before deserialising)")
            return None
        return fake.module.ICudaEngine(plan)


class ICudaEngine(_Bound):
    def __init__(self, plan: dict[str, Any]) -> None:
        self._plan = plan
        self._io = {t["name"]: t for t in plan["io"]}
        self._contexts: weakref.WeakSet[IExecutionContext] = weakref.WeakSet()  # live ones

    @property
    def num_io_tensors(self) -> int:
        return len(self._plan["io"])

    @property
    def num_optimization_profiles(self) -> int:  # read-only, as in the real bindings
        return int(self._plan["num_profiles"])

    def _dynamic(self) -> bool:
        return any(t["profile"] is not None for t in self._plan["io"])

    def get_tensor_name(self, index: int) -> str:
        return str(self._plan["io"][index]["name"])

    def get_tensor_mode(self, name: str) -> Any:
        return TensorIOMode.INPUT if self._io[name]["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return DataType[self._io[name]["dtype"]]

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._io[name]["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        profiles = self._io[name]["profiles"]
        if not 0 <= profile_index < len(profiles):
            raise RuntimeError(f"no profile {profile_index} for {name!r}")
        return [Dims(s) for s in profiles[profile_index]]

    def create_execution_context(self, strategy: Any = None) -> IExecutionContext | None:
        fake = self._fake
        fake.record("create_execution_context")
        if fake.context_fails or (fake.contexts_before_failure is not None
                                  and len(self._contexts) >= fake.contexts_before_failure):
            return None
        context = fake.module.IExecutionContext(self)
        self._contexts.add(context)
        return context


class IExecutionContext(_Bound):
    def __init__(self, engine: ICudaEngine) -> None:
        self._engine = engine
        self._device = self._fake.cuda.current_device()
        self._shapes: dict[str, tuple[int, ...]] = {
            n: tuple(t["shape"]) for n, t in engine._io.items()
            if t["input"] and all(d >= 0 for d in t["shape"])}
        self._addresses: dict[str, int] = {}
        self._profile = 0  # the first context selects profile 0 implicitly; so does the fake
        self._session: Any = None
        self._out_shapes: dict[tuple[tuple[int, ...], ...], dict[str, tuple[int, ...]]] = {}

    def _inputs(self) -> list[dict[str, Any]]:
        return [t for t in self._engine._plan["io"] if t["input"]]

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(
                base64.b64decode(self._engine._plan["onnx"]), providers=["CPUExecutionProvider"])
        names = [o.name for o in self._session.get_outputs()]
        return dict(zip(names, self._session.run(names, feed), strict=True))

    def _output_shapes(self) -> dict[str, tuple[int, ...]]:
        key = tuple(self._shapes[t["name"]] for t in self._inputs())
        if key not in self._out_shapes:
            feed = {t["name"]: np.zeros(self._shapes[t["name"]], _NUMPY[t["dtype"]])
                    for t in self._inputs()}
            self._out_shapes[key] = {k: v.shape for k, v in self._run(feed).items()}
        return self._out_shapes[key]

    @property
    def active_optimization_profile(self) -> int:  # read-only, as in the real bindings
        return self._profile

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        """Select a profile (enqueued on the stream later work uses); it unsets the dynamic
        input shapes, which must be set again, as TensorRT documents."""
        fake = self._fake
        fake.record("set_optimization_profile_async", int(profile_index), int(stream_handle))
        if not fake.cuda.stream_is_live(int(stream_handle)):
            fake.violate("set_optimization_profile_async on a dead stream")
            return False
        if not 0 <= profile_index < self._engine.num_optimization_profiles:
            fake.violate(f"optimization profile {profile_index} of "
                         f"{self._engine.num_optimization_profiles}")
            return False
        self._profile = int(profile_index)
        for t in self._inputs():
            if t["profile"] is not None:
                self._shapes.pop(t["name"], None)
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        shape = tuple(int(d) for d in shape)
        self._fake.record("set_input_shape", name, shape)
        spec = self._engine._io.get(name)
        if spec is None or not spec["input"]:
            return False
        low, high = (spec["profiles"][self._profile][0], spec["profiles"][self._profile][2]) \
            if spec["profile"] else (spec["shape"], spec["shape"])
        if len(shape) != len(low) or any(
                s < lo or s > hi for s, lo, hi in zip(shape, low, high, strict=True)):
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        self._fake.record("get_tensor_shape", name)
        spec = self._engine._io[name]
        if spec["input"]:
            return Dims(self._shapes.get(name, spec["shape"]))
        if any(t["name"] not in self._shapes for t in self._inputs()):
            self._fake.violate(f"output shape of {name!r} read before the input shapes were set")
            return Dims(spec["shape"])
        return Dims(self._output_shapes()[name])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._fake.record("set_tensor_address", name, int(memory))
        if self._fake.cuda.device_bytes(int(memory), 1) is None:
            self._fake.violate(f"set_tensor_address({name!r}): {int(memory):#x} is no device "
                               "memory")
            return False
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        fake, cuda = self._fake, self._fake.cuda
        fake.record("execute_async_v3", int(stream_handle), cuda.current_device())
        problems = []
        if not cuda.stream_is_live(int(stream_handle)):
            problems.append("execute on a dead stream")
        if cuda.current_device() != self._device:
            problems.append(f"execute on CUDA device {cuda.current_device()}, context on "
                            f"device {self._device}")
        missing = [n for n in self._engine._io if n not in self._addresses]
        unset = [t["name"] for t in self._inputs() if t["name"] not in self._shapes]
        if missing:
            problems.append(f"I/O tensors without an address: {missing}")
        # NvInferRuntime.h: on a dynamic engine each execution context in concurrent use must
        # use a separate optimization profile (contexts alive at once count as concurrent)
        if self._engine._dynamic() and any(
                c is not self and c._profile == self._profile for c in self._engine._contexts):
            problems.append(f"two execution contexts of a dynamic engine share optimization "
                            f"profile {self._profile}")
        if unset:
            problems.append(f"input shapes not set: {unset}")
        if problems:
            for problem in problems:
                fake.violate(problem)
            return False
        feed = {}
        for t in self._inputs():
            dtype, shape = np.dtype(_NUMPY[t["dtype"]]), self._shapes[t["name"]]
            nbytes = int(np.prod(shape)) * dtype.itemsize
            view = cuda.device_bytes(self._addresses[t["name"]], nbytes)
            if view is None:
                fake.violate(f"input {t['name']!r}: buffer smaller than {nbytes} bytes")
                return False
            feed[t["name"]] = np.frombuffer(bytes(view), dtype).reshape(shape)
        for name, value in self._run(feed).items():
            spec = self._engine._io[name]
            data = np.ascontiguousarray(value.astype(_NUMPY[spec["dtype"]])).tobytes()
            view = cuda.device_bytes(self._addresses[name], len(data))
            if view is None:
                fake.violate(f"output {name!r}: buffer smaller than {len(data)} bytes")
                return False
            view[:] = data
        return True


