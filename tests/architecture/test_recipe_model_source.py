"""ARCHITECTURE.md's "a model source" recipe, followed literally by a test.

A toy source ``toy:N`` (a 1x1-convolution network with N classes that carries its own
preprocessing, as a library front-end reads it from what its library saved) is written
as ONE file of a temporary package and registered with the ONE
``register_model_source(...)`` line the recipe names.  It must then be accepted by
``segexport toy:N -o x.onnx`` (the parity gate, the metadata the source declared, the
artifact reopening) and show wherever model sources are listed: the references a MODEL
may be (the unknown-reference error), the library usage lines, the ``--model-args``
refusal.  Nothing in segedge is edited for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from segedge.export.cli import segexport
from segedge.export.models import sources
from segedge.runtime.errors import InputError
from tests.architecture.toy_package import toy_package

PKG = "segedge_toymodels"  # a package name nothing else uses

TOY_MODEL_SOURCE = '''
"""Model source toy:N: a 1x1-conv network with N classes, BGR, mean 0.5 / std 0.25, 32x48."""
import torch
from torch import nn

from segedge.export.models.sources import Built
from segedge.runtime.errors import InputError


class ToyNet(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def artifact_name(what: str) -> str:
    return f"toy{what}"


def build(what, cfg) -> Built:
    if not what.isdigit() or int(what) < 2:
        raise InputError("toy:N", "a class count >= 2", repr(what))
    n = int(what)
    torch.manual_seed(0)
    return Built(model=ToyNet(n), name=artifact_name(what), family="toy",
                 classes=tuple(f"c{i}" for i in range(n)), mean=(0.5, 0.5, 0.5),
                 std=(0.25, 0.25, 0.25), color="BGR", size=(32, 48), stride=1,
                 weights="random", notes=["toy weights"])
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy package on sys.path and the recipe's one registration line; undone after."""
    with toy_package(tmp_path, monkeypatch, PKG, {"toy_source": TOY_MODEL_SOURCE}):
        # The recipe's registration line, as ARCHITECTURE.md writes it:
        sources.register_model_source("toy", f"{PKG}.toy_source", prefix="toy",
                                      usage="toy:N (a toy network with N classes)")
        yield tmp_path
        sources.MODEL_SOURCES.unregister("toy")


@pytest.mark.usefixtures("toy")
def test_the_toy_source_is_listed_where_model_sources_are() -> None:
    assert [s.name for s in sources.sources()][-1] == "toy"
    assert "toy:N (a toy network with N classes)" in sources.library_usage().splitlines()
    shown = CliRunner().invoke(segexport, ["--help"])
    assert shown.exit_code == 0
    assert "  toy:N (a toy network with N classes)\n" in shown.output  # segexport --help
    found, what = sources.split("toy:3")
    assert (found.name, what) == ("toy", "3")
    assert sources.model_name("toy:3") == "toy3"  # its artifact_name hook
    assert sources.fixed_task("toy:3") is None  # no task hook: any task, semantic by default
    with pytest.raises(InputError) as err:  # the references a MODEL may be name it
        sources.split("nope:3")
    assert str(err.value) == ("MODEL: expected a zoo name, path/to/file.py:Class or a library "
                              "model (smp:, hf:, yolo:, tv:, toy:), got 'nope:3'")
    with pytest.raises(InputError) as err:
        sources.split("toy:")
    assert str(err.value) == "MODEL: expected toy:N (a toy network with N classes), got 'toy:'"
    assert sources.model_args_refusal("toy:3") == (
        "a path/to/file.py:Class or smp:Class model (toy: models read their arguments from "
        "the file)")


def test_segexport_exports_a_toy_model_with_the_preprocessing_its_source_declared(
        toy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from segedge.export.cli import main
    from segedge.export.onnx.tools import read_metadata
    from segedge.runtime.report import report_path

    out = toy / "x.onnx"
    main(["toy:3", "-o", str(out), "--verify-count", "2", "--quiet"])
    meta = read_metadata(onnx.load(str(out)))  # the artifact reopens and describes itself
    assert meta is not None
    assert (meta.model, meta.family, meta.classes) == ("toy3", "toy", ("c0", "c1", "c2"))
    assert meta.input.size == (32, 48) and meta.input.stride == 1
    assert meta.input.mean == pytest.approx((0.5,) * 3, abs=1e-9)
    assert meta.input.std == pytest.approx((0.25,) * 3, abs=1e-9)
    assert meta.extra["model_color"] == "BGR" and meta.extra["weights"] == "random"
    report = json.loads(report_path(out).read_text())
    assert report["parity"]["images"] == 2  # the parity gate ran on the toy network
    assert report["parity"]["argmax_agreement"] >= 99.9, report["parity"]
    assert "toy weights" in report["notes"]  # what the source said reaches the report


@pytest.mark.usefixtures("toy")
def test_the_toy_sources_own_refusal_is_one_line_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from segedge.export.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["toy:1", "-o", str(tmp_path / "y.onnx")])
    assert exited.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == ["segexport: error: toy:N: expected a class count >= 2, got '1'"]
    assert not (tmp_path / "y.onnx").exists()
