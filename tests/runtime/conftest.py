"""Fixtures for the runtime tests: tiny ONNX models and a synthetic clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime.onnx_fixtures import (
    make_classifier_model,
    make_labels_model,
    make_logits_model,
    write_video,
)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "labels": make_labels_model(root / "labels.onnx"),
        "labels_dynamic": make_labels_model(root / "labels_dynamic.onnx", size=None),
        "logits": make_logits_model(root / "logits.onnx"),
        "logits_dynamic": make_logits_model(root / "logits_dynamic.onnx", size=None),
        "foreign": make_logits_model(root / "foreign.onnx", with_metadata=False,
                                     input_name="images"),
        "classifier": make_classifier_model(root / "classifier.onnx"),
    }


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames, 64x48, 25 fps, mp4v."""
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 40)
