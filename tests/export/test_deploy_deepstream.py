"""`segdeploy deepstream`: every written key is one DeepStream's parsers document, the required
ones carry the artifact's values, and the nvinfer ONNX copy reproduces the artifact when fed the
way nvinfer feeds it (checked here again with ONNX Runtime, independently of the product's check).

Not run on a DeepStream install (none here): the key sets below are copied from DeepStream's
own sources and documentation, with the URLs they come from.
"""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from segedge.export import scenes
from segedge.export.deploy.artifact import load_onnx
from segedge.export.deploy.cli import main
from segedge.export.deploy.deepstream import DeepStreamOptions, write_deepstream
from segedge.export.deploy.nvinfer_graph import NvinferPreprocess, nvinfer_model, verify
from segedge.runtime.errors import InputError, VerificationError
from segedge.runtime.normalization import Normalization
from segedge.runtime.sidecar import EngineSidecar, sha256_file, write_sidecar
from tests.export.deploy_helpers import DEMOS, float_metadata, tiny_float_onnx

# Gst-nvinfer [property] keys: gstnvinfer_property_parser.h, DeepStream 6.x, as published at
# https://docs.nvidia.com/metropolis/deepstream/6.4/dev-guide/sdk-api/gstnvinfer__property__parser_8h_source.html
NVINFER_KEYS = frozenset("""
parse-func gie-unique-id process-mode interval labelfile-path gpu-id secondary-reinfer-interval
output-tensor-meta enable-dla use-dla-core batch-size tensor-meta-pool-size network-mode
model-engine-file int8-calib-file workspace-size output-blob-names is-classifier network-type
force-implicit-batch-dim infer-dims output-io-formats layer-device-precision model-color-format
net-scale-factor offsets mean-file maintain-aspect-ratio symmetric-padding scaling-filter
scaling-compute-hw network-input-order input-tensor-from-meta custom-lib-path
parse-bbox-func-name parse-bbox-instance-mask-func-name engine-create-func-name
parse-classifier-func-name custom-network-config model-file proto-file uff-file
uff-input-order input-dims uff-input-dims uff-input-blob-name tlt-encoded-model tlt-model-key
onnx-file num-detected-classes enable-dbscan cluster-mode classifier-type classifier-threshold
classifier-async-mode segmentation-threshold segmentation-output-order output-instance-mask
input-object-min-width input-object-min-height input-object-max-width input-object-max-height
operate-on-gie-id operate-on-class-ids filter-out-class-ids
""".split())
NVINFER_REQUIRED = ("network-type", "onnx-file", "model-engine-file", "labelfile-path",
                    "batch-size", "network-mode", "net-scale-factor", "offsets",
                    "model-color-format", "num-detected-classes", "output-blob-names",
                    "segmentation-threshold", "gie-unique-id")

# deepstream-app groups: "Configuration Groups" of
# https://docs.nvidia.com/metropolis/deepstream/dev-guide/text/DS_ref_app_deepstream.html and the
# key macros of apps-common deepstream_config_file_parser.c (DeepStream 6.x); [segvisual]: the
# Gst-nvsegvisual properties (gpu-id, width, height) at
# https://docs.nvidia.com/metropolis/deepstream/5.0DP/plugin-manual/DeepStream%20Plugins%20Development%20Guide/deepstream_plugin_details.3.11.html
# plus the group's enable and nvbuf-memory-type (NvDsSegVisualConfig).
_COMMON = {"enable", "gpu-id", "nvbuf-memory-type"}
APP_KEYS: dict[str, frozenset[str]] = {
    "application": frozenset({"enable-perf-measurement", "perf-measurement-interval-sec",
                              "gie-kitti-output-dir", "kitti-track-output-dir"}),
    "tiled-display": frozenset(_COMMON | {"rows", "columns", "width", "height"}),
    "source": frozenset(_COMMON | set("""type uri num-sources camera-width camera-height
        camera-fps-n camera-fps-d camera-csi-sensor-id camera-v4l2-dev-node latency
        intra-decode-enable num-decode-surfaces num-extra-surfaces drop-frame-interval camera-id
        source-id select-rtp-protocol rtsp-reconnect-interval-sec cudadec-memtype""".split())),
    "streammux": frozenset(_COMMON | set("""enable-padding width height buffer-pool-size
        batch-size batched-push-timeout live-source attach-sys-ts-as-ntp frame-num-reset-on-eos
        config-file sync-inputs max-latency""".split())),
    "primary-gie": frozenset(_COMMON | set("""input-tensor-meta batch-size model-engine-file
        config-file labelfile-path plugin-type gie-unique-id operate-on-gie-id bbox-border-color
        bbox-bg-color operate-on-class-ids interval infer-raw-output-dir""".split())),
    "segvisual": frozenset(_COMMON | {"width", "height"}),
    "osd": frozenset(_COMMON | set("""process-mode border-width border-color text-size
        text-color text-bg-color font hw-blend-color-attr show-clock clock-x-offset
        clock-y-offset clock-text-size clock-color display-text display-bbox
        display-mask""".split())),
    "sink": frozenset(_COMMON | set("""type width height sync qos container codec enc-type
        bitrate profile iframeinterval output-file source-id rtsp-port udp-port udp-buffer-size
        display-id overlay-id offset-x offset-y link-to-demux""".split())),
}


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    assert parser.read(path) == [str(path)]
    return parser


def _check_documented(nvinfer: configparser.ConfigParser, app: configparser.ConfigParser) -> None:
    assert nvinfer.sections() == ["property"]
    written = set(nvinfer["property"])
    assert written <= NVINFER_KEYS, written - NVINFER_KEYS
    assert set(NVINFER_REQUIRED) <= written
    for section in app.sections():
        group = section.rstrip("0123456789")
        assert group in APP_KEYS, section
        assert set(app[section]) <= APP_KEYS[group], (section, set(app[section]) - APP_KEYS[group])


def _ort(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(("precision", "mode"), [("fp32", "0"), ("fp16", "2"), ("int8", "1")])
def test_demo_configs(tmp_path: Path, precision: str, mode: str) -> None:
    video = tmp_path / "cam.mp4"
    options = DeepStreamOptions(sources=(str(video), "rtsp://cam.local/1", "file:///v.mp4"))
    bundle = write_deepstream(DEMOS[precision], tmp_path / "ds", options)
    nvinfer, app = _read(bundle.nvinfer_config), _read(bundle.app_config)
    _check_documented(nvinfer, app)
    prop = nvinfer["property"]
    assert prop["network-type"] == "2" and prop["network-mode"] == mode
    assert float(prop["net-scale-factor"]) == 1.0 and prop["offsets"] == "0;0;0"
    assert prop["model-color-format"] == "1"  # the demo takes BGR bytes
    assert prop["batch-size"] == "1"  # static batch 1
    assert prop["num-detected-classes"] == "7" and prop["output-blob-names"] == "scores"
    assert float(prop["segmentation-threshold"]) == 0.0
    assert "infer-dims" not in prop  # static size: the ONNX says it
    assert prop["onnx-file"] == f"demo_{precision}_nvinfer.onnx"
    # where nvinfer saves the engine it builds: its own mode names (fp32 / fp16 / int8)
    assert prop["model-engine-file"] == f"demo_{precision}_nvinfer.onnx_b1_gpu0_{precision}.engine"
    assert (tmp_path / "ds" / prop["onnx-file"]).is_file()
    labels = (tmp_path / "ds" / prop["labelfile-path"]).read_text().splitlines()
    assert labels == ["sky", "building", "tree", "road", "lane_marking", "sidewalk", "car"]
    assert [app[f"source{k}"]["type"] for k in range(3)] == ["2", "4", "2"]
    assert app["source0"]["uri"] == video.resolve().as_uri()
    assert app["source1"]["uri"] == "rtsp://cam.local/1"
    assert app["streammux"]["batch-size"] == "3" and app["streammux"]["live-source"] == "1"
    assert app["primary-gie"]["config-file"] == "nvinfer_config.txt"
    assert (app["segvisual"]["enable"], app["segvisual"]["width"],
            app["segvisual"]["height"]) == ("1", "320", "240")
    assert "UNVERIFIED" in bundle.app_config.read_text()
    assert "UNVERIFIED" in bundle.nvinfer_config.read_text()
    # the copy, fed as nvinfer feeds it, gives the artifact's labels (independent check)
    copy = _ort(tmp_path / "ds" / prop["onnx-file"])
    assert [(i.name, i.type, i.shape) for i in copy.get_inputs()] == [
        ("pixels", "tensor(float)", [1, 3, 240, 320])]
    assert [(o.name, o.type, o.shape) for o in copy.get_outputs()] == [
        ("scores", "tensor(float)", [1, 7, 240, 320])]
    frame = scenes.frames(1, (240, 320), seed=7)[0][None]  # BGR bytes
    labels_ref = _ort(DEMOS[precision]).run(["labels"], {"input": frame})[0]
    scores = copy.run(["scores"], {"pixels": frame.transpose(0, 3, 1, 2).astype(np.float32)})[0]
    assert np.array_equal(scores.argmax(1), labels_ref)
    assert np.allclose(scores.sum(1), 1.0, atol=1e-5) and scores.min() > 0.0


def test_uniform_std_is_one_scale(tmp_path: Path) -> None:
    meta = float_metadata(std=(0.25, 0.25, 0.25))
    src = tiny_float_onnx(tmp_path / "tiny.onnx", meta)
    bundle = write_deepstream(src, tmp_path / "ds", DeepStreamOptions(
        sources=("a.mp4", "b.mp4"), width=64, height=48))
    prop = _read(bundle.nvinfer_config)["property"]
    _check_documented(_read(bundle.nvinfer_config), _read(bundle.app_config))
    assert prop["infer-dims"] == "3;48;64" and prop["batch-size"] == "2"  # dynamic: N sources
    assert prop["model-color-format"] == "0"
    scale = float(prop["net-scale-factor"])
    offsets = np.array([float(v) for v in prop["offsets"].split(";")])
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.float64)
    expected = Normalization.from_unit(meta.input.mean, meta.input.std).apply(pixels)
    assert np.allclose(scale * (pixels - offsets), expected, rtol=1e-6, atol=1e-6)
    copy = onnx.load(str(bundle.onnx))
    assert "segedge_fold_std" not in {n.name for n in copy.graph.node}
    assert bundle.preprocess.folded_std is None


def test_per_channel_std_folded_not_averaged(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    meta = float_metadata()  # ImageNet std differs per channel
    src = tiny_float_onnx(tmp_path / "tiny.onnx", meta)
    main(["deepstream", str(src), "-o", str(tmp_path / "ds"), "--width", "64", "--height", "48"])
    line = capsys.readouterr().out.strip()
    assert "per-channel std folded into the ONNX" in line and "unverified on DeepStream" in line
    text = (tmp_path / "ds" / "nvinfer_config.txt").read_text()
    assert "cannot be one net-scale-factor: folded into a leading Mul" in text
    prop = _read(tmp_path / "ds" / "nvinfer_config.txt")["property"]
    assert float(prop["net-scale-factor"]) == 1.0
    offsets = [float(v) for v in prop["offsets"].split(";")]
    assert offsets == pytest.approx([255 * m for m in meta.input.mean], abs=1e-4)
    copy_path = tmp_path / "ds" / prop["onnx-file"]
    assert "segedge_fold_std" in {n.name for n in onnx.load(str(copy_path)).graph.node}
    pixels = np.random.default_rng(1).integers(0, 256, (2, 48, 64, 3)).astype(np.float32)
    norm = Normalization.from_unit(meta.input.mean, meta.input.std)
    logits = _ort(src).run(["logits"], {"input": norm.apply(pixels).astype(np.float32)
                                        .transpose(0, 3, 1, 2)})[0]
    fed = np.float32(float(prop["net-scale-factor"])) * (
        pixels.transpose(0, 3, 1, 2) - np.array(offsets, np.float32).reshape(1, 3, 1, 1))
    scores = _ort(copy_path).run(["scores"], {"pixels": fed.astype(np.float32)})[0]
    soft = np.exp(logits - logits.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    assert np.abs(soft - scores).max() < 1e-5
    assert np.array_equal(scores.argmax(1), logits.argmax(1))


def test_verify_catches_a_wrong_normalisation(tmp_path: Path) -> None:
    src = tiny_float_onnx(tmp_path / "tiny.onnx", float_metadata(std=(0.25, 0.25, 0.25)))
    model, artifact = load_onnx(src)
    copy, pre = nvinfer_model(model, artifact)
    frames = [f[..., ::-1].copy() for f in scenes.frames(2, (48, 64))]
    assert verify(model, copy, artifact, pre, frames)["argmax_agreement"] >= 99.99
    wrong = NvinferPreprocess(pre.scale, (0.0, 0.0, 0.0), pre.color, None, "no mean")
    with pytest.raises(VerificationError, match="expected the nvinfer copy to give segedge"):
        verify(model, copy, artifact, wrong, frames)


def _engine(path: Path, onnx_sha: str, max_batch: int) -> Path:
    path.write_bytes(b"\x00engine\xff" * 64)
    meta = float_metadata()
    write_sidecar(path, EngineSidecar(
        plan_sha256=sha256_file(path), onnx_sha256=onnx_sha, segedge=json.loads(meta.to_json()),
        tensorrt_version="10.13.0.35", gpu_name="Orin", compute_capability="8.7",
        precision="fp32", profile={"pixels": ((1, 3, 48, 64), (1, 3, 48, 64),
                                              (max_batch, 3, 48, 64))}, build_time_s=1.0))
    return path


def test_engine_must_come_from_the_copy(tmp_path: Path) -> None:
    src = tiny_float_onnx(tmp_path / "tiny.onnx")
    first = write_deepstream(src, tmp_path / "ds", DeepStreamOptions(width=64, height=48))
    copy_sha = sha256_file(first.onnx)
    own = _engine(tmp_path / "own.plan", sha256_file(src), 4)
    with pytest.raises(InputError, match="a plan built from the nvinfer copy"):
        write_deepstream(src, tmp_path / "ds2", DeepStreamOptions(width=64, height=48, engine=own))
    small = _engine(tmp_path / "small.plan", copy_sha, 1)
    with pytest.raises(InputError, match="allows batch 2, got maximum batch 1"):
        write_deepstream(src, tmp_path / "ds3", DeepStreamOptions(
            sources=("a.mp4", "b.mp4"), width=64, height=48, engine=small))
    good = _engine(tmp_path / "good.plan", copy_sha, 4)
    bundle = write_deepstream(src, tmp_path / "ds4", DeepStreamOptions(
        width=64, height=48, engine=good))
    prop = _read(bundle.nvinfer_config)["property"]
    assert (tmp_path / "ds4" / prop["model-engine-file"]).resolve() == good.resolve()
    assert sha256_file(bundle.onnx) == copy_sha  # the copy is deterministic


def test_refusals_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = tiny_float_onnx(tmp_path / "tiny.onnx")
    foreign = onnx.load(str(DEMOS["fp32"]))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    cases = [
        ([str(tiny)], "--width/--height: expected the network input size"),
        ([str(tiny), "--width", "63", "--height", "48"], "multiples of the artifact's stride 4"),
        ([str(DEMOS["fp32"]), "--batch", "4"], "--batch: expected the artifact's static batch 1"),
        ([str(DEMOS["fp32"]), "--width", "640", "--height", "480"], "static size 320x240"),
        ([str(tmp_path / "foreign.onnx")], "expected a verified segedge artifact"),
        ([str(DEMOS["fp32"]), "--sources", "ftp://x/y"], "--sources: expected a file path"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exc:
            main(["deepstream", *args, "-o", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2, args
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()  # every refusal before any write
