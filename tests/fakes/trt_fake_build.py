"""The builder half of the TensorRT fake: network, ONNX parser, builder config, builder."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.fakes.trt_fake_types import (
    _ONNX_TO_TRT,
    _QDQ,
    PRECISION_FLAGS,
    DeviceType,
    Dims,
    IHostMemory,
    ILayer,
    ILogger,
    ITensor,
    ParserError,
    _Bound,
)


class INetworkDefinition(_Bound):
    def __init__(self, strongly_typed: bool) -> None:
        self._strong = strongly_typed
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._layers: list[ILayer] = []
        self._onnx = b""
        self._qdq = False

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    def get_layer(self, index: int) -> ILayer:
        return self._layers[index]


class OnnxParser(_Bound):
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self._network, self._errors = network, []  # type: list[ParserError]

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def parse_from_file(self, model: str) -> bool:
        import onnx
        from onnx import numpy_helper

        self._fake.record("parse_from_file", model)
        proto = onnx.load(model)
        inits = {t.name: t for t in proto.graph.initializer}
        for node in proto.graph.node:
            if node.op_type in _QDQ and len(node.input) > 2 and node.input[2] in inits:
                zero = inits[node.input[2]]
                if zero.data_type == onnx.TensorProto.UINT8 or (
                        numpy_helper.to_array(zero) != 0).any():
                    self._errors.append(ParserError(
                        f"{node.op_type}: TensorRT supports only INT8/FP8 zero points equal to 0"))
                    return False
        net = self._network

        def tensor(value: Any) -> ITensor:
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1
                         for d in value.type.tensor_type.shape.dim)
            return self._fake.module.ITensor(value.name, dims,
                                             _ONNX_TO_TRT[value.type.tensor_type.elem_type])

        net._inputs = [tensor(v) for v in proto.graph.input if v.name not in inits]
        net._outputs = [tensor(v) for v in proto.graph.output]
        net._layers = [ILayer(n.name or f"{n.op_type}_{i}", n.op_type)
                       for i, n in enumerate(proto.graph.node)]
        net._qdq = any(n.op_type in _QDQ for n in proto.graph.node)
        net._onnx = proto.SerializeToString()
        return True


class IOptimizationProfile(_Bound):
    def __init__(self) -> None:
        self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
        self._fake.record("profile.set_shape", input, tuple(min), tuple(opt), tuple(max))
        self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

    def get_shape(self, input: str) -> list[Dims]:  # noqa: A002
        return [Dims(s) for s in self._shapes[input]]


class ITimingCache(_Bound):
    def __init__(self, entries: dict[str, str]) -> None:
        self._entries = entries

    def serialize(self) -> IHostMemory:
        return IHostMemory(b"FAKETC" + self._fake.version.encode() + b"\n"
                           + json.dumps(self._entries).encode())


class IBuilderConfig(_Bound):
    def __init__(self) -> None:
        self._flags: set[str] = set()
        self._pools: dict[str, int] = {}
        self._profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.builder_optimization_level = 3

    def set_flag(self, flag: Any) -> None:
        self._fake.record("set_flag", flag.name)
        self._flags.add(flag.name)

    def get_flag(self, flag: Any) -> bool:
        return flag.name in self._flags

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        self._fake.record("set_memory_pool_limit", pool.name, pool_size)
        self._pools[pool.name] = pool_size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self._fake.record("add_optimization_profile")
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:  # read-only, as in the real bindings
        return len(self._profiles)

    def can_run_on_DLA(self, layer: ILayer) -> bool:  # noqa: N802 - the real name
        return layer.type not in self._fake.dla_unsupported

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        blob = bytes(serialized_timing_cache)
        if not blob:
            return type(self)._cache_type({})
        if not blob.startswith(b"FAKETC"):
            raise RuntimeError("Could not deserialize timing cache: bad magic")
        head, _, body = blob.partition(b"\n")
        cache = type(self)._cache_type(json.loads(body or b"{}"))
        cache._from = head[6:].decode()  # type: ignore[attr-defined]
        return cache

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._fake.record("set_timing_cache", ignore_mismatch)
        if getattr(cache, "_from", self._fake.version) != self._fake.version and \
                not ignore_mismatch:
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._cache

    _cache_type: type[ITimingCache]


class Builder(_Bound):
    def __init__(self, logger: ILogger) -> None:
        self._fake.record("Builder")
        self._fake.check_init()
        self._logger = logger

    @property
    def logger(self) -> ILogger:  # read-only, as in the real bindings
        return self._logger

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802
        return self._fake.num_dla_cores

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        self._fake.record("create_network", flags)
        members = self._fake.module.NetworkDefinitionCreationFlag.__members__
        strong = self._fake.generation >= 11 or (  # 11: always; its STRONGLY_TYPED is ignored
            "STRONGLY_TYPED" in members and bool(flags & (1 << int(members["STRONGLY_TYPED"]))))
        return self._fake.module.INetworkDefinition(strong)

    def create_builder_config(self) -> IBuilderConfig:
        return self._fake.module.IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return self._fake.module.IOptimizationProfile()

    def _refuse(self, message: str) -> None:
        self._fake.violate(message)

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig
                                 ) -> IHostMemory | None:
        fake = self._fake
        fake.record("build_serialized_network")
        precision_flags = sorted(config._flags & set(PRECISION_FLAGS))
        dla = config.default_device_type == DeviceType.DLA
        problems = []
        if fake.build_fails:
            problems.append("build failed (knob)")
        if network._strong and precision_flags:
            problems.append(f"precision flags {precision_flags} on a strongly typed network")
        if dla and network._strong and fake.generation < 11:
            problems.append("DLA takes no strongly typed network on TensorRT 10")
        if dla and not network._strong and not precision_flags:
            problems.append("DLA needs the FP16 or INT8 flag")
        if dla and not 0 <= config.DLA_core < fake.num_dla_cores:
            problems.append(f"DLA core {config.DLA_core} of {fake.num_dla_cores}")
        if network._qdq and not network._strong and "INT8" not in precision_flags:
            problems.append("a weakly typed Q/DQ network needs the INT8 flag")
        profiles = [p._shapes for p in config._profiles]
        io = []
        for t in network._inputs:
            dims = tuple(t.shape)
            entry: dict[str, Any] = {"name": t.name, "input": True, "dtype": t.dtype.name,
                                     "shape": list(dims), "profile": None, "profiles": []}
            if any(d < 0 for d in dims):  # every profile must cover every dynamic input
                if not profiles or any(t.name not in p for p in profiles):
                    problems.append(f"dynamic input {t.name!r} without an optimization profile")
                    continue
                for profile in profiles:
                    low, opt, high = profile[t.name]
                    if len(low) != len(dims) or any(d >= 0 and not lo == d == hi for d, lo, hi
                                                    in zip(dims, low, high, strict=True)):
                        problems.append(f"profile {low}..{high} does not fit {dims}")
                    entry["profiles"].append([list(low), list(opt), list(high)])
                entry["profile"] = entry["profiles"][0]
            io.append(entry)
        io += [{"name": t.name, "input": False, "dtype": t.dtype.name, "shape": list(t.shape),
                "profile": None, "profiles": []} for t in network._outputs]
        if problems:
            for problem in problems:
                self._refuse(problem)
            return None
        # A static network without a profile gets TensorRT's one default profile.
        plan = {"magic": "FAKEPLAN", "version": fake.version, "io": io,
                "num_profiles": max(1, len(profiles)),
                "onnx": base64.b64encode(network._onnx).decode(),
                "dla_core": config.DLA_core if dla else None, "flags": sorted(config._flags),
                "strongly_typed": network._strong, "pools": config._pools,
                "opt_level": config.builder_optimization_level}
        if config._cache is not None:
            config._cache._entries["layers"] = str(len(network._layers))
        return IHostMemory(json.dumps(plan).encode())


