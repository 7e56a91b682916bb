"""segeval --backend auto is the runtime's one rule (open_auto), not a file-suffix guess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segedge.runtime.backends.openvino import openvino_available
from tests.export.test_segeval import halves, run_segeval


@pytest.fixture
def labels_onnx(tmp_path: Path) -> Path:
    from tests.runtime.onnx_fixtures import make_labels_model

    return make_labels_model(tmp_path / "labels.onnx")


@pytest.mark.skipif(not openvino_available()[0], reason="needs OpenVINO")
@pytest.mark.parametrize("pinned", ["openvino", "onnxruntime"])
def test_auto_goes_through_the_runtime_rule(pinned: str, labels_onnx: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # the auto rule's own pin (a suffix guess would always pick onnxruntime for an .onnx)
    monkeypatch.setenv("SEGEDGE_AUTO_BACKEND", pinned)
    images, labels = halves(tmp_path, n=2)
    code, out, _ = run_segeval(capsys, labels_onnx, "--images", images, "--labels", labels,
                               "--json", tmp_path / "r.json")
    got = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and got["miou"] == 100.0
    assert got["runner"].startswith(f"{pinned} ")
    assert got["backend_reason"].endswith("pinned by SEGEDGE_AUTO_BACKEND")
    assert f"backend: {got['backend_reason']}" in out


def test_a_named_backend_is_said_so(labels_onnx: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    images, labels = halves(tmp_path, n=1)
    code, _, _ = run_segeval(capsys, labels_onnx, "--images", images, "--labels", labels,
                             "--backend", "onnxruntime", "--json", tmp_path / "r.json")
    got = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and got["backend_reason"] == "--backend onnxruntime: onnxruntime CPU"
