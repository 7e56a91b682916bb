"""Triton backend: ``triton://host:8000/model[/version]`` (HTTP) and ``triton+grpc://host:8001/model``.

A thin edge client and a central GPU server share one pipeline: frames are preprocessed
here, sent to a Triton Inference Server with ``tritonclient`` and decoded and drawn here.
Everything the runtime needs comes from the server, never assumed:

- the segedge metadata from the model config parameter ``segedge_metadata`` (``segdeploy
  triton`` writes the artifact's metadata JSON there), read by ``ArtifactMetadata.from_props``;
  without it, the foreign-ONNX hints (``BackendOptions.metadata``: --classes/--mean/--std/--bgr)
  as for a foreign ONNX, else one line saying what is missing;
- input/output names and dtypes from the server's model metadata (an FP16 input is fed FP16);
- the batch from the model config: ``max_batch_size > 0`` means the server batches (the batch
  dimension is not in its dims; frames are sent in chunks of at most that many);
- that the server is live and ready and the model ready, checked at open.

Every call has a timeout (``?timeout=S`` in the URI, default 30 s); a server that stops
answering mid-run is a ``TritonLostError`` (exit 4, the pipeline's error path), never a hang.
Messages name the server as ``http://host:port`` without any password.  The URI and the
HTTP/gRPC calls live in backends.triton_client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.backends.triton_client import (
    TritonClient,
    TritonTarget,
    message_of,
    status_of,
)
from segedge.runtime.contract import first_line
from segedge.runtime.errors import (
    ArtifactError,
    BackendUnavailableError,
    DegradedRunError,
    InputError,
    SegedgeError,
)
from segedge.runtime.metadata import METADATA_KEY, ArtifactMetadata
from segedge.runtime.tasks import get_task

log = logging.getLogger("segedge.runtime")

# The descriptor's answers (runtime.backends.base): a served model has no file for segbench to
# export and time here, and its ``active`` already names it ('triton http://h:8000 model m v1').
BENCH_ROWS: tuple[()] = ()


def label(backend: Any) -> str:
    return str(backend.active)


def available() -> tuple[bool, str]:
    """Is a Triton client installed?  (The server itself is asked when a model opens.)"""
    try:
        import tritonclient  # noqa: F401
    except ImportError as err:
        return False, (f"triton: expected tritonclient (pip install 'segedge[triton]'), got "
                       f"{type(err).__name__}: {first_line(err)}")
    return True, "ok"


def version() -> str:
    """The tritonclient distribution's version (the package has no ``__version__``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("tritonclient")
    except PackageNotFoundError:
        return "absent"

METADATA_PARAM = "segedge_metadata"
# Triton's tensor datatypes as ONNX Runtime names them (the foreign-metadata reader's terms).
_ONNX_TYPES = {"FP32": "tensor(float)", "FP16": "tensor(float16)", "FP64": "tensor(double)",
               "UINT8": "tensor(uint8)", "INT8": "tensor(int8)", "INT32": "tensor(int32)",
               "INT64": "tensor(int64)", "BOOL": "tensor(bool)"}


class TritonLostError(DegradedRunError):
    """The server stopped answering after the run had started (exit 4: outputs incomplete)."""


class _ServedModel:
    """The server's model metadata in the shape of an ONNX Runtime session's get_inputs /
    get_outputs, so the one foreign-metadata reader (backends.onnxruntime.infer_metadata)
    works on it unchanged."""

    @dataclass(frozen=True)
    class Arg:
        name: str
        type: str
        shape: list[int | str]

    def __init__(self, model_metadata: dict[str, Any]) -> None:
        self._meta = model_metadata

    def _args(self, key: str) -> list[_ServedModel.Arg]:
        return [self.Arg(t["name"], _ONNX_TYPES.get(t["datatype"], t["datatype"]),
                         [d if d > 0 else f"dim{i}" for i, d in enumerate(t["shape"])])
                for t in self._meta.get(key, [])]

    def get_inputs(self) -> list[_ServedModel.Arg]:
        return self._args("inputs")

    def get_outputs(self) -> list[_ServedModel.Arg]:
        return self._args("outputs")


class TritonBackend:
    """One model on a Triton server; ``infer`` returns the outputs the metadata names."""

    name = "triton"

    def __init__(self, uri: str, options: BackendOptions) -> None:
        self.target = TritonTarget.parse(uri)
        self.source = f"triton {self.target.where} model {self.target.model}"
        self._client = TritonClient(self.target)
        try:
            self._open(options)
        except BaseException:
            self._client.close()
            raise

    def _open(self, options: BackendOptions) -> None:
        t = self.target
        self._check_server()
        try:
            served = self._client.model_metadata()
            config = self._client.model_config()
            model_ready = self._client.model_ready()
        except SegedgeError:
            raise
        except Exception as err:  # noqa: BLE001 - tritonclient raises its own types
            if "NOT_FOUND" in status_of(err) or status_of(err) == "404" or "unknown model" in \
                    message_of(err):
                raise InputError("model", f"a model served by triton {t.where}",
                                 f"{t.model!r}{f' version {t.version}' if t.version else ''} "
                                 f"({message_of(err)})") from err
            raise BackendUnavailableError(f"{self.source}: expected its model metadata and "
                                          f"config, got {message_of(err)}") from err
        if not model_ready:
            raise BackendUnavailableError(f"{self.source}: expected a ready model, got one that "
                                          "is not ready (loading or failed: see the server log)")
        versions = sorted((str(v) for v in served.get("versions", [])), key=_version_key)
        self.version = t.version or (versions[-1] if versions else "?")
        self.max_batch = int(config.get("max_batch_size", 0) or 0)
        self.metadata = self._read_metadata(served, config, options)
        self.input_name = self.metadata.input.name
        inputs = {i["name"]: i for i in served.get("inputs", [])}
        outputs = {o["name"] for o in served.get("outputs", [])}
        if self.input_name not in inputs:
            raise ArtifactError(f"{self.source}: expected input {self.input_name!r} (from its "
                                f"metadata), got inputs {sorted(inputs)}")
        get_task(self.metadata.task, self.source).check_outputs(self.metadata, outputs,
                                                                self.source)
        self.output_names = get_task(self.metadata.task).output_names(self.metadata)
        datatype = inputs[self.input_name]["datatype"]
        from tritonclient.utils import triton_to_np_dtype

        dtype = triton_to_np_dtype(datatype)
        if dtype is None:
            raise ArtifactError(f"{self.source}: expected a numeric input, got {datatype}")
        self.input_dtype = np.dtype(dtype)
        dims = inputs[self.input_name]["shape"]
        # max_batch_size 0: the batch is the first declared dim (fixed: pad to it, like ONNX).
        self._fixed_batch = dims[0] if self.max_batch == 0 and dims and dims[0] > 0 else None
        batch = None if self.max_batch > 0 else self._fixed_batch
        self.metadata = replace(self.metadata, input=replace(self.metadata.input, batch=batch))

    def _check_server(self) -> None:
        where = self.target.where
        try:
            live = self._client.live()
            ready = live and self._client.ready()
        except SegedgeError:
            raise
        except Exception as err:  # noqa: BLE001 - connection refused, DNS, timeout, ...
            raise BackendUnavailableError(f"triton {where}: expected a live Triton server, got "
                                          f"{type(err).__name__}: {message_of(err)}") from err
        if not live:
            raise BackendUnavailableError(f"triton {where}: expected a live Triton server, got "
                                          "one that says it is not live")
        if not ready:
            raise BackendUnavailableError(f"triton {where}: expected a ready Triton server, got "
                                          "a live one that is not ready")

    def _read_metadata(self, served: dict[str, Any], config: dict[str, Any],
                       options: BackendOptions) -> ArtifactMetadata:
        param = (config.get("parameters") or {}).get(METADATA_PARAM) or {}
        raw = param.get("string_value")
        found = ArtifactMetadata.from_props({METADATA_KEY: raw}, self.source) if raw else None
        if found is not None:
            if options.metadata is not None and options.metadata.family == "foreign":
                log.warning("%s carries segedge metadata; --mean/--std/--classes/--bgr ignored",
                            self.source)
            return found
        if options.metadata is None:
            raise ArtifactError(
                f"{self.source}: expected segedge metadata in the model config parameter "
                f"{METADATA_PARAM!r} (segdeploy triton writes it) or hints "
                "(--classes/--mean/--std/--bgr), got neither")
        from segedge.runtime.backends.onnxruntime import infer_metadata

        try:
            return infer_metadata(_ServedModel(served), Path(self.target.model), options.metadata)
        except ArtifactError as err:
            raise ArtifactError(f"{self.source}: {err}") from err

    @property
    def active(self) -> str:
        return f"triton {self.target.where} model {self.target.model} v{self.version}"

    def _chunks(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Pieces the server takes: at most max_batch_size frames, or its fixed batch."""
        n = tensor.shape[0]
        size = self.max_batch if self.max_batch > 0 else self._fixed_batch or n
        pieces = [tensor[i:i + size] for i in range(0, n, size)]
        last = pieces[-1]
        if self._fixed_batch is not None and last.shape[0] < size:  # pad; dropped after
            pieces[-1] = np.concatenate([last, np.repeat(last[-1:], size - len(last), axis=0)])
        return pieces

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        if tensor.dtype != self.input_dtype:
            tensor = tensor.astype(self.input_dtype)  # e.g. an FP16 input
        n = tensor.shape[0]
        results = [self._call(np.ascontiguousarray(piece)) for piece in self._chunks(tensor)]
        return {name: np.concatenate([r[name] for r in results])[:n]
                for name in self.output_names}

    def _call(self, piece: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return self._client.infer(self.input_name, piece, self.output_names)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as err:  # noqa: BLE001 - gevent's Timeout is a BaseException
            raise self._failure(err) from err

    def _failure(self, err: BaseException) -> SegedgeError:
        """A refused request (server still live) or a lost server: which one, in one line."""
        why = f"{type(err).__name__}: {message_of(err)}"
        self._client.reset()
        try:
            live = self._client.live()
        except Exception:  # noqa: BLE001 - no answer is the answer
            live = False
        if live:
            return ArtifactError(f"{self.source}: expected an inference answer, got {why}")
        return TritonLostError(f"{self.source}: expected an inference answer, got {why}; the "
                               "server no longer answers (stopped or unreachable)")

    def close(self) -> None:
        self._client.close()


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def create(uri: str | Path, options: BackendOptions) -> TritonBackend:
    return TritonBackend(str(uri), options)
