"""The default set takes its data root explicitly; without it the video cells skip, saying why."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from segedge.benchmarks import defaults
from segedge.benchmarks.plan import ModelPlan, Planner
from segedge.benchmarks.suite import Suite, SuiteConfig


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("defaults")


def _lraspp(cfg: SuiteConfig) -> ModelPlan:
    (plan,) = [p for p in cfg.plans if p.model == defaults.E2E_MODEL]
    return plan


def test_without_data_the_video_cells_skip_with_the_flag_to_pass(scenes_dir: Path) -> None:
    cfg = defaults.default_set(scenes_dir, 2, progress=False)
    plan = _lraspp(cfg)
    assert plan.skip_reason == ("needs the dash-cam video: segbench --default --data DIR "
                                "(DIR/video/solidWhiteRight.mp4)")
    decision = Planner().decide(plan, plan.cells()[0])
    assert decision.needs is None and decision.skip == plan.skip_reason
    assert cfg.frame_source is None
    assert [(e.model, e.video) for e in cfg.e2e] == [("demo", defaults.demo_clip())]


def test_a_data_root_without_the_video_says_which_file(scenes_dir: Path, tmp_path: Path) -> None:
    cfg = defaults.default_set(scenes_dir, 2, progress=False, data=tmp_path)
    assert _lraspp(cfg).skip_reason == (f"needs the dash-cam video: expected "
                                        f"{tmp_path / 'video' / 'solidWhiteRight.mp4'}, got no "
                                        "such file")


def test_the_given_data_root_is_used(scenes_dir: Path, tmp_path: Path,
                                     clip: tuple[Path, int]) -> None:
    video = tmp_path / "video" / "solidWhiteRight.mp4"
    video.parent.mkdir()
    shutil.copy(clip[0], video)
    cfg = defaults.default_set(scenes_dir, 2, progress=False, data=tmp_path)
    assert _lraspp(cfg).skip_reason is None
    assert cfg.frame_source == str(video)
    assert [(e.model, e.video) for e in cfg.e2e] == [(defaults.E2E_MODEL, str(video))]


def test_a_skipped_plan_leaves_records_with_the_reason_and_exports_nothing(
        tmp_path: Path) -> None:
    plan = ModelPlan("demo", sizes=((64, 96),), backends=("ort-cpu", "plain-ort"),
                     precisions=("fp32",), skip_reason="needs the dash-cam video: test")
    result = Suite(SuiteConfig(plans=(plan,), workdir=tmp_path, isolated=False,
                               progress=False)).run()
    assert [(r.backend, r.status, r.reason) for r in result.records] == [
        ("ort-cpu", "skipped", "needs the dash-cam video: test"),
        ("plain-ort", "skipped", "needs the dash-cam video: test")]
    assert not list(tmp_path.rglob("*.onnx"))


def test_an_empty_skip_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="ModelPlan.skip_reason: expected a reason or None"):
        ModelPlan("demo", skip_reason=" ")
