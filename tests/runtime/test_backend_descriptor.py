"""One descriptor per backend: a toy backend in a temporary module (one file plus its
registration) is opened by ``open_backend``, named by reasons, listed and timed by segbench,
and probed in a child process; the real backends answer from their own files."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from segedge.runtime.backends import base
from segedge.runtime.backends.base import BackendOptions, descriptor, open_backend

TOY = '''
from segedge.runtime.metadata import ArtifactMetadata, InputSpec

PRECISIONS = ("f32", "f16")
META = ArtifactMetadata(model="toy", family="toy", classes=("a", "b"), palette=(),
                        input=InputSpec(format="uint8", layout="NHWC", size=(4, 6)))


def version():
    return "0.1"


class Toy:
    name = "toy"
    metadata = META
    input_name = META.input.name
    active = "CPU"

    def __init__(self, path, options):
        if b"crash" in open(path, "rb").read():
            import os
            os.abort()

    def infer(self, tensor):
        return {"labels": np.zeros(tensor.shape[:3], np.uint8)}

    def close(self):
        pass


def create(path, options):
    return Toy(path, options)
'''


@pytest.fixture()
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    (tmp_path / "toy_backend.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    base.register_backend("toy", (".toy",), "toy_backend", "create")  # the recipe's line
    model = tmp_path / "m.toy"
    model.write_bytes(b"fine")
    yield model
    base.BACKENDS.unregister("toy")


def test_a_toy_backend_is_one_file_and_one_registration(toy: Path) -> None:
    from segedge.benchmarks import backends

    entry = descriptor("toy")
    assert entry.available() == (True, "ok") and entry.version() == "0.1"
    assert entry.precisions == ("f32", "f16") and not entry.cpu_candidate
    backend = open_backend(toy)  # by suffix
    assert entry.label(backend) == "toy CPU" and entry.bench_row(backend) == "toy"
    assert "toy" in backends.names() and "toy" in backends.default_rows()
    assert backends.peers() == {"openvino-cpu": "openvino-direct"}
    row = backends.get("toy")
    assert row.module == "segedge.benchmarks.bench_runtime" and row.runtime == "toy"
    assert row.probe() is None
    assert row.needs("fp16").kind == "plan"  # type: ignore[union-attr]
    assert row.needs("bf16") == "toy runs f32, f16 (no bf16)"


def test_a_descriptor_opens_through_the_registry_loader(toy: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """One loader for every kind (runtime.registry): the descriptor asks it, never imports."""
    loaded: list[str] = []
    real = base.BACKENDS.load

    def load(name: str) -> base.BackendFactory:
        loaded.append(name)
        return real(name)

    monkeypatch.setattr(base.BACKENDS, "load", load)
    backend = open_backend(toy)
    assert loaded == ["toy"] and backend.name == "toy" and backend.active == "CPU"
    base.register_backend("toy", (".toy",), "toy_backend", "missing")  # replaced in place
    with pytest.raises(AttributeError, match="missing"):
        open_backend(toy)  # the registry's current entry, not a stale factory


def test_segrun_offers_the_toy_backend(toy: Path) -> None:
    from click.testing import CliRunner

    from segedge.runtime.cli import segrun

    shown = CliRunner().invoke(segrun, ["--help"]).output
    assert "--backend [auto|onnxruntime|openvino|tensorrt|toy]" in shown
    refused = CliRunner().invoke(segrun, [str(toy), "demo://", "--backend", "nope"])
    assert refused.exit_code == 2 and "'toy'" in refused.output


def test_the_compile_probe_runs_in_a_child_and_survives_a_crash(toy: Path) -> None:
    entry = descriptor("toy")
    assert entry.compile_probe(toy, BackendOptions(threads=2)) is None
    toy.write_bytes(b"crash")
    assert entry.compile_probe(toy, BackendOptions()) == "its compiler crashed (signal 6)"


def test_the_real_backends_answer_from_their_own_files() -> None:
    ort = descriptor("onnxruntime")
    assert ort.providers == ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                             "CPUExecutionProvider")
    assert ort.gpu_provider_names == ort.providers[:2] and ort.cpu_candidate
    assert [r.row for r in ort.bench_rows] == ["ort-cpu", "ort-cuda", "ort-tensorrt"]
    assert descriptor("triton").bench_rows == ()
    from segedge.benchmarks.plan import DEFAULT_BACKENDS

    assert DEFAULT_BACKENDS == ("pytorch-cpu", "plain-ort", "ort-cpu", "openvino-cpu",
                                "openvino-direct", "pytorch-cuda", "ort-cuda", "ort-tensorrt",
                                "tensorrt")  # derived from the descriptors, in the old order
    with pytest.raises(Exception) as err:
        descriptor("tflite")
    assert str(err.value) == ("backend: expected one of auto, onnxruntime, openvino, tensorrt, "
                              "triton, got 'tflite'")
    pytest.importorskip("openvino")
    ov = descriptor("openvino")
    assert ov.precisions == ("f32", "bf16", "f16") and ov.cpu_candidate
    assert ov.available() == (True, "ok") and ov.version()[0].isdigit()
