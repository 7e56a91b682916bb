"""A small real run on the demo model: records, files, plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import cv2
import pytest

from segedge.benchmarks import plots, report
from segedge.benchmarks import suite as suite_module
from segedge.benchmarks.jobs import ModelJob
from segedge.benchmarks.plan import ModelPlan
from segedge.benchmarks.suite import Suite, SuiteConfig, SuiteResult

SIZE = (64, 96)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROUNDED = 5e-4  # ratios are stored rounded to 3 decimals
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
    # Cross-checks that hold only if each ratio used the right baseline row: a baseline's ratio
    # to the other baseline, and the product rule vs_pytorch = vs_plain * (torch / plain).
    # Ratios are stored rounded to 3 decimals, hence abs=ROUNDED next to rel for small ones.
    assert plain.vs_pytorch == pytest.approx(torch_row.p50_ms / plain.p50_ms, rel=1e-2,
                                             abs=ROUNDED)
    assert torch_row.vs_plain == pytest.approx(plain.p50_ms / torch_row.p50_ms, rel=1e-2,
                                               abs=ROUNDED)
    assert seg.vs_pytorch == pytest.approx(seg.vs_plain * plain.vs_pytorch, rel=2e-2,
                                           abs=ROUNDED * (1 + plain.vs_pytorch))
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


# p50 per backend, by hand: the suite must divide each baseline's p50 by the row's own.
CANNED_P50 = {"pytorch-cpu": 30.0, "plain-ort": 12.0, "ort-cpu": 4.0}
EXPECTED = {  # backend: (vs_pytorch, vs_plain), computed by hand from CANNED_P50
    "pytorch-cpu": (1.0, 0.4),  # 30/30, 12/30
    "plain-ort": (2.5, 1.0),  # 30/12, 12/12
    "ort-cpu": (7.5, 3.0),  # 30/4, 12/4
}


def test_suite_ratios_are_baseline_p50_over_row_p50(workdir: Path, demo_labels: object,
                                                    demo_logits: object,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The real-run test above can only compare a ratio with the p50s it came from; here the
    p50s are fixed, so a ratio taken the wrong way round, against the wrong baseline, or
    never attached by Suite.run misses the hand-computed values."""
    def canned(job: ModelJob) -> dict[str, Any]:
        p50 = CANNED_P50[job.backend]
        return {"p50_ms": p50, "p90_ms": p50, "p99_ms": p50, "max_ms": p50, "min_ms": p50,
                "mean_ms": p50, "fps": 1000.0 / p50, "iters": job.iters}

    monkeypatch.setattr(suite_module, "measure_model", canned)
    plan = ModelPlan("demo", sizes=(SIZE,), backends=tuple(CANNED_P50), precisions=("fp32",),
                     iters=3, warmup=0)
    cfg = SuiteConfig(plans=(plan,), threads=1, workdir=workdir, isolated=False,
                      progress=False)
    got = {r.backend: (r.vs_pytorch, r.vs_plain) for r in Suite(cfg).run().records}
    assert got == EXPECTED


def test_weights_kind_is_the_exporters_rule(tmp_path: Path) -> None:
    """What a row says it measured matches what the exporter loads (auto: cached only)."""
    import torch

    from segedge.benchmarks.suite import weights_kind
    from segedge.export.models import registry

    lraspp = "lraspp_mobilenet_v3_large"
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))  # an empty cache, whatever this machine holds
    try:
        assert weights_kind(ModelPlan(lraspp)) == "random"
        weights = registry.get(lraspp).weights
        assert weights is not None
        weights.path().parent.mkdir(parents=True)
        torch.save({}, weights.path())
        assert weights_kind(ModelPlan(lraspp)) == "pretrained (torchvision COCO subset, VOC labels)"
        assert weights_kind(ModelPlan(lraspp, weights="random")) == "random"
    finally:
        torch.hub.set_dir(old)
    assert weights_kind(ModelPlan("demo")) == \
        "pretrained (segedge demo weights (shipped, generated road scenes))"
    assert weights_kind(ModelPlan("unet")) == "random"
    assert weights_kind(ModelPlan("demo", checkpoint="c.pt")) == "checkpoint c.pt"
