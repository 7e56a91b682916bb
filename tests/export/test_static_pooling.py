"""Static-size exports write adaptive pooling as fixed pooling: exact, and a graph the size
of its weights (torch.onnx writes a Gather/Add chain per output cell otherwise)."""

from __future__ import annotations

import itertools
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segedge.export.config import ExportConfig
from segedge.export.onnx.rewrites import static_adaptive_pooling
from segedge.export.pipeline import export

SIZES = [(64, 128), (13, 10), (8, 8), (7, 5)]
OUTS = [(1, 1), (2, 2), (3, 3), (6, 6), (4, 5), (5, None), (7, 5)]


@pytest.mark.parametrize(("size", "out"), [(s, o) for s, o in itertools.product(SIZES, OUTS)
                                           if o[0] <= s[0] and (o[1] or s[1]) <= s[1]])
def test_rewrite_is_exact_for_divisible_and_non_divisible_sizes(size: tuple[int, int],
                                                                out: tuple[int, int | None]
                                                                ) -> None:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0))
    want_avg, want_max = F.adaptive_avg_pool2d(x, out), F.adaptive_max_pool2d(x, out)
    with static_adaptive_pooling(True) as said:
        got_avg = nn.AdaptiveAvgPool2d(out)(x)  # the module calls the functional
        got_max = F.adaptive_max_pool2d(x, out)
        got_3d = F.adaptive_avg_pool2d(x[0], out)  # unbatched
    torch.testing.assert_close(got_avg, want_avg, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_3d, want_avg[0], atol=1e-5, rtol=0)
    assert torch.equal(got_max, want_max)
    if out != size:
        assert said and "fixed pooling" in said[0]
    else:  # the identity is left to torch
        assert said == []


def test_patch_is_scoped_and_off_when_dynamic() -> None:
    original = (F.adaptive_avg_pool2d, F.adaptive_max_pool2d)
    with static_adaptive_pooling(False) as said:
        assert (F.adaptive_avg_pool2d, F.adaptive_max_pool2d) == original
    assert said == []
    x = torch.randn(1, 2, 9, 9)
    with pytest.raises(RuntimeError, match="boom"), static_adaptive_pooling(True):
        assert F.adaptive_avg_pool2d is not original[0]
        raise RuntimeError("boom")
    assert (F.adaptive_avg_pool2d, F.adaptive_max_pool2d) == original  # restored on errors
    with static_adaptive_pooling(True) as said:  # indices: only the real op has them
        values, idx = nn.AdaptiveMaxPool2d(4, return_indices=True)(x)
    want_values, want_idx = F.adaptive_max_pool2d(x, 4, return_indices=True)
    assert torch.equal(idx, want_idx) and torch.equal(values, want_values) and said == []


PPM = '''
import torch
from torch import nn
import torch.nn.functional as F


class PPMNet(nn.Module):
    """PSPNet-style pyramid pooling (bins 1, 2, 3, 6) on a 64x128 feature map."""

    def __init__(self, num_classes: int = 3, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(width, width // 4, 1), nn.ReLU())
            for b in (1, 2, 3, 6))
        self.head = nn.Conv2d(width * 2, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.stem(x)
        pyramid = [f] + [F.interpolate(s(f), size=f.shape[-2:], mode="bilinear",
                                       align_corners=False) for s in self.stages]
        g = torch.cat(pyramid, 1)
        g = g + F.adaptive_max_pool2d(g, (5, 7)).mean((2, 3), keepdim=True)
        return self.head(g)
'''


def _weight_bytes(src: Path) -> int:
    scope: dict[str, object] = {}
    exec(compile(src.read_text(), str(src), "exec"), scope)  # noqa: S102 - our own fixture
    model = scope["PPMNet"](3)  # type: ignore[operator]
    return sum(p.numel() * 4 for p in model.parameters())


def test_psp_pyramid_exports_close_to_its_weights(tmp_path: Path) -> None:
    src = tmp_path / "ppm.py"
    src.write_text(PPM)
    out = tmp_path / "ppm.onnx"
    report = export(ExportConfig(model=f"{src}:PPMNet", num_classes=3, imgsz=(64, 128),
                                 output=out, quiet=True))
    weights = _weight_bytes(src)
    assert out.stat().st_size <= 2 * weights, (out.stat().st_size, weights)
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "Gather" not in ops and "GatherND" not in ops and len(ops) < 150
    assert report["parity"]["argmax_agreement"] == 100.0
    assert report["parity"]["max_abs_diff"] <= 1e-4  # exact: the masks are near-constant
    rewritten = " ".join(report["rewrites"])
    for bins in ("1x1", "2x2", "3x3", "6x6"):
        assert f"adaptive_avg_pool2d 64x128->{bins}" in rewritten
    assert "adaptive_max_pool2d 64x128->5x7" in rewritten


class GlobalPool(nn.Module):
    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + self.pool(y).mean((2, 3), keepdim=True)


def test_dynamic_export_keeps_the_adaptive_op(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from segedge.export.onnx import rewrites

    def no_rewrite(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dynamic export must not fix the pooling windows")

    monkeypatch.setattr(rewrites, "_pool_axis", no_rewrite)
    src = tmp_path / "gp.py"
    src.write_text("import torch\nfrom torch import nn\n\n\n" + _source(GlobalPool))
    report = export(ExportConfig(model=f"{src}:GlobalPool", num_classes=3, imgsz=(32, 48),
                                 dynamic=True, output=tmp_path / "gp.onnx", quiet=True))
    assert not any("adaptive" in r for r in report["rewrites"])
    assert report["parity"]["argmax_agreement"] == 100.0


def _source(cls: type) -> str:
    import inspect

    return inspect.getsource(cls)


class ScriptedBranch(nn.Module):
    """A rewritten eager pooling beside code TorchScript compiles *during* the export (what
    torchvision's detection heads do with @script_if_tracing): the patched F functions must
    compile there, as the original ops."""

    def __init__(self, scripted: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((5, 3))  # 12x10 -> 5x3: not divisible, rewritten
        self.scripted = scripted

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y + self.pool(y).mean((2, 3), keepdim=True) + self.scripted(y)  # type: ignore


def test_torchscript_export_compiles_scripted_code_calling_the_patched_ops(
        tmp_path: Path) -> None:
    import onnxruntime as ort

    from segedge.export.onnx.convert import ExportSpec, export_onnx

    @torch.jit.script_if_tracing  # compiled on the first trace: inside the export's patch
    def pooled(y: torch.Tensor) -> torch.Tensor:
        a = F.adaptive_avg_pool2d(y, [6, 5]).amax((2, 3), keepdim=True)
        b = F.adaptive_max_pool2d(y, [3, 2]).mean((2, 3), keepdim=True)
        # any F.interpolate compiles its "area" branch, which calls F.adaptive_avg_pool2d
        c = F.interpolate(y, size=[6, 5], mode="bilinear").mean((2, 3), keepdim=True)
        return a + b + c

    model = ScriptedBranch(pooled).eval()
    x = torch.randn(1, 3, 12, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(x).numpy()
    spec = ExportSpec(output_names=("logits",), input_axes={}, output_axes={},
                      exporters=("torchscript",))
    result = export_onnx(model, x, tmp_path / "s.onnx", spec)
    assert result.exporter == "torchscript" and result.failures == ()
    assert result.rewrites and "adaptive_avg_pool2d 12x10->5x3" in result.rewrites[0]
    session = ort.InferenceSession(str(tmp_path / "s.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == want.shape and abs(got - want).max() <= 1e-5
    assert (F.adaptive_avg_pool2d, F.adaptive_max_pool2d) == (
        torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.adaptive_max_pool2d)
