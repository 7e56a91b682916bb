"""GPU benchmark cells without a GPU: the ort-tensorrt accuracy row measures the engine that was
timed (same FP16 switch, same engine cache), and every predictor's backend is closed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from segedge.benchmarks import bench_onnxruntime as bench_ort
from segedge.benchmarks import measure
from segedge.benchmarks.jobs import Loaded, ModelJob
from segedge.runtime.backends import base
from tests.runtime.onnx_fixtures import make_labels_model


def _job(artifact: Path, precision: str, cache: Path | None) -> ModelJob:
    return ModelJob(backend="ort-tensorrt", precision=precision, model="m",
                    artifact=str(artifact), imgsz=(32, 48), batch=1, iters=1, warmup=0,
                    threads=1, cache_dir=str(cache) if cache else None)


@pytest.mark.parametrize("name,precision,fp16", [
    ("ort-tensorrt", "fp16", True), ("ort-tensorrt", "fp32", False), ("ort-cuda", "fp16", False),
])
def test_options_follow_the_cell(tmp_path: Path, name: str, precision: str, fp16: bool) -> None:
    options = bench_ort.options_for(name, _job(tmp_path / "m.onnx", precision, tmp_path / "c"))
    assert options.fp16 is fp16 and options.cache_dir == tmp_path / "c"
    assert options.provider == bench_ort.PROVIDERS[name][0] and options.threads == 1


def test_accuracy_uses_the_timed_options_and_closes_its_backend(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    artifact = make_labels_model(tmp_path / "m.onnx")
    opened: list[tuple[str, base.BackendOptions]] = []
    closed: list[str] = []
    real_open = base.open_backend

    def open_backend(path: Any, backend: str = "auto", options: Any = None) -> Any:
        opened.append((backend, options))
        inner = real_open(path, backend, base.BackendOptions(provider="cpu"))

        class Reporting:  # what a TensorRT-provider session reports
            metadata, input_name = inner.metadata, inner.input_name
            name, active = "onnxruntime", "TensorrtExecutionProvider"
            infer = staticmethod(inner.infer)

            def close(self) -> None:
                closed.append(backend)
                inner.close()

        return Reporting()

    monkeypatch.setattr(base, "open_backend", open_backend)
    job = _job(artifact, "fp16", tmp_path / "cache")
    loaded = bench_ort.load("ort-tensorrt", job)
    loaded.close()
    predictor = loaded.predictor() if loaded.predictor else None
    assert predictor is not None and predictor.classes == ("background", "red")
    labels, _ = predictor.predict(np.full((32, 48, 3), (0, 0, 220), np.uint8))  # BGR red
    assert (labels == 1).all()
    assert [o for _, o in opened] == [opened[0][1]] * 2  # timing and accuracy: same options
    assert opened[0][1].fp16 is True and opened[0][1].cache_dir == tmp_path / "cache"
    # measure.accuracy closes the predictor's backend when scoring is done
    import segedge.export.evaluation.evaluate as evaluate

    class Scores:
        miou, pixel_accuracy, images = 0.5, 0.9, 1

    monkeypatch.setattr(evaluate, "pair_labels", lambda images, labels: [])
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: Scores())
    fresh = Loaded(step=lambda: None, provider="x", close=lambda: None,
                   predictor=lambda: bench_ort.options_predictor(artifact, opened[0][1]))
    scored = measure.accuracy(fresh, job)
    assert scored["miou"] == 0.5 and closed == ["onnxruntime", "onnxruntime"]


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_max_seconds_must_be_positive(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A cell time limit <= 0 would time nothing yet exit 0: refused in one line, exit 2."""
    from segedge.benchmarks.cli import main

    with pytest.raises(SystemExit) as info:
        main(["demo", "--backends", "ort-tensorrt", "--max-seconds", value])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.strip().splitlines() == [
        f"segbench: error: --max-seconds: expected a positive number of seconds, got "
        f"{float(value)}"]
