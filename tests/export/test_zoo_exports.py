"""Every zoo model exports, verifies on real CamVid frames and lints for TensorRT.

Random weights are fine for parity (the question is "same function?"), never
for accuracy.  Small sizes keep the whole zoo to a few minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from segedge.export.config import ExportConfig, VerifyOptions
from segedge.export.models import registry
from segedge.export.onnx.tools import read_metadata
from segedge.export.pipeline import export

SIZES = {"segnet": (64, 96), "unet": (64, 96)}


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in registry.names()
                                  if registry.get(n).task == "semantic"])
def test_zoo_model_exports_with_parity_on_camvid(name: str, tmp_path: Path, camvid_val: Path
                                                 ) -> None:
    out = tmp_path / f"{name}.onnx"
    weights = "pretrained" if name == "demo" else "random"
    report = export(ExportConfig(model=name, imgsz=SIZES.get(name, (72, 96)), output=out,
                                 weights=weights, quiet=True,
                                 verify=VerifyOptions(images=str(camvid_val), count=3)))
    assert report["parity"]["source"].startswith(str(camvid_val))
    assert report["parity"]["images"] == 3
    assert report["parity"]["argmax_agreement"] >= 99.9, report["parity"]
    meta = read_metadata(onnx.load(str(out), load_external_data=False))
    assert meta is not None and meta.model == name
    assert len(meta.classes) == len(meta.palette) == registry.get(name).num_classes
    if name == "segnet":
        assert report["tensorrt"]["unsupported"] == []
        assert any("unpool" in r for r in report["rewrites"])
        ops = {n.op_type for n in onnx.load(str(out)).graph.node}
        assert "MaxUnpool" not in ops
