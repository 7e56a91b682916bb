"""OpenVINO backend: same artifacts, same outputs as ONNX Runtime, precision set and read back."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.errors import ArtifactError, InputError

pytest.importorskip("openvino", reason="openvino not installed (pip install 'segedge[openvino]')")


def frame(h: int = 32, w: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("model", ["labels", "logits"])
def test_outputs_equal_onnxruntime(models: dict[str, Path], model: str) -> None:
    ov = open_backend(models[model], "openvino", BackendOptions(threads=1))
    ort = open_backend(models[model], "onnxruntime", BackendOptions(provider="cpu", threads=1))
    tensor = frame() if ov.metadata.input.format == "uint8" else \
        np.random.default_rng(1).random((1, 3, 32, 48), dtype=np.float32)
    got, want = ov.infer(tensor), ort.infer(tensor)
    assert sorted(got) == sorted(want) == sorted(ov.output_names)
    for name in want:
        assert got[name].shape == want[name].shape
        assert got[name].dtype == want[name].dtype
        np.testing.assert_allclose(got[name].astype(np.float64),
                                   want[name].astype(np.float64), atol=1e-5)
    assert ov.metadata == ort.metadata


def test_precision_hint_is_explicit_and_read_back(models: dict[str, Path]) -> None:
    backend = open_backend(models["labels"], "openvino", BackendOptions(threads=1))
    assert backend.active == "CPU (f32)"  # never OpenVINO's silent bf16 default
    assert backend.threads == 1
    bf16 = open_backend(models["labels"], "openvino",
                        BackendOptions(precision_hint="bf16", threads=1))
    assert bf16.precision in ("bf16", "f32")  # f32 where the CPU has no bf16


def test_refusals(models: dict[str, Path]) -> None:
    with pytest.raises(InputError) as info:
        open_backend(models["labels"], "openvino", BackendOptions(precision_hint="int4"))
    assert str(info.value) == "--precision-hint: expected one of f32, bf16, f16, got int4"
    with pytest.raises(ArtifactError) as err:
        open_backend(models["foreign"], "openvino", BackendOptions())
    assert "expected a segedge artifact (metadata) for the OpenVINO backend" in str(err.value)


def test_dynamic_input_runs_any_size(models: dict[str, Path]) -> None:
    backend = open_backend(models["labels_dynamic"], "openvino", BackendOptions(threads=1))
    out = backend.infer(frame(40, 56))
    assert out["labels"].shape == (1, 40, 56)


SIGNAL_AFTER_CLOSE = """
import gc, os, signal, sys
from segedge.runtime.backends.base import BackendOptions, open_backend
first = open_backend(sys.argv[1], "openvino", BackendOptions(threads=1))
second = open_backend(sys.argv[1], "openvino", BackendOptions(threads=1, precision_hint="bf16"))
first.close(); second.close()
del first, second  # destroyed in creation order, not LIFO
gc.collect()
got = []
signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
os.kill(os.getpid(), signal.SIGTERM)
print("handled", got)
"""


def test_a_signal_after_closing_backends_reaches_python(models: dict[str, Path]) -> None:
    """Each openvino.Core's CPU plugin swaps the signal alternate stack; two Cores destroyed
    in creation order left a freed one behind and SIGTERM crashed with SIGSEGV (exit -11).
    One Core per process (shared_core) keeps segrun's exit codes 130/143 intact."""
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_CLOSE, str(models["labels"])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.strip() == f"handled [{int(signal.SIGTERM)}]"
