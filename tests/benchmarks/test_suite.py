"""A small real run on the demo model: records, files, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from segedge.benchmarks import plots, report
from segedge.benchmarks.plan import ModelPlan
from segedge.benchmarks.suite import Suite, SuiteConfig, SuiteResult

SIZE = (64, 96)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REQUIRED = ("model", "backend", "precision", "imgsz", "p50_ms", "p90_ms", "p99_ms", "fps")


@pytest.fixture(scope="module")
def result(workdir: Path, demo_labels: object, demo_logits: object,
           labelled: tuple[str, str]) -> SuiteResult:
    images, labels = labelled
    plan = ModelPlan("demo", sizes=(SIZE,),
                     backends=("pytorch-cpu", "plain-ort", "ort-cpu", "ort-cuda"),
                     precisions=("fp32", "int8"), eval_images=images, eval_labels=labels,
                     iters=6, warmup=1)
    cfg = SuiteConfig(plans=(plan,), threads=2, workdir=workdir, isolated=False,
                      progress=False, command="segbench demo (test)")
    return Suite(cfg).run()


def test_every_cell_leaves_a_record(result: SuiteResult) -> None:
    got = {(r.backend, r.precision): r.status for r in result.records}
    assert len(result.records) == 8
    assert got[("ort-cpu", "fp32")] == "ok"
    assert got[("plain-ort", "fp32")] == "ok"
    assert got[("pytorch-cpu", "fp32")] == "ok"
    assert got[("ort-cpu", "int8")] == "skipped"  # no calibration frames given
    for r in result.records:
        assert r.ok or r.reason, r


def test_measured_records_are_sane(result: SuiteResult) -> None:
    for r in (r for r in result.records if r.ok):
        assert r.p50_ms is not None and r.p90_ms is not None and r.p99_ms is not None
        assert r.max_ms is not None and r.min_ms is not None and r.mean_ms is not None
        assert 0 < r.min_ms <= r.p50_ms <= r.p90_ms <= r.p99_ms <= r.max_ms
        assert r.fps == pytest.approx(1000.0 / r.mean_ms, rel=1e-3)
        assert r.iters == 6 and r.imgsz == list(SIZE)
        assert r.model_size_bytes and r.model_size_bytes > 10_000
        assert r.peak_rss_mib and r.peak_rss_mib > 10


def test_ratios_and_accuracy(result: SuiteResult) -> None:
    by = {(r.backend, r.precision): r for r in result.records}
    seg, plain, torch_row = by[("ort-cpu", "fp32")], by[("plain-ort", "fp32")], \
        by[("pytorch-cpu", "fp32")]
    assert plain.vs_plain == 1.0 and torch_row.vs_pytorch == 1.0
    assert seg.vs_plain == pytest.approx(plain.p50_ms / seg.p50_ms, rel=1e-2)
    assert seg.vs_pytorch == pytest.approx(torch_row.p50_ms / seg.p50_ms, rel=1e-2)
    # The demo model knows generated scenes: well above chance for 7 classes.
    assert seg.miou is not None and seg.miou > 50.0
    assert torch_row.miou == pytest.approx(seg.miou, abs=1.0)  # same network, same frames
    assert plain.miou is None and plain.accuracy_note


def test_json_csv_markdown_and_plots(result: SuiteResult, tmp_path: Path) -> None:
    js = report.write_json(result, tmp_path / "out.json")
    data = json.loads(js.read_text())
    assert data["environment"]["cpu"]["logical_cores"] >= 1
    assert data["environment"]["load_average_start"] is not None
    assert len(data["records"]) == len(result.records)
    for rec in data["records"]:
        assert all(key in rec for key in REQUIRED)
    rows = list(csv.DictReader(report.write_csv(result.records, tmp_path / "out.csv").open()))
    assert len(rows) == len(result.records)
    assert rows[0]["imgsz"] == "64x96"
    made, missing = plots.write_plots(result.records, result.e2e, tmp_path / "plots")
    assert set(made) == {"latency p50 and p99", "latency vs mIoU"}
    assert "end-to-end stages" in missing  # no video: said, not silently absent
    for path in made.values():
        assert Path(path).read_bytes()[:8] == PNG_MAGIC
        image = cv2.imread(path)
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    md = report.write_markdown(result, tmp_path / "RESULTS.md", made, missing).read_text()
    assert "| demo | 64x96 | ort-cpu | fp32 |" in md
    assert "int8 needs calibration frames" in md
    assert "![latency p50 and p99](plots/latency.png)" in md
    assert "segbench demo (test)" in md
