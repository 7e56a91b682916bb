"""Shared fixtures: where the real data is, and skips that say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from segedge.export.frames import shared_data_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip("../shared/data is absent (CamVid and the dash-cam video live there)")
    return root


@pytest.fixture(scope="session")
def camvid_val(shared_data: Path) -> Path:
    path = shared_data / "camvid" / "val"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def dashcam_video(shared_data: Path) -> Path:
    path = shared_data / "video" / "solidWhiteRight.mp4"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path
