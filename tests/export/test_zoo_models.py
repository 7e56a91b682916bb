"""Behaviour of the zoo architectures: shapes, size constraints, FCN init, SegNet unpooling."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segedge.export.models.deeplabv3plus import (
    DeepLabV3Plus,
    deeplabv3plus_mobilenet_v2,
    deeplabv3plus_resnet50,
    global_mean,
)
from segedge.export.models.fcn_resnet import fcn_resnet18
from segedge.export.models.fcn_vgg import (
    FCNVGG16,
    bilinear_kernel,
    fcn8s,
    fcn16s,
    fcn32s,
    load_vgg16_backbone,
)
from segedge.export.models.segnet import MaxUnpool2x2, SegNet, segnet, set_index_free_unpool
from segedge.export.models.unet import UNet, unet

ODD = (33, 47)


@pytest.fixture(autouse=True)
def _seed() -> Iterator[None]:
    torch.manual_seed(0)
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def fcn8() -> FCNVGG16:
    model = fcn8s(5).eval()
    assert isinstance(model, FCNVGG16)
    return model


@pytest.fixture(scope="module")
def seg() -> SegNet:
    torch.manual_seed(1)
    model = SegNet(5).eval()
    _randomise_bn(model)
    return model


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics so activations look like a trained net's (many ReLU zeros)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.bias, -0.3, 0.1)


# ---------------------------------------------------------------- every model: logits out

FAST_BUILDERS: list[Callable[[int], nn.Module]] = [
    deeplabv3plus_mobilenet_v2,
    deeplabv3plus_resnet50,
    fcn_resnet18,
    lambda n: unet(n, base_width=8),
    segnet,
]


@pytest.mark.parametrize("builder", FAST_BUILDERS)
def test_forward_returns_logits_tensor(builder: Callable[[int], nn.Module]) -> None:
    model = builder(7).eval()
    stride = cast(int, model.stride)
    h, w = (64, 96) if stride > 1 else ODD
    y = model(torch.randn(2, 3, h, w))
    assert type(y) is Tensor
    assert y.shape == (2, 7, h, w)
    assert y.dtype == torch.float32
    assert y.std() > 0  # not a constant map


@pytest.mark.parametrize("builder", [deeplabv3plus_mobilenet_v2, fcn_resnet18])
def test_any_size_models_keep_input_size(builder: Callable[[int], nn.Module]) -> None:
    model = builder(3).eval()
    assert model.stride == 1
    for size in [(97, 131), (64, 64), (1, 1), (360, 480)]:
        assert model(torch.randn(1, 3, *size)).shape == (1, 3, *size)


# ---------------------------------------------------------------- FCN-VGG16


def test_fcn8s_odd_size_and_stride(fcn8: nn.Module) -> None:
    assert fcn8.stride == 1
    assert fcn8(torch.randn(1, 3, *ODD)).shape == (1, 5, *ODD)


@pytest.mark.slow
@pytest.mark.parametrize("builder", [fcn32s, fcn16s, fcn8s])
def test_fcn_variants_any_size(builder: Callable[[int], nn.Module]) -> None:
    model = builder(4).eval()
    for size in [(97, 131), (64, 64), (1, 1)]:
        assert model(torch.randn(1, 3, *size)).shape == (1, 4, *size)


def test_bilinear_kernel_values() -> None:
    k = bilinear_kernel(2, 4)
    row = torch.tensor([0.25, 0.75, 0.75, 0.25])
    torch.testing.assert_close(k[0, 0], row[:, None] * row[None, :], rtol=0, atol=1e-7)
    torch.testing.assert_close(k[1, 1], k[0, 0], rtol=0, atol=0)
    assert k[0, 1].abs().sum() == 0 and k[1, 0].abs().sum() == 0


def test_fcn_upsamplers_initialised_bilinear(fcn8: nn.Module) -> None:
    ups = {n: m for n, m in fcn8.named_modules() if isinstance(m, nn.ConvTranspose2d)}
    assert set(ups) == {"upscore2", "upscore_pool4", "upscore8"}
    for up in ups.values():
        factor = up.stride[0]
        assert up.kernel_size == (2 * factor, 2 * factor)
        torch.testing.assert_close(up.weight, bilinear_kernel(5, 2 * factor), rtol=0, atol=0)
        # Behaviour: half-pixel bilinear upsampling, exact away from the border.
        x = torch.randn(1, 5, 6, 5)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        got = up(x)
        assert got.shape == ref.shape
        interior = (..., slice(factor, -factor), slice(factor, -factor))
        torch.testing.assert_close(got[interior], ref[interior], rtol=0, atol=1e-5)


def test_fcn_upsampler_names_per_variant() -> None:
    with torch.device("meta"):
        names = {
            v: {n for n, m in FCNVGG16(3, v).named_modules() if isinstance(m, nn.ConvTranspose2d)}
            for v in (32, 16, 8)
        }
    assert names == {
        32: {"upscore32"},
        16: {"upscore2", "upscore16"},
        8: {"upscore2", "upscore_pool4", "upscore8"},
    }
    with pytest.raises(ValueError, match="variant"):
        FCNVGG16(3, 4)


def test_load_vgg16_backbone_matches_torchvision_layout(fcn8: FCNVGG16) -> None:
    from torchvision.models import vgg16

    with torch.device("meta"):
        layout = vgg16().state_dict()
    fake = {k: torch.randn(v.shape) * 0.01 for k, v in layout.items()}
    assert load_vgg16_backbone(fcn8, fake) == 30  # 13 convs x 2 + fc6 + fc7 (w, b)
    params = dict(fcn8.named_parameters())
    assert torch.equal(params["features.0.weight"], fake["features.0.weight"])
    assert torch.equal(params["features.28.bias"], fake["features.28.bias"])
    # fc6 as a 7x7 conv on a 7x7 pool5 map equals the ImageNet Linear at the centre pixel.
    pool5 = torch.randn(1, 512, 7, 7)
    conv = fcn8.fc6(pool5)[0, :, 3, 3]
    linear = F.linear(pool5.flatten(1), fake["classifier.0.weight"], fake["classifier.0.bias"])
    torch.testing.assert_close(conv, linear[0], rtol=1e-4, atol=1e-4)
    fc7 = fcn8.fc7(torch.ones(1, 4096, 1, 1))[0, :, 0, 0]
    ref7 = F.linear(torch.ones(1, 4096), fake["classifier.3.weight"], fake["classifier.3.bias"])
    torch.testing.assert_close(fc7, ref7[0], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="missing"):
        load_vgg16_backbone(fcn8, {k: v for k, v in fake.items() if "classifier.3" not in k})
    with pytest.raises(TypeError, match="FCNVGG16"):
        load_vgg16_backbone(nn.Conv2d(1, 1, 1), fake)


# ---------------------------------------------------------------- UNet


def test_unet_stride_and_size_check() -> None:
    model = UNet(3, base_width=4).eval()
    assert model.stride == 16
    assert model(torch.randn(1, 3, 48, 80)).shape == (1, 3, 48, 80)
    with pytest.raises(ValueError, match=r"multiples of its stride 16.*97x131"):
        model(torch.randn(1, 3, 97, 131))
    shallow = UNet(2, in_channels=1, base_width=4, depth=3).eval()
    assert shallow.stride == 8
    assert shallow(torch.randn(1, 1, 40, 24)).shape == (1, 2, 40, 24)
    with pytest.raises(ValueError, match="stride 8"):
        shallow(torch.randn(1, 1, 40, 20))


def test_unet_default_width() -> None:
    model = unet(4)
    assert model.down[0][0].out_channels == 64
    assert model.down[-1][0].out_channels == 1024


# ---------------------------------------------------------------- SegNet


def test_segnet_stride_and_size_check(seg: SegNet) -> None:
    assert seg.stride == 32
    with pytest.raises(ValueError, match=r"multiples of its stride 32.*96x80"):
        seg(torch.randn(1, 3, 96, 64 + 16))
    with pytest.raises(ValueError, match="stride 32"):
        seg(torch.randn(1, 3, 97, 131))


def _unpool_both(pre: Tensor, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
    pooled, idx = F.max_pool2d_with_indices(pre, (2, 2), (2, 2))
    if x is None:
        x = torch.randn_like(pooled)
    ref = MaxUnpool2x2(index_free=False)(x, pre, idx)
    got = MaxUnpool2x2(index_free=True)(x, pre)
    return ref, got


def _bits_equal(a: Tensor, b: Tensor) -> bool:
    """Bit-level equality (distinguishes -0.0 from 0.0, unlike torch.equal)."""
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize(
    "make_pre",
    [
        pytest.param(lambda: torch.randn(2, 8, 16, 24), id="random"),
        pytest.param(lambda: torch.randint(0, 2, (2, 8, 16, 24)).float(), id="binary-ties"),
        pytest.param(lambda: F.relu(torch.randn(2, 8, 16, 24) - 1.0), id="relu-zero-windows"),
        pytest.param(lambda: torch.zeros(1, 3, 8, 8), id="all-zero"),
        pytest.param(lambda: torch.randint(-2, 3, (1, 4, 32, 32)).float(), id="int-ties"),
        pytest.param(
            lambda: (
                torch.randint(0, 2, (2, 8, 16, 24))
                .float()
                .contiguous(memory_format=torch.channels_last)
            ),
            id="channels-last",
        ),
    ],
)
def test_index_free_unpool_bit_exact(make_pre: Callable[[], Tensor]) -> None:
    pre = make_pre()
    ref, got = _unpool_both(pre)
    assert _bits_equal(ref, got)
    # Exactly one decoder value per window, so the test has something to compare.
    assert (ref != 0).sum() == pre.numel() // 4


def test_index_free_unpool_tie_break_is_first_in_row_major_order() -> None:
    # Each 2x2 window: all four equal -> top-left; bottom pair max -> bottom-left.
    pre = torch.tensor([[[[0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 3.0, 3.0]]]])
    x = torch.tensor([[[[5.0, 7.0]]]])
    ref, got = _unpool_both(pre, x)
    expected = torch.tensor([[[[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 7.0, 0.0]]]])
    assert torch.equal(ref, expected)
    assert _bits_equal(got, expected)


def test_index_free_unpool_needs_indices_in_default_mode() -> None:
    with pytest.raises(ValueError, match="indices"):
        MaxUnpool2x2()(torch.randn(1, 1, 2, 2), torch.randn(1, 1, 4, 4))


def test_set_index_free_unpool_counts(seg: SegNet) -> None:
    try:
        assert set_index_free_unpool(seg, True) == 5
        assert set_index_free_unpool(seg, True) == 0
        assert all(m.index_free for m in seg.modules() if isinstance(m, MaxUnpool2x2))
        assert set_index_free_unpool(seg, False) == 5
        assert set_index_free_unpool(nn.Conv2d(1, 1, 1)) == 0
    finally:
        set_index_free_unpool(seg, False)


def test_segnet_index_free_equals_indices_on_model_activations(seg: SegNet) -> None:
    x = torch.randn(2, 3, 64, 96)
    # Real activations: check the first pre-pool map is tie-heavy (ReLU zeros).
    pre = seg.encoder[0](x)
    zero_windows = (F.max_pool2d(pre, 2, 2) == 0).float().mean()
    assert zero_windows > 0.05
    ref_unpool, got_unpool = _unpool_both(pre, F.max_pool2d(pre, 2, 2))
    assert _bits_equal(ref_unpool, got_unpool)
    try:
        ref = seg(x)
        assert set_index_free_unpool(seg, True) == 5
        got = seg(x)
    finally:
        set_index_free_unpool(seg, False)
    assert _bits_equal(ref, got)


def _export_index_free(model: SegNet, dynamo: bool, path: Path) -> onnx.ModelProto:
    x = torch.randn(1, 3, 64, 64)
    if dynamo:
        dim = torch.export.Dim.DYNAMIC
        program = torch.onnx.export(
            model, (x,), dynamo=True, external_data=False, opset_version=17,
            input_names=["input"], output_names=["logits"], verbose=False,
            dynamic_shapes={"x": {2: dim, 3: dim}},
        )  # fmt: skip
        assert program is not None
        return program.model_proto
    torch.onnx.export(
        model, (x,), path, dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {2: "h", 3: "w"}, "logits": {2: "h", 3: "w"}},
    )  # fmt: skip
    return onnx.load(path)


@pytest.mark.parametrize(
    "dynamo",
    [
        pytest.param(False, id="torchscript"),
        pytest.param(True, id="dynamo", marks=pytest.mark.slow),
    ],
)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_segnet_index_free_exports_without_maxunpool(
    seg: SegNet, dynamo: bool, tmp_path: Path
) -> None:
    set_index_free_unpool(seg, True)
    try:
        proto = _export_index_free(seg, dynamo, tmp_path / "segnet.onnx")
    finally:
        set_index_free_unpool(seg, False)
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"MaxUnpool", "ScatterND", "ScatterElements", "Scatter"}
    assert {"Equal", "Where", "DepthToSpace", "ReduceMax"} <= ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 96, 64)  # a different size than the export example
    (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    ref = seg(x)  # indices path
    torch.testing.assert_close(torch.from_numpy(got), ref, rtol=1e-4, atol=1e-4)
    assert (torch.from_numpy(got).argmax(1) == ref.argmax(1)).float().mean() > 0.999


# ---------------------------------------------------------------- DeepLab v3+ / FCN-ResNet18


@pytest.mark.parametrize(
    ("builder", "low_ch", "high_ch"),
    [(deeplabv3plus_mobilenet_v2, 24, 320), (deeplabv3plus_resnet50, 256, 2048)],
)
def test_deeplab_output_stride_16(
    builder: Callable[[int], nn.Module], low_ch: int, high_ch: int
) -> None:
    model = builder(3).eval()
    assert isinstance(model, DeepLabV3Plus)
    low = model.backbone["low"](torch.randn(1, 3, 64, 96))
    high = model.backbone["high"](low)
    assert low.shape == (1, low_ch, 16, 24)
    assert high.shape == (1, high_ch, 4, 6)
    atrous = [m for m in model.aspp.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert [m.dilation[0] for m in atrous] == [6, 12, 18]
    assert all(m.groups == m.in_channels for m in atrous)  # depthwise separable
    reduce = model.reduce[0]
    assert isinstance(reduce, nn.Conv2d) and reduce.out_channels == 48


def test_global_mean_matches_mean() -> None:
    x = torch.randn(2, 3, 13, 7)
    torch.testing.assert_close(global_mean(x), x.mean((2, 3), keepdim=True), rtol=1e-5, atol=1e-6)


def test_fcn_resnet18_uses_torchvision_names() -> None:
    from torchvision.models import resnet18

    model = fcn_resnet18(4)
    keys = set(model.state_dict())
    trunk = {f"backbone.{k}" for k in resnet18().state_dict() if not k.startswith("fc.")}
    assert trunk <= keys
    assert "classifier.4.weight" in keys and model.classifier[4].out_channels == 4
