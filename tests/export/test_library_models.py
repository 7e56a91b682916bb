"""Library front-ends (smp:, hf:, yolo:, tv:): what each library saved becomes the artifact's
classes, preprocessing and size; each exports through the parity gate and the TensorRT
lint; a missing library is one line naming the pip extra (exit 2).

Models are tiny and randomly initialised (tests/export/library_fixtures.py), exported at
64x64 on generated scenes.  The FP16/INT8 gates of these front-ends are in
test_library_precision.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import onnx
import pytest

from segedge.export.config import ExportConfig, VerifyOptions
from segedge.export.models import sources
from segedge.export.onnx.tools import read_metadata
from segedge.runtime.errors import BackendUnavailableError, CheckpointError, InputError
from tests.export import library_fixtures as fx

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _export(model: str, out: Path, **kw: Any) -> tuple[dict[str, Any], Any]:
    from segedge.export.pipeline import export

    cfg = ExportConfig(model=model, output=out, imgsz=(fx.SIZE, fx.SIZE), quiet=True,
                       verify=VerifyOptions(count=2), **kw)
    report = export(cfg)
    meta = read_metadata(onnx.load(str(out), load_external_data=False))
    assert meta is not None
    return report, meta


def _exported_cleanly(report: dict[str, Any]) -> None:
    assert report["parity"]["images"] == 2
    assert report["parity"]["argmax_agreement"] >= 99.9, report["parity"]
    assert report["tensorrt"]["unsupported"] == [], report["tensorrt"]
    size = [fx.SIZE, fx.SIZE]
    assert report["outputs"]["labels"][-2:] == size  # at the input size, not 1/4 or 1/8


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))


# --- the registry ---------------------------------------------------------------------------
@pytest.mark.parametrize(("ref", "source", "what", "name"), [
    ("demo", "zoo", "demo", "demo"),
    ("tests/m.py:Net", "file", "tests/m.py:Net", "Net"),
    ("smp:Unet", "smp", "Unet", "Unet"),
    ("smp:runs/unet_camvid/", "smp", "runs/unet_camvid/", "unet_camvid"),
    ("hf:models/segformer-b0", "hf", "models/segformer-b0", "segformer-b0"),
    ("yolo:runs/train/weights/best.pt", "yolo", "runs/train/weights/best.pt", "best"),
    ("tv:deeplabv3_resnet101", "tv", "deeplabv3_resnet101", "deeplabv3_resnet101"),
])
def test_a_reference_names_its_source_and_artifact(ref: str, source: str, what: str,
                                                   name: str) -> None:
    found, rest = sources.split(ref)
    assert (found.name, rest) == (source, what)
    assert sources.model_name(ref) == name
    assert sources.fixed_task(ref) == ("semantic" if source == "zoo" else None)


def test_unknown_prefix_and_empty_reference_are_one_line() -> None:
    with pytest.raises(InputError) as err:
        sources.split("timm:resnet18")
    assert str(err.value) == ("MODEL: expected a zoo name, path/to/file.py:Class or a library "
                              "model (smp:, hf:, yolo:, tv:), got 'timm:resnet18'")
    with pytest.raises(InputError) as err:
        sources.split("hf:")
    assert str(err.value).startswith("MODEL: expected hf:path/to/folder/ (config.json")


def test_model_args_go_to_file_and_smp_models_only() -> None:
    assert ExportConfig(model="smp:Unet", model_args=(("classes", 3),)).model_args
    with pytest.raises(InputError) as err:
        ExportConfig(model="hf:x", model_args=(("classes", 3),))
    assert str(err.value) == ("--model-args: expected a path/to/file.py:Class or smp:Class "
                              "model (hf: models read their arguments from the file), got hf:x")
    with pytest.raises(InputError) as err:  # the zoo's message is unchanged
        ExportConfig(model="demo", model_args=(("classes", 3),))
    assert "zoo entries take --num-classes" in str(err.value)


def test_missing_library_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    from segedge.export.cli import main

    for module in ("segmentation_models_pytorch", "transformers", "ultralytics"):
        monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    for ref, package in (("smp:Unet", "segmentation_models_pytorch"),
                         ("hf:folder", "transformers"), ("yolo:best.pt", "ultralytics")):
        with pytest.raises(SystemExit) as exited:
            main([ref, "--num-classes", "3", "-o", str(tmp_path / "m.onnx")])
        assert exited.value.code == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"segexport: error: {ref}: expected the {package} package "
                                   "(pip install 'segedge[models]'), got ModuleNotFoundError"
                                   ), lines[0]
    assert not list(tmp_path.iterdir())  # nothing written
    with pytest.raises(BackendUnavailableError):
        sources.build(ExportConfig(model="smp:Unet"))


def test_a_library_import_leaves_the_environment_as_it_was(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Ultralytics' import sets OMP_NUM_THREADS=1 when unset: every process started after it
    (the suite's own segexport runs, once) then ran one OpenMP thread.  A stand-in package
    does what it does; only the source's own offline settings stay."""
    (tmp_path / "writes_env.py").write_text(
        "import os\nos.environ['OMP_NUM_THREADS'] = '1'\nos.environ['SEGEDGE_T_KEEP'] = 'x'\n"
        "os.environ.pop('SEGEDGE_T_GONE')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("SEGEDGE_T_KEEP", "mine")
    monkeypatch.setenv("SEGEDGE_T_GONE", "here")
    monkeypatch.delenv("SEGEDGE_T_OFFLINE", raising=False)
    source = sources.Source("t", "unused", prefix="t", package="writes_env",
                            offline_env=(("SEGEDGE_T_OFFLINE", "1"),))
    try:
        sources.require(source, "t:x")
        assert "writes_env" in sys.modules  # it ran
    finally:
        sys.modules.pop("writes_env", None)
    assert "OMP_NUM_THREADS" not in os.environ
    assert (os.environ["SEGEDGE_T_KEEP"], os.environ["SEGEDGE_T_GONE"]) == ("mine", "here")
    assert os.environ["SEGEDGE_T_OFFLINE"] == "1"


def test_library_models_refuse_zoo_weights_flag() -> None:
    pytest.importorskip("segmentation_models_pytorch")
    with pytest.raises(InputError) as err:
        sources.build(ExportConfig(model="smp:Unet", weights="pretrained"))
    assert str(err.value) == ("--weights: expected auto for smp:Unet (its weights come from the "
                              "file it names or --checkpoint; nothing is downloaded), got "
                              "pretrained")


# --- smp ------------------------------------------------------------------------------------
def test_smp_from_constructor_arguments_never_downloads_and_reads_timm_preprocessing(
        tmp_path: Path) -> None:
    pytest.importorskip("segmentation_models_pytorch")
    args = (("encoder_name", "tu-mobilenetv3_small_050"), ("encoder_weights", "imagenet"),
            ("decoder_channels", (32, 16, 16, 8, 8)), ("classes", 4))
    report, meta = _export("smp:Unet", tmp_path / "unet.onnx", model_args=args)
    _exported_cleanly(report)
    assert meta.classes == ("class_0", "class_1", "class_2", "class_3")
    assert _close(meta.input.mean, IMAGENET[0]) and _close(meta.input.std, IMAGENET[1])
    assert meta.input.stride == 32 and meta.family == "smp-unet"
    assert any("built with encoder_weights=None (trained with 'imagenet'); random weights"
               in n for n in report["notes"]), report["notes"]
    assert report["model_args"]["encoder_weights"] == "imagenet"  # as the user gave it


def test_smp_folder_loads_strictly_and_flags_override(tmp_path: Path) -> None:
    pytest.importorskip("segmentation_models_pytorch")
    folder = fx.smp_folder(tmp_path / "unet_road")
    report, meta = _export(f"smp:{folder}", tmp_path / "u.onnx", classes=fx.NAMES,
                           mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    _exported_cleanly(report)
    assert meta.model == "unet_road" and meta.classes == fx.NAMES
    assert meta.input.mean == (0.5, 0.5, 0.5) and meta.input.std == (0.25, 0.25, 0.25)
    assert report["weights"] == f"smp folder {folder}"
    with pytest.raises(InputError) as err:  # the folder's 4 outputs fix the count
        sources.build(ExportConfig(model=f"smp:{folder}", num_classes=3))
    assert str(err.value) == f"--num-classes: expected 4 (smp:{folder} has 4 classes), got 3"
    state = folder / "model.safetensors"
    from safetensors.torch import load_file, save_file

    weights = load_file(str(state))
    weights.pop(sorted(weights)[-1])
    save_file(weights, str(state))
    with pytest.raises(CheckpointError) as cerr:
        sources.build(ExportConfig(model=f"smp:{folder}"))
    assert "does not fit Unet: missing 1:" in str(cerr.value)


def test_smp_without_saved_normalisation_asks_for_the_flags(tmp_path: Path) -> None:
    pytest.importorskip("segmentation_models_pytorch")
    folder = fx.smp_folder(tmp_path / "scratch", encoder_weights=None)
    with pytest.raises(InputError) as err:
        sources.build(ExportConfig(model=f"smp:{folder}"))
    assert str(err.value) == (
        "--mean/--std: expected the normalisation smp encoder tu-mobilenetv3_small_050 (None "
        "weights) was trained with (SMP records no normalisation for encoder_weights=None; "
        "SMP's 'imagenet' encoders use --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225), got "
        "neither")
    with pytest.raises(InputError) as err:
        sources.build(ExportConfig(model="smp:Unett"))
    assert str(err.value).startswith("smp:Unett: expected an SMP architecture (DPT, DeepLabV3")


# --- transformers ---------------------------------------------------------------------------
def test_segformer_b0_classes_preprocessing_and_upsampling(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = fx.segformer_b0(tmp_path / "segformer-b0")
    report, meta = _export(f"hf:{folder}", tmp_path / "b0.onnx")
    _exported_cleanly(report)
    assert meta.classes == fx.NAMES and meta.family == "hf-segformer"
    assert _close(meta.input.mean, IMAGENET[0]) and _close(meta.input.std, IMAGENET[1])
    assert meta.input.stride == 32 and meta.extra["model_color"] == "RGB"
    # SegFormer predicts at 1/4: the graph upsamples bilinearly to the input
    graph = onnx.load(str(tmp_path / "b0.onnx"))
    assert any(n.op_type == "Resize" for n in graph.graph.node)


@pytest.mark.parametrize("kind", ["upernet", "dpt"])
def test_upernet_and_dpt_heads_export(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = getattr(fx, kind)(tmp_path / kind)
    report, meta = _export(f"hf:{folder}", tmp_path / f"{kind}.onnx")
    _exported_cleanly(report)
    assert meta.classes == fx.NAMES and meta.family == f"hf-{kind}"
    mean = (0.5, 0.5, 0.5) if kind == "dpt" else IMAGENET[0]
    assert _close(meta.input.mean, mean)
    assert meta.input.stride == (16 if kind == "dpt" else 32)


def test_hf_size_comes_from_the_image_processor_and_bad_folders_are_one_line(
        tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    folder = fx.dpt(tmp_path / "dpt")
    built = sources.build(ExportConfig(model=f"hf:{folder}"))
    assert built.size == (fx.SIZE, fx.SIZE) and built.weights == f"hf folder {folder}"
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(InputError) as err:
        sources.build(ExportConfig(model=f"hf:{folder}"))
    assert str(err.value) == (f"--mean/--std: expected the normalisation hf:{folder} was "
                              "trained with (no preprocessor_config.json in the folder), got "
                              "neither")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as cerr:
        sources.build(ExportConfig(model=f"hf:{folder}", mean=(0.5,) * 3, std=(0.5,) * 3,
                                   imgsz=(64, 64)))
    assert str(cerr.value).startswith(f"hf:{folder}: expected loadable weights")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(InputError) as err:
        sources.build(ExportConfig(model=f"hf:{folder}"))
    assert "expected a semantic-segmentation model (" in str(err.value)
    assert str(err.value).endswith("got model_type 'bert'")


# --- ultralytics ----------------------------------------------------------------------------
def test_yolo_semantic_checkpoint_names_imgsz_and_unit_input(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    ckpt = fx.yolo_checkpoint(tmp_path / "best.pt")
    built = sources.build(ExportConfig(model=f"yolo:{ckpt}"))
    assert built.size == (fx.SIZE, fx.SIZE) and built.classes == fx.NAMES
    assert built.mean == (0.0, 0.0, 0.0) and built.std == (1.0, 1.0, 1.0)
    report, meta = _export(f"yolo:{ckpt}", tmp_path / "yolo.onnx")
    _exported_cleanly(report)
    assert meta.model == "best" and meta.classes == fx.NAMES and meta.input.stride == 32
    assert meta.input.mean == (0.0, 0.0, 0.0) and meta.input.std == (1.0, 1.0, 1.0)


def test_yolo_refuses_pickled_code_and_other_tasks(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"ema": None, "model": ExportConfig(model="demo")}, evil)
    with pytest.raises(CheckpointError) as err:
        sources.build(ExportConfig(model=f"yolo:{evil}"))
    assert str(err.value).startswith(f"yolo:{evil}: expected an Ultralytics checkpoint "
                                     "loadable with weights_only=True, got")
    from ultralytics.nn.tasks import ClassificationModel

    other = tmp_path / "cls.pt"
    torch.save({"ema": ClassificationModel("yolo26n-cls.yaml", nc=3, verbose=False),
                "model": None}, other)
    with pytest.raises(InputError) as ierr:
        sources.build(ExportConfig(model=f"yolo:{other}"))
    assert str(ierr.value) == (f"yolo:{other}: expected a task=semantic checkpoint "
                               "(ultralytics >= 8.4.52), got a classify model "
                               "(ClassificationModel)")


# --- torchvision ----------------------------------------------------------------------------
def test_torchvision_class_count_from_its_checkpoint(tmp_path: Path) -> None:
    ckpt = fx.tv_checkpoint(tmp_path / "model_3.pth", classes=5)
    report, meta = _export("tv:lraspp_mobilenet_v3_large", tmp_path / "tv.onnx",
                           checkpoint=ckpt)
    _exported_cleanly(report)
    assert meta.classes == tuple(f"class_{i}" for i in range(5))
    assert _close(meta.input.mean, IMAGENET[0]) and _close(meta.input.std, IMAGENET[1])
    assert report["weights"] == f"checkpoint {ckpt}"
    built = sources.build(ExportConfig(model="tv:deeplabv3_resnet101"))
    assert len(built.classes) == 21 and built.classes[15] == "person"  # torchvision's VOC
    assert built.size == (520, 520)
    with pytest.raises(InputError) as err:
        sources.build(ExportConfig(model="tv:deeplabv4"))
    assert str(err.value).startswith("tv:deeplabv4: expected a torchvision segmentation "
                                     "factory (deeplabv3_mobilenet_v3_large, ")
