"""Weights on the model spec: one table, the `auto` rule, the listing, loading and refusals."""

from __future__ import annotations

import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from segedge.export.config import ExportConfig
from segedge.export.models import catalog, registry
from segedge.export.models.listing import HEADER, list_models
from segedge.export.models.registry import BuildRequest, ModelSpec
from segedge.export.models.resolve import resolve
from segedge.export.models.weights import Weights, WeightsMeta, availability, choose_weights
from segedge.runtime.errors import CheckpointError

LRASPP = "lraspp_mobilenet_v3_large"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Path]:
    """An empty torch hub cache: nothing is cached, whatever this machine holds."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        yield tmp_path / "hub" / "checkpoints"
    finally:
        torch.hub.set_dir(old)


def _place(weights: Weights, state: dict[str, torch.Tensor]) -> Path:
    """Put a weights file where the hub cache looks for it (as a user would, offline)."""
    path = weights.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_every_pretrained_entry_points_into_the_one_table() -> None:
    table = {id(w) for w in vars(catalog).values() if isinstance(w, Weights)}
    with_weights = [s for s in registry.all_specs() if s.weights is not None]
    assert {s.name for s in registry.all_specs() if s.weights is None} == {
        "unet", "segnet", "maskrcnn_mobilenet_v3_cars", "bisenetv2", "ddrnet23_slim", "pidnet_s"}
    for spec in with_weights:
        assert id(spec.weights) in table, spec.name
    assert registry.get("fcn8s").weights is registry.get("fcn32s").weights is catalog.VGG16
    assert registry.get("maskrcnn_resnet50_fpn").weights is catalog.MASKRCNN_R50
    assert registry.get("demo").weights is catalog.DEMO and catalog.DEMO.shipped


def test_meta_says_what_the_weights_were_trained_on() -> None:
    assert catalog.VGG16.meta.scope == "backbone" and catalog.VGG16.meta.classes == ()
    assert registry.get(LRASPP).weights.meta.classes == registry.get(LRASPP).classes  # type: ignore[union-attr]
    coco = registry.get("maskrcnn_resnet50_fpn").weights.meta  # type: ignore[union-attr]
    assert coco.scope == "full" and len(coco.classes) == 91 and coco.classes[3] == "car"
    assert catalog.FCN_RESNET50.enum().url.endswith(".pth")
    assert catalog.FCN_RESNET50.source == "torchvision FCN_ResNet50_Weights.DEFAULT"
    assert catalog.DEMO.source == f"shipped file {catalog.DEMO.path()}"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "hub", "ref": "x:y.z"}, "Weights.kind: expected one of"),
    ({"kind": "torchvision", "ref": "VGG16_Weights"}, "expected 'module:Enum.MEMBER'"),
    ({"kind": "shipped", "ref": "demo.pt"}, "expected 'package:path'"),
    ({"kind": "url", "ref": "ftp://host/x.pth"}, "expected an http(s) or file URL"),
    ({"kind": "url", "ref": "https://host/x.pth", "description": " "}, "Weights.description"),
])
def test_weights_validate_themselves(kwargs: dict[str, str], message: str) -> None:
    fields = {"description": "d", "meta": WeightsMeta("ImageNet-1k"), **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Weights(**fields)  # type: ignore[arg-type]


def test_meta_and_spec_must_agree() -> None:
    with pytest.raises(ValueError, match="expected none for backbone weights, got 2"):
        WeightsMeta("ImageNet-1k", scope="backbone", classes=("a", "b"))
    with pytest.raises(ValueError, match="expected 3 values, got 2"):
        WeightsMeta("x", mean=(0.5, 0.5))  # type: ignore[arg-type]
    voc = Weights.from_url("https://host/voc.pth", "voc", WeightsMeta("VOC", classes=("a", "b")))
    with pytest.raises(ValueError, match=r"expected the classes of its weights \(2"):
        ModelSpec(name="x", family="x", build=lambda r: torch.nn.Identity(), classes=("a",),
                  weights=voc)
    odd = Weights.from_url("https://host/o.pth", "o", WeightsMeta("o", mean=(0.5, 0.5, 0.5)))
    with pytest.raises(ValueError, match=r"expected mean \(0.5, 0.5, 0.5\)"):
        ModelSpec(name="x", family="x", build=lambda r: torch.nn.Identity(), classes=("a",),
                  weights=odd)


def test_choose_weights_rule(hub: Path) -> None:
    lraspp = registry.get(LRASPP).weights
    assert choose_weights(lraspp, "auto") == "random"  # not cached: auto never downloads
    assert choose_weights(lraspp, "pretrained") == "pretrained"
    assert choose_weights(lraspp, "auto", Path("c.pt")) == "random"  # the checkpoint wins
    assert choose_weights(catalog.DEMO, "auto") == "pretrained"  # shipped
    assert choose_weights(catalog.DEMO, "random") == "random"
    assert choose_weights(None, "auto") == "random"
    assert choose_weights(None, "pretrained") == "pretrained"  # the builder then refuses
    _place(lraspp, {})  # type: ignore[arg-type]
    assert choose_weights(lraspp, "auto") == "pretrained"


@pytest.mark.parametrize("name", ["maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"])
def test_auto_takes_cached_coco_weights_for_mask_rcnn(name: str, hub: Path) -> None:
    weights = registry.get(name).weights
    assert weights is not None and availability(weights) == "download"
    assert choose_weights(weights, "auto") == "random"
    path = _place(weights, {})
    assert path.parent == hub and path.name.startswith(name + "_coco")
    assert availability(weights) == "cached"
    assert choose_weights(weights, "auto") == "pretrained"


def test_resolve_auto_loads_cached_weights(hub: Path) -> None:
    spec = registry.get(LRASPP)
    assert spec.weights is not None
    head = spec.build(BuildRequest(spec.num_classes, "random")).state_dict()
    key = next(k for k in head if k.endswith("high_classifier.weight"))
    state = {key.removeprefix("model."): torch.full_like(head[key], 0.25)}
    random = resolve(ExportConfig(model=LRASPP))
    assert random.weights == "random"
    assert any("not in the local cache" in n for n in random.notes)
    _place(spec.weights, state)
    res = resolve(ExportConfig(model=LRASPP))
    assert res.weights == "torchvision COCO subset, VOC labels"
    assert torch.equal(res.model.state_dict()[key], torch.full_like(head[key], 0.25))
    assert any(n.startswith("pretrained LRASPP_MobileNet_V3_Large_Weights.") for n in res.notes)


def test_offline_pretrained_is_one_line_naming_the_cache_file(
        hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*_a: object, **_k: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    weights = registry.get(LRASPP).weights
    assert weights is not None
    with pytest.raises(CheckpointError) as err:
        registry.get(LRASPP).build(BuildRequest(21, "pretrained"))
    message = str(err.value)
    assert "\n" not in message
    assert f"expected the file {weights.path()}" in message and "(URLError)" in message
    assert message.endswith("or use --weights random / --checkpoint PATH")


def test_shipped_demo_weights_load_and_check_the_class_count() -> None:
    model = registry.get("demo").build(BuildRequest(7, "pretrained"))
    state = catalog.DEMO.state_dict()
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key], value.to(model.state_dict()[key].dtype))
    with pytest.raises(CheckpointError, match="demo weights: expected --num-classes 7, got 5"):
        registry.get("demo").build(BuildRequest(5, "pretrained"))


def test_missing_shipped_file_says_how_to_make_it(tmp_path: Path) -> None:
    gone = Weights.from_package("tests:no/such.pt", "test weights", WeightsMeta("x"),
                                remedy="train them with `python -m tools.train_demo`")
    with pytest.raises(CheckpointError) as err:
        gone.state_dict()
    assert str(err.value) == (f"test weights: expected {gone.path()} (train them with "
                              "`python -m tools.train_demo`), got no file")
    assert not gone.is_cached() and availability(gone) == "shipped"  # part of segedge


def test_list_keeps_its_columns(hub: Path) -> None:
    lines = list_models().splitlines()
    assert lines[0].split() == list(HEADER)
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(registry.names())
    assert rows["demo"][-1] == "shipped" and rows["unet"][-1] == "no"
    assert rows["maskrcnn_resnet50_fpn"][-1] == "download"
    assert rows["demo"][1:] == ["demo", "43K", "240x320", "1", "7", "shipped"]
