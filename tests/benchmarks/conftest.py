"""Fixtures for the benchmark tests: the demo model exported once, small, and a short clip."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from segedge.benchmarks.artifacts import Artifact, ArtifactRequest, ArtifactStore
from segedge.export import scenes

SIZE = (64, 96)  # small enough for milliseconds per iteration, a multiple of the stride


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("segbench")


@pytest.fixture(scope="session")
def store(workdir: Path) -> ArtifactStore:
    return ArtifactStore(workdir / "artifacts")


@pytest.fixture(scope="session")
def demo_labels(store: ArtifactStore) -> Artifact:
    """What segedge deploys: uint8 NHWC in, labels out."""
    return store.get(ArtifactRequest("demo", "fp32", SIZE))


@pytest.fixture(scope="session")
def demo_logits(store: ArtifactStore) -> Artifact:
    """What the plain loop runs: float NCHW in, logits out (same weights)."""
    return store.get(ArtifactRequest("demo", "fp32", SIZE, emit="logits", input_format="float"))


@pytest.fixture(scope="session")
def labelled(workdir: Path) -> tuple[str, str]:
    """Four generated scenes with exact labels (the demo model's domain)."""
    images, labels = workdir / "eval" / "images", workdir / "eval" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(4):
        image, lab = scenes.sample(900 + i, SIZE)
        cv2.imwrite(str(images / f"{i}.png"), image)
        cv2.imwrite(str(labels / f"{i}.png"), lab)
    return str(images), str(labels)


@pytest.fixture(scope="session")
def clip(workdir: Path) -> tuple[Path, int]:
    """A 12-frame 96x64 scene clip (mp4v) and its frame count."""
    path = workdir / "clip.mp4"
    frames = scenes.frames(12, SIZE, seed=5)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10.0,
                             (SIZE[1], SIZE[0]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path, len(frames)


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n
