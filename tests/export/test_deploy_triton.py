"""`segdeploy triton`: the repository layout, the config in Triton's own schema (parsed back with
tritonclient's model_config_pb2 and protobuf's text format), batch rules, refusals, atomicity."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from segedge.export.deploy import triton as triton_mod
from segedge.export.deploy.artifact import load_artifact
from segedge.export.deploy.cli import main
from segedge.export.deploy.triton import TritonOptions, write_repository
from segedge.runtime.errors import ArtifactError, InputError
from segedge.runtime.metadata import METADATA_KEY
from tests.export.deploy_helpers import (
    DEMOS,
    demo_metadata,
    fake_plan,
    float_metadata,
    tiny_float_onnx,
)

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient (extra 'triton') is not installed")
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(path: Path):  # noqa: ANN202 - a ModelConfig message
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _onnx_props(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _type(name: str) -> int:
    return model_config_pb2.DataType.Value(name)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_demo_onnx_static_batch(tmp_path: Path, precision: str) -> None:
    src = DEMOS[precision]
    model = write_repository(load_artifact(src), tmp_path / "repo", TritonOptions(name="demo"))
    folder = tmp_path / "repo" / "demo"
    assert model.folder == folder
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == [
        "1", "1/model.onnx", "config.pbtxt"]
    assert _sha(folder / "1" / "model.onnx") == _sha(src)
    cfg = _parse(folder / "config.pbtxt")
    assert cfg.name == "demo" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 0  # static batch 1: full dims, no batching by Triton
    assert not cfg.HasField("dynamic_batching")
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
        ("input", _type("TYPE_UINT8"), [1, 240, 320, 3])]
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [
        ("labels", _type("TYPE_UINT8"), [1, 240, 320])]
    assert list(cfg.version_policy.specific.versions) == [1]
    assert cfg.parameters["segedge_metadata"].string_value == _onnx_props(src)[METADATA_KEY]
    assert json.loads(cfg.parameters["segedge_metadata"].string_value)["precision"] == precision
    assert cfg.parameters["segedge_sha256"].string_value == _sha(src)
    assert not [p for p in (tmp_path / "repo").iterdir() if p.name.startswith(".")]


def test_dynamic_batch_onnx(tmp_path: Path) -> None:
    src = tiny_float_onnx(tmp_path / "tiny.onnx")
    opts = TritonOptions(name="tiny", max_batch=16, instances=3, kind="gpu",
                         max_queue_delay_us=500, version=4)
    model = write_repository(load_artifact(src), tmp_path / "repo", opts)
    assert model.max_batch_size == 16 and model.dynamic_batching
    cfg = _parse(model.config)
    assert cfg.max_batch_size == 16
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 500
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
        ("input", _type("TYPE_FP32"), [3, -1, -1])]  # batch dim left out, dynamic size -1
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [
        ("logits", _type("TYPE_FP32"), [4, -1, -1]), ("labels", _type("TYPE_UINT8"), [-1, -1])]
    group = cfg.instance_group[0]
    assert (group.count, group.kind) == (3, model_config_pb2.ModelInstanceGroup.KIND_GPU)
    assert (model.folder / "4" / "model.onnx").is_file()
    assert list(cfg.version_policy.specific.versions) == [4]
    assert json.loads(cfg.parameters["segedge_metadata"].string_value) == json.loads(
        float_metadata().to_json())
    off = write_repository(load_artifact(src), tmp_path / "r2",
                           TritonOptions(name="t", dynamic_batching=False, kind="cpu"))
    cfg = _parse(off.config)
    assert cfg.max_batch_size == 8 and not cfg.HasField("dynamic_batching")
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_tensorrt_plan(tmp_path: Path) -> None:
    meta = demo_metadata().with_changes(precision="fp16")
    plan = fake_plan(tmp_path / "demo.plan", meta, max_batch=4)
    model = write_repository(load_artifact(plan), tmp_path / "repo",
                             TritonOptions(name="demo_trt", max_batch=4, kind="gpu"))
    assert model.platform == "tensorrt_plan"
    assert model.model_file == tmp_path / "repo" / "demo_trt" / "1" / "model.plan"
    assert _sha(model.model_file) == _sha(plan)
    cfg = _parse(model.config)
    assert cfg.platform == "tensorrt_plan" and cfg.default_model_filename == "model.plan"
    assert cfg.max_batch_size == 4 and cfg.HasField("dynamic_batching")
    assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [
        ("input", _type("TYPE_UINT8"), [240, 320, 3])]
    assert [(o.name, o.data_type, list(o.dims)) for o in cfg.output] == [
        ("labels", _type("TYPE_UINT8"), [240, 320])]
    assert json.loads(cfg.parameters["segedge_metadata"].string_value) == json.loads(
        meta.to_json())
    assert cfg.parameters["segedge_sha256"].string_value == _sha(plan)
    with pytest.raises(InputError, match="at most 4 .the plan's profile maximum., got 8"):
        write_repository(load_artifact(plan), tmp_path / "repo", TritonOptions(name="x"))
    with pytest.raises(InputError, match="--kind: expected gpu or auto"):
        write_repository(load_artifact(plan), tmp_path / "repo",
                         TritonOptions(name="y", max_batch=4, kind="cpu"))
    # a plan whose bytes no longer match its sidecar is refused
    plan.write_bytes(plan.read_bytes() + b"x")
    with pytest.raises(ArtifactError, match="plan sha256 mismatch"):
        load_artifact(plan)


def test_existing_folder_refused_then_forced(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write_repository(load_artifact(DEMOS["fp32"]), repo, TritonOptions(name="m"))
    marker = repo / "m" / "keep.txt"
    marker.write_text("old")
    with pytest.raises(InputError, match="exists"):
        write_repository(load_artifact(DEMOS["fp16"]), repo, TritonOptions(name="m"))
    assert marker.read_text() == "old"  # refused: nothing touched
    write_repository(load_artifact(DEMOS["fp16"]), repo, TritonOptions(name="m", force=True))
    assert not marker.exists()
    assert _sha(repo / "m" / "1" / "model.onnx") == _sha(DEMOS["fp16"])
    assert sorted(p.name for p in repo.iterdir()) == ["m"]  # no temp or old folder left


def test_failure_leaves_no_model_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path, chunk: int = 1 << 20) -> str:
        return "0" * 64

    monkeypatch.setattr(triton_mod, "sha256_file", broken)
    with pytest.raises(ArtifactError, match="expected the copy to hash to"):
        write_repository(load_artifact(DEMOS["fp32"]), tmp_path / "repo", TritonOptions(name="m"))
    assert list((tmp_path / "repo").iterdir()) == []  # no half repo under any name


def test_options_validate() -> None:
    for kwargs, match in (({"name": "../x"}, "--name"), ({"name": "m", "max_batch": 0},
                          "--max-batch: expected an integer >= 1, got 0"),
                          ({"name": "m", "instances": 0}, "--instances"),
                          ({"name": "m", "version": 0}, "--version"),
                          ({"name": "m", "max_queue_delay_us": -1}, "--max-queue-delay-us")):
        with pytest.raises(InputError, match=match):
            TritonOptions(**kwargs)  # type: ignore[arg-type]


def test_cli_lines_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["triton", str(DEMOS["fp32"]), "-o", str(tmp_path / "repo")])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "max_batch_size 0" in out[0] and "static batch 1" in out[0]
    assert (tmp_path / "repo" / "demo_fp32" / "config.pbtxt").is_file()
    import onnx

    foreign = onnx.load(str(DEMOS["fp32"]))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    cases = [
        (["triton", str(tmp_path / "foreign.onnx"), "-o", "r"],
         "expected a verified segedge artifact"),
        (["triton", str(DEMOS["fp32"]), "-o", str(tmp_path / "repo")], "exists"),
        (["triton", str(DEMOS["fp32"]), "-o", "r2", "--dynamic-batching"],
         "--dynamic-batching: expected an artifact with a dynamic batch dim"),
        (["triton", str(tmp_path / "missing.onnx"), "-o", "r3"], "ARTIFACT: expected an existing"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(args)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2, args
        assert len(err) == 1 and err[0].startswith("segdeploy: error: ") and message in err[0]
    assert not (tmp_path / "r").exists() and not Path("r").exists()
