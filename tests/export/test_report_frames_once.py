"""The report frames run once per graph and runtime: FP16 and INT8 hand the reference
runtime's label maps to ladder.per_runtime (``known``) instead of running both graphs on
the same frames a second time, and the report's figures are those maps' figures.  Also:
the sensitivity step's progress total is the number of units it really ranks (the
seeded fragile units are not ranked)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest

from segedge.export.config import ExportConfig, PrecisionOptions
from segedge.export.evaluation.evaluate import LabelledFrames
from segedge.export.pipeline import export
from segedge.export.precision import ladder, points, runtimes
from segedge.export.verify.compare import agreement
from segedge.runtime.preprocess import Geometry
from tests.export.test_int8_fragile import BUDGET, FakeRun, _quantized, tiny_q  # noqa: F401

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_model.py"
Key = tuple[str, str, tuple[int, ...]]  # (graph file name, runtime, the frames' tensor ids)


class Counting:
    """runtimes.run_labels, really run, each call counted and its maps kept."""

    def __init__(self) -> None:
        self.real = runtimes.run_labels
        self.calls: Counter[Key] = Counter()
        self.maps: dict[Key, list[np.ndarray]] = {}

    def __call__(self, path: Path, frames: LabelledFrames, meta: Any,
                 runtime: str | None = None) -> list[np.ndarray]:
        out = self.real(path, frames, meta, runtime)
        key = (Path(path).name, runtime or runtimes.reference(),
               tuple(id(t) for t in frames.tensors))
        self.calls[key] += 1
        self.maps[key] = out
        return out

    def of(self, name: str, rt: str) -> list[Key]:
        return [k for k in self.calls if k[0] == name and k[1] == rt]


def _check_once(counting: Counting, low: str, fp32: str, section: dict[str, Any],
                frames: int) -> None:
    """Both graphs ran once per runtime on the report frames, and the headline and the
    reference runtime's gate entry are the agreement of exactly those maps."""
    ref = runtimes.reference()
    [low_key] = counting.of(low, ref)  # the artifact runs on the report frames only
    ids = low_key[2]
    assert len(ids) == frames == section["frames"]
    fp32_key = (fp32, ref, ids)
    assert counting.calls[fp32_key] == 1 and counting.calls[low_key] == 1
    for rt, entry in section["runtimes"].items():  # the artifact: once on every runtime
        if "error" not in entry:  # (another runtime's FP32 maps of unsplit frames are the
            assert counting.calls[(low, rt, ids)] == 1  # search's, run once more: not known)
    figure = agreement(counting.maps[low_key], counting.maps[fp32_key])
    assert section["argmax_agreement"] == figure
    assert section["runtimes"][ref]["argmax_agreement"] == figure


def _fp32_name(counting: Counting, low: str) -> str:
    """The FP32 graph's file name: the other graph run on the artifact's frames."""
    ids = counting.of(low, runtimes.reference())[0][2]
    [name] = {k[0] for k in counting.calls if k[2] == ids and k[0] != low
              and k[0].endswith(".onnx") and not k[0].startswith("int8_")}
    return name


@pytest.mark.parametrize("held", [2, 32])  # unsplit (the selection's maps) and split
def test_int8_runs_the_report_frames_once_per_graph(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: int) -> None:
    counting = Counting()
    monkeypatch.setattr(runtimes, "run_labels", counting)
    rng = np.random.default_rng(0)
    for folder, count in (("calib", 10), ("held", held)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            cv2.imwrite(str(tmp_path / folder / f"f{i:02d}.png"),
                        rng.integers(0, 256, (64, 96, 3), np.uint8))
    # 2 held-out frames: the calibration folder's own (too few to split); 32: --eval-images
    evals = {} if held == 2 else {"eval_images": str(tmp_path / "held"), "eval_count": held}
    report = export(ExportConfig(
        model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
        output=tmp_path / "t_int8.onnx", quiet=True, precision=PrecisionOptions(
            mode="int8", calib=str(tmp_path / "calib"), calib_count=8, calib_method="minmax",
            int8_min_agreement=50.0, **evals)))  # type: ignore[arg-type]
    section = report["precision_report"]
    split = held >= 32
    assert section["held_out"]["split"] is split
    _check_once(counting, "int8.onnx", _fp32_name(counting, "int8.onnx"), section,
                held // 2 if split else held)
    assert section["agreement_spread"]["frames"] == section["frames"]


def test_fp16_runs_its_check_frames_once_per_graph(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting()
    monkeypatch.setattr(runtimes, "run_labels", counting)
    report = export(ExportConfig(
        model=f"{FIXTURE}:TinySeg", num_classes=3, imgsz=(64, 96),
        output=tmp_path / "t_fp16.onnx", quiet=True, precision=PrecisionOptions(mode="fp16")))
    section = report["precision_report"]
    _check_once(counting, "fp16.onnx", _fp32_name(counting, "fp16.onnx"), section, 8)
    assert section["gate"]["passed"] is True


def _frames(n: int) -> LabelledFrames:
    truths = [np.full((4, 4), i % 2, np.int64) for i in range(n)]
    geom = Geometry(frame_hw=(4, 4), net_hw=(4, 4), scale_y=1.0, scale_x=1.0)
    return LabelledFrames([np.zeros((1, 3, 4, 4), np.uint8) for _ in range(n)], [geom] * n,
                          truths, "fake")


def test_known_maps_give_the_figures_a_fresh_run_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """per_runtime with the reference's maps known runs only the other runtime, and its
    entries equal those of a run that computed everything (mIoU included)."""
    maps = {("fp32", "ref"): [np.zeros((4, 4), np.int64), np.ones((4, 4), np.int64)],
            ("low", "ref"): [np.zeros((4, 4), np.int64), np.zeros((4, 4), np.int64)],
            ("fp32", "other"): [np.ones((4, 4), np.int64), np.ones((4, 4), np.int64)],
            ("low", "other"): [np.ones((4, 4), np.int64), np.zeros((4, 4), np.int64)]}
    ran: list[tuple[str, str]] = []

    def run_labels(path: Path, frames: Any, meta: Any, rt: str | None = None) -> Any:
        ran.append((str(path), rt or "ref"))
        return maps[(str(path), rt or "ref")]

    monkeypatch.setattr(runtimes, "available", lambda: ("ref", "other"))
    monkeypatch.setattr(runtimes, "reference", lambda: "ref")
    monkeypatch.setattr(runtimes, "probe", lambda path, rt: None)
    monkeypatch.setattr(runtimes, "takes_hint", lambda rt: rt == "other")
    monkeypatch.setattr(runtimes, "run_labels", run_labels)
    meta = SimpleNamespace(classes=("a", "b"))
    fresh = ladder.per_runtime(Path("fp32"), Path("low"), _frames(2), meta,  # type: ignore[arg-type]
                               None, "fp16")
    assert sorted(ran) == [("fp32", "other"), ("fp32", "ref"), ("low", "other"), ("low", "ref")]
    ran.clear()
    known = {"ref": (maps[("fp32", "ref")], maps[("low", "ref")])}
    reused = ladder.per_runtime(Path("fp32"), Path("low"), _frames(2), meta,  # type: ignore[arg-type]
                                None, "fp16", known=known)
    assert sorted(ran) == [("fp32", "other"), ("low", "other")]
    assert reused == fresh
    assert reused["ref"]["argmax_agreement"] == 50.0 and "miou" in reused["ref"]
    with pytest.raises(ValueError, match="expected 3 known label maps per graph on ref, "
                                         r"got 2 \(fp32\) and 2 \(fp16\)"):
        ladder.per_runtime(Path("fp32"), Path("low"), _frames(3), meta,  # type: ignore[arg-type]
                           None, "fp16", known=known)


class CountedRun(FakeRun):
    """FakeRun that keeps each step it hands out (to read the sensitivity step's total)."""

    def step(self, name: str, total: int | None, unit: str) -> Any:
        made = super().step(name, total, unit)
        self.made = getattr(self, "made", {})
        self.made[name] = made
        return made


def test_the_sensitivity_total_leaves_out_the_seeded_fragile_units(
        tiny_q: tuple[Path, Path, list[points.Unit]], tmp_path: Path) -> None:  # noqa: F811
    """Seeded, the fragile units are kept in float and not ranked: the step's progress ends
    at its total, which is the other units' count."""
    from segedge.export.precision.modes import int8_steps

    pre, full, grouped = tiny_q
    fragile = {u.name for u in grouped if u.fragile}
    fragile_acts = {p for u in grouped if u.fragile for p in u.points} & _quantized(full)
    # a collapse the seed catches, then 1.5 points lost whatever else is kept: only every
    # unit in float meets it (the FP32 graph: said, not measured)
    run = CountedRun(pre, tmp_path, lambda q: 6.5 if q & fragile_acts else 1.5)
    result, _ = int8_steps.fallback_step(run, full, BUDGET)  # type: ignore[arg-type]
    assert result.fragile is not None and result.fragile["seeded"]
    assert result.met and len(result.kept_fp32) == len(grouped)
    assert [t["note"] for t in result.trials if "note" in t] == [
        "every unit in float: the FP32 graph, not measured"]
    rank = run.made["INT8 sensitivity"]
    assert rank.total == rank.done == len(grouped) - len(fragile) > 0
    assert len(result.ranking) == rank.total
    info = next(s for s in run.steps if s["step"] == "INT8 sensitivity")
    assert info["done"] == info["total"] == rank.total
