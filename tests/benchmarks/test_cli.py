"""`segbench` from the command line: files written, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segedge.benchmarks.cli import main, split_list

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_split_list_accepts_commas_and_repeats() -> None:
    assert split_list(("ort-cpu,plain-ort", "ort-cpu", " fp32 ")) == ("ort-cpu", "plain-ort",
                                                                       "fp32")


def test_cli_writes_json_csv_markdown_and_plots(workdir: Path, demo_labels: object,
                                                demo_logits: object, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    main(["demo", "--backends", "ort-cpu,plain-ort", "--precisions", "fp32", "--imgsz", "64",
          "96", "--iters", "3", "--warmup", "1", "--workdir", str(workdir), "--no-isolate",
          "--settle", "1",
          "-q", "--json", str(out / "r.json"), "--csv", str(out / "r.csv"),
          "--markdown", str(out / "RESULTS.md"), "--plot", str(out / "plots")])
    records = json.loads((out / "r.json").read_text())["records"]
    assert [(r["backend"], r["status"]) for r in records] == [("ort-cpu", "ok"),
                                                              ("plain-ort", "ok")]
    assert records[0]["vs_plain"] == pytest.approx(
        records[1]["p50_ms"] / records[0]["p50_ms"], rel=1e-2)
    assert all(0.0 <= r["idle_before"] <= 1.0 for r in records)  # --settle sampled the CPUs
    assert (out / "r.csv").read_text().count("\n") == 3
    md = (out / "RESULTS.md").read_text()
    assert "segbench demo --backends ort-cpu,plain-ort --precisions fp32" in md
    assert "idle before" in md
    assert "share of the CPUs idle just before each of the 2 measurements" in md
    assert "| demo | 64x96 | ort-cpu | fp32 |" in md
    assert (out / "plots" / "latency.png").read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert "ort-cpu" in printed and "vs plain loop" in printed


@pytest.mark.parametrize(("argv", "message"), [
    ([], "one or more zoo names or artifacts, or --default"),
    (["demo", "--backends", "ort-gpu"], "ort-gpu"),
    (["demo", "--precisions", "int4"], "int4"),
    (["demo", "--iters", "0"], "--iters"),
    (["demo", "--default"], "no models with --default"),
    (["demo", "--data", "."], "--data: expected --default as well"),
])
def test_cli_errors_are_one_line(argv: list[str], message: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert message in err and err.startswith("segbench: error:")
    assert len(err.strip().splitlines()) == 1
