"""Serve segedge's shipped demo ONNX on a real Triton Inference Server (PyTriton's bundled one).

Run with the Python of the server environment (tests/triton/setup_server_env.sh), not the
project's: PyTriton pins numpy<2.  The server, its HTTP/gRPC protocols, model repository and
config are Triton's own; only the model is a Python-backend model whose inference function
runs ONNX Runtime on the demo graph (it has a static batch of 1, so a batch is run frame by
frame).  Models served:

- ``demo``: max_batch_size 4, dynamic batching, config parameters ``segedge_metadata`` (the
  artifact's metadata JSON, as ``segdeploy triton`` writes it) and ``segedge_sha256``;
- ``demo_nobatch``: max_batch_size 0 (the batch dim is part of the declared shape), metadata;
- ``demo_nometa``: like ``demo`` but without the segedge parameters (the hints path);
- ``demo_fp16in``: like ``demo`` but its input is declared FP16 (Triton refuses any other
  dtype), so the client must cast; the function casts back (0..255 is exact in FP16).

Prints ``READY http=<port> grpc=<port>`` on stdout once every model is ready, then serves
until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.models.model import Model
from pytriton.triton import Triton, TritonConfig

METADATA_PARAM = "segedge_metadata"
SHA_PARAM = "segedge_sha256"
_EXTRA_PARAMS: dict[str, dict[str, str]] = {}
_original = Model._get_triton_model_config


def _with_parameters(self: Model):  # type: ignore[no-untyped-def]
    """PyTriton has no public knob for config parameters: add ours to the ones it writes
    (its own ``workspace-path`` stays), so config.pbtxt carries them to the real server."""
    config = _original(self)
    config.backend_parameters.update(_EXTRA_PARAMS.get(self.model_name, {}))
    return config


Model._get_triton_model_config = _with_parameters  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--models", default="demo,demo_nobatch,demo_nometa,demo_fp16in",
                        help="comma-separated subset of the models above")
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(args.onnx), options, providers=["CPUExecutionProvider"])
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    meta = session.get_modelmeta().custom_metadata_map["segedge"]
    sha = hashlib.sha256(args.onnx.read_bytes()).hexdigest()
    frame_shape = tuple(int(d) for d in inp.shape[1:])
    label_shape = tuple(int(d) for d in out.shape[1:])

    def run_frames(frames: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run([out.name], {inp.name: f[None]})[0] for f in frames])

    @batch
    def infer_batched(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {out.name: run_frames(inputs[inp.name])}

    @batch
    def infer_fp16(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {out.name: run_frames(inputs[inp.name].astype(np.uint8))}

    def infer_whole(requests):  # type: ignore[no-untyped-def]
        return [{out.name: run_frames(r[inp.name])} for r in requests]

    params = {METADATA_PARAM: meta, SHA_PARAM: sha}
    _EXTRA_PARAMS.update({"demo": params, "demo_nobatch": params, "demo_fp16in": params})
    wanted = set(args.models.split(","))
    config = TritonConfig(http_port=args.http_port, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port, http_address="127.0.0.1",
                          grpc_address="127.0.0.1", exit_timeout_secs=2,
                          allow_metrics=False)
    batched = ModelConfig(max_batch_size=4, batcher=DynamicBatcher(max_queue_delay_microseconds=0))
    with Triton(config=config, workspace=args.workspace) as triton:
        io = dict(inputs=[Tensor(name=inp.name, dtype=np.uint8, shape=frame_shape)],
                  outputs=[Tensor(name=out.name, dtype=np.uint8, shape=label_shape)])
        if "demo" in wanted:
            triton.bind("demo", infer_batched, config=batched, strict=True, **io)
        if "demo_nometa" in wanted:
            triton.bind("demo_nometa", infer_batched, config=batched, strict=True, **io)
        if "demo_nobatch" in wanted:
            triton.bind("demo_nobatch", infer_whole, config=ModelConfig(batching=False),
                        strict=True,
                        inputs=[Tensor(name=inp.name, dtype=np.uint8, shape=(1, *frame_shape))],
                        outputs=[Tensor(name=out.name, dtype=np.uint8, shape=(1, *label_shape))])
        if "demo_fp16in" in wanted:
            triton.bind("demo_fp16in", infer_fp16, config=batched, strict=True,
                        inputs=[Tensor(name=inp.name, dtype=np.float16, shape=frame_shape)],
                        outputs=io["outputs"])
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"READY http={args.http_port} grpc={args.grpc_port}", flush=True)
        triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
