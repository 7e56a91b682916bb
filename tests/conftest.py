"""Shared fixtures: where the real data is (passed explicitly to the product), and skips that
say why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from segedge.export.models.sources import restore_environ
from tests.shared_data import shared_data_root


@pytest.fixture(scope="session", autouse=True)
def _auto_backend_pinned() -> Iterator[None]:
    """`--backend auto` times OpenVINO against ONNX Runtime; the suite pins ONNX Runtime so no
    result hinges on a timing probe (tests/runtime/test_auto_backend.py tests the rule)."""
    saved = os.environ.get("SEGEDGE_AUTO_BACKEND")
    os.environ["SEGEDGE_AUTO_BACKEND"] = "onnxruntime"
    yield
    if saved is None:
        os.environ.pop("SEGEDGE_AUTO_BACKEND", None)
    else:
        os.environ["SEGEDGE_AUTO_BACKEND"] = saved


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """What a test's imports wrote to os.environ goes with it: Ultralytics' import (a fixture
    builds a YOLO checkpoint in this process) sets OMP_NUM_THREADS=1, and every segexport the
    suite ran afterwards used one OpenMP thread (a timing race in a signal test showed it)."""
    before = dict(os.environ)
    yield
    restore_environ(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if root is None:
        pytest.skip("../shared/data is absent (CamVid and the dash-cam video live there; "
                    "or set $SEGEDGE_SHARED_DATA)")
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
