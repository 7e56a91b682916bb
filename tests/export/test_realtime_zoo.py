"""BiSeNetV2, DDRNet-23-slim and PIDNet-S: the authors' parameter layout, checkpoints as
published, and exports through the parity and FP16 gates.

The manifest fixture is the authors' own ``state_dict`` (key -> shape), taken by
instantiating their model classes (source read from their repositories at the commits
the fixture names; the code itself stays out of this repository) in the same process as
ours.  The same session loaded the authors' randomly initialised weights into segedge's
modules and compared outputs at 128x256 and 512x1024: max abs difference 0.0 (bitwise
equal) for all three, see the pull request report.  Published checkpoints are never
downloaded: the checkpoints here are built from the manifest, in the published layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from segedge.export.config import EngineOptions, ExportConfig, PrecisionOptions
from segedge.export.models import registry
from segedge.export.models.catalog import CITYSCAPES_CLASSES
from segedge.export.models.checkpoint import load_checkpoint
from segedge.export.models.official import OfficialLayout
from segedge.export.models.registry import BuildRequest
from segedge.export.onnx.tools import read_metadata
from segedge.export.pipeline import export
from segedge.runtime.errors import CheckpointError

MANIFEST = json.loads((Path(__file__).parent / "fixtures" / "realtime_zoo_manifest.json")
                      .read_text())
NAMES = ["bisenetv2", "ddrnet23_slim", "pidnet_s"]
GOLDEN_SIZE = (64, 128)  # a multiple of 32: every authors' network runs it
GOLDEN_POSITIONS = [(0, 0), (5, 117), (17, 33), (31, 64), (40, 2), (48, 90), (63, 127)]


def golden_input() -> torch.Tensor:
    return torch.randn(1, 3, *GOLDEN_SIZE, generator=torch.Generator().manual_seed(1))


def _build(name: str, num_classes: int = 19) -> OfficialLayout:
    model = registry.get(name).build(BuildRequest(num_classes))
    assert isinstance(model, OfficialLayout)
    return model


def _shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def _tensors(shapes: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct random tensors in a manifest's layout that make a working network: He-scaled
    convolutions, BN variances above zero, BN counters as int64 scalars."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(7, dtype=torch.long)
        elif key.endswith("running_var") or (len(shape) == 1 and key.endswith(".weight")):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1:
            out[key] = torch.randn(shape, generator=g) * 0.1
        else:
            fan_in = int(np.prod(shape[1:]))
            out[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
    return out


def _published(name: str) -> dict[str, torch.Tensor]:
    """A checkpoint laid out as the authors published it: prefix and training-only roots."""
    layout = MANIFEST[name]["official_file"]
    state = {layout["prefix"] + k: v for k, v in _tensors(MANIFEST[name]["state_dict"]).items()}
    for root in layout["training_roots"]:
        state[f"{root}.criterion.weight"] = torch.rand(19)
    return state


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_the_authors_layout(name: str) -> None:
    source = MANIFEST[name]["source"]
    assert {"repo", "path", "commit"} <= set(source) and len(source["commit"]) == 40
    with torch.device("meta"):
        ours = _shapes(_build(name))
    theirs = MANIFEST[name]["state_dict"]
    assert sorted(set(ours) ^ set(theirs)) == []
    assert {k: v for k, v in ours.items() if theirs[k] != v} == {}
    assert list(ours) == list(theirs)  # same registration order, too


@pytest.mark.parametrize("name", NAMES)
def test_outputs_equal_the_authors_model(name: str) -> None:
    """Logits the authors' own model gave (recorded in the fixture, same weights and input)."""
    golden = MANIFEST[name]["golden"]
    model = _build(name)
    model.load_state_dict(_tensors(MANIFEST[name]["state_dict"]), strict=True)
    with torch.no_grad():
        y = model.eval()(golden_input())
    ours = torch.stack([y[0, :, r, c] for r, c in GOLDEN_POSITIONS])
    theirs = torch.tensor(golden["logits"])
    scale = float(theirs.abs().max())
    assert scale > 1e-3  # not a degenerate network
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4 * scale)
    assert float(y.argmax(1).float().mean()) == pytest.approx(golden["argmax_mean"], abs=0.05)


@pytest.mark.parametrize("name", NAMES)
def test_published_checkpoint_loads_strictly(name: str, tmp_path: Path) -> None:
    path = tmp_path / "official.pth"
    state = _published(name)
    torch.save(state, path)
    model = _build(name)
    assert load_checkpoint(model, path) == []
    roots = MANIFEST[name]["official_file"]["training_roots"]
    assert model.segedge_weights_note == "; ".join(
        ([f"dropped {len(roots)} training-only key(s) ("
          + ", ".join(sorted(f"{r}.criterion.weight" for r in roots)) + ")"] if roots else [])
        + [f"auxiliary heads {', '.join(model.aux_heads)} loaded, not exported"])
    prefix = MANIFEST[name]["official_file"]["prefix"]
    loaded = model.state_dict()
    for key, value in state.items():
        if key.startswith(prefix) and key.removeprefix(prefix) in loaded:
            assert torch.equal(loaded[key.removeprefix(prefix)], value), key
    # the same, without segedge's loader: torch's own strict load of the unprefixed file
    bare = {k.removeprefix(prefix): v for k, v in state.items()}
    fresh = _build(name)
    fresh.load_state_dict(bare, strict=True)
    assert all(torch.equal(v, bare[k]) for k, v in fresh.state_dict().items())


@pytest.mark.parametrize("name", NAMES)
def test_inference_only_checkpoint_loads_partial_heads_do_not(name: str, tmp_path: Path) -> None:
    model = _build(name)
    heads = tuple(f"{h}." for h in model.aux_heads)
    bare = _tensors(MANIFEST[name]["state_dict"])
    inference = {k: v for k, v in bare.items() if not k.startswith(heads)}
    assert len(inference) < len(bare)
    model.load_state_dict(inference, strict=True)  # the authors' eval-mode model, saved bare
    assert model.segedge_weights_note.startswith("no auxiliary heads in the checkpoint")
    dropped = next(k for k in bare if k.startswith(heads) and k.endswith(".weight"))
    partial = {k: v for k, v in bare.items() if k != dropped}
    with pytest.raises(RuntimeError, match=f'Missing key.*"{dropped}"'):
        model.load_state_dict(partial, strict=True)
    stray = {**bare, "optimizer.weight": torch.zeros(1)}  # only the authors' loss roots drop
    torch.save(stray, tmp_path / "stray.pth")
    with pytest.raises(CheckpointError, match=r"unexpected 1: optimizer\.weight"):
        load_checkpoint(model, tmp_path / "stray.pth")


@pytest.mark.parametrize("name", NAMES)
def test_logits_at_input_size_and_aux_heads_never_run(name: str) -> None:
    torch.manual_seed(0)
    model = _build(name, num_classes=5).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        before = model(x)
        for head in model.aux_heads:
            for p in getattr(model, head).parameters():
                p.add_(1.0)
        after = model(x)
        odd = model(torch.randn(1, 3, 50, 70))  # the authors' code needs multiples of 8/32
    assert before.shape == (1, 5, 64, 128) and torch.equal(before, after)
    assert odd.shape == (1, 5, 50, 70) and torch.isfinite(odd).all()
    assert before.std() > 0


@pytest.mark.parametrize(("name", "mean", "std"), [
    ("bisenetv2", (0.3257, 0.3690, 0.3223), (0.2112, 0.2148, 0.2115)),
    ("ddrnet23_slim", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("pidnet_s", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
])
def test_zoo_entry_carries_the_authors_preprocessing(name: str, mean: tuple[float, ...],
                                                     std: tuple[float, ...]) -> None:
    spec = registry.get(name)
    assert spec.classes == CITYSCAPES_CLASSES and len(spec.classes) == 19
    assert spec.palette[0] == (128, 64, 128) and spec.palette[13] == (0, 0, 142)  # road, car
    assert (spec.mean, spec.std, spec.color_order) == (mean, std, "RGB")
    assert spec.default_size == (512, 1024) and spec.weights is None
    with pytest.raises(CheckpointError, match=rf"^{name.split('_')[0]}.*expected --checkpoint "
                       r"PATH \(the authors' Cityscapes file, https://"):
        spec.build(BuildRequest(19, "pretrained"))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_exports_through_parity_fp16_and_lint(name: str, tmp_path: Path) -> None:
    """As a user runs it: the published-layout checkpoint through --checkpoint, --fp16."""
    out, ckpt = tmp_path / f"{name}.onnx", tmp_path / "official.pth"
    torch.save(_published(name), ckpt)
    report: dict[str, Any] = export(ExportConfig(
        model=name, imgsz=(128, 256), output=out, quiet=True, checkpoint=ckpt,
        precision=PrecisionOptions(mode="fp16"), engine=EngineOptions(build=False)))
    assert report["weights"] == f"checkpoint {ckpt}"
    assert any("not exported" in note for note in report["notes"]), report["notes"]
    assert report["parity"]["argmax_agreement"] >= 99.9, report["parity"]
    fp16 = report["precision_report"]
    assert fp16["gate"]["passed"] is True
    assert set(fp16["runtimes"]) == {"onnxruntime", "openvino"}
    assert all(r["argmax_agreement"] >= 99.5 for r in fp16["runtimes"].values()), fp16
    assert report["tensorrt"]["unsupported"] == []
    graph = onnx.load(str(out))
    meta = read_metadata(graph)
    spec = registry.get(name)
    assert meta is not None and meta.model == name and meta.classes == spec.classes
    assert meta.input.size == (128, 256)
    assert meta.input.mean == pytest.approx(spec.mean) and meta.input.std == pytest.approx(spec.std)
    model = _build(name)  # the main head only: one Conv node per convolution outside aux heads
    aux = {id(m) for head in model.aux_heads for m in getattr(model, head).modules()}
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len([m for m in convs if id(m) not in aux]) < len(convs)
    assert sum(n.op_type == "Conv" for n in graph.graph.node) == len(
        [m for m in convs if id(m) not in aux])
