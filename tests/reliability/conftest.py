"""Fixtures for the reliability suite: tiny models and clips, built once per session.

Runtime fixtures are prefixed ``rt_`` (export reliability tests live beside them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.runtime_media import noise_video
from tests.runtime.onnx_fixtures import make_labels_model, make_logits_model, write_video


@pytest.fixture(scope="session")
def rt_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rt_models")
    return {
        "labels": make_labels_model(root / "labels.onnx"),
        "labels_dynamic": make_labels_model(root / "labels_dynamic.onnx", size=None),
        "logits": make_logits_model(root / "logits.onnx"),
    }


@pytest.fixture(scope="session")
def rt_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 frames, 64x48, 25 fps, mp4v."""
    return write_video(tmp_path_factory.mktemp("rt_clip") / "clip.mp4", 40)


@pytest.fixture(scope="session")
def rt_noise_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames of 320x240 noise (MJPG): outputs of it fill a 300 kB disk."""
    return noise_video(tmp_path_factory.mktemp("rt_noise") / "noise.avi", 30)
