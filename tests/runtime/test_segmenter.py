"""Python API: labels at frame resolution, postprocess modes, confidence, threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segedge.runtime import Segmenter
from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.draw import UNKNOWN_LABEL
from segedge.runtime.errors import InputError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec
from segedge.runtime.tasks import semantic
from tests.runtime.onnx_fixtures import BLUE, GREEN, RED, scene


def expected_red(frame: np.ndarray) -> np.ndarray:
    return (frame[..., 2] > 127).astype(np.uint8)


@pytest.mark.parametrize("name", ["labels", "labels_dynamic"])
def test_labels_model_at_frame_resolution(models: dict[str, Path], name: str) -> None:
    frame = scene(5, 64, 48)
    with Segmenter(models[name]) as seg:
        result = seg(frame)
    assert result.labels.shape == (48, 64) and result.labels.dtype == np.uint8
    # static 32x48 model: resized in and out (nearest), so allow the boundary column
    assert (result.labels != expected_red(frame)).mean() < 0.05
    assert result.confidence is not None and result.confidence.shape == (48, 64)
    np.testing.assert_allclose(result.confidence[0, 0], 220 / 255, atol=1e-6)
    assert set(result.timings) == {"preprocess", "infer", "postprocess"}
    assert all(v >= 0 for v in result.timings.values())


def test_dynamic_model_is_exact_at_stride_multiple(models: dict[str, Path]) -> None:
    frame = scene(3, 64, 48)  # 64x48 is a multiple of 8: no resizing at all
    np.testing.assert_array_equal(Segmenter(models["labels_dynamic"])(frame).labels,
                                  expected_red(frame))


def test_odd_frame_size_is_rounded_to_stride_and_mapped_back(models: dict[str, Path]) -> None:
    frame = np.empty((45, 70, 3), np.uint8)
    frame[:] = BLUE
    frame[:, :30] = RED
    labels = Segmenter(models["labels_dynamic"])(frame).labels
    assert labels.shape == (45, 70)
    assert (labels[:, :28] == 1).all() and (labels[:, 32:] == 0).all()


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_logits_model_both_postprocess_modes(models: dict[str, Path], mode: str) -> None:
    frame = np.empty((48, 64, 3), np.uint8)
    frame[:, :20] = BLUE
    frame[:, 20:40] = RED
    frame[:, 40:] = GREEN
    seg = Segmenter(models["logits"], postprocess=mode)  # type: ignore[arg-type]
    result = seg(frame)
    assert result.labels.shape == (48, 64)
    assert (result.labels[:, :18] == 0).all()
    assert (result.labels[:, 22:38] == 1).all()
    assert (result.labels[:, 42:] == 2).all()
    assert result.confidence is not None
    assert float(result.confidence[:, 30].min()) > 0.9  # softmax of well separated logits


def test_exact_and_fast_agree_away_from_boundaries(models: dict[str, Path]) -> None:
    frame = scene(9, 100, 75)
    exact = Segmenter(models["logits"], postprocess="exact")(frame).labels
    fast = Segmenter(models["logits"], postprocess="fast")(frame).labels
    assert (exact != fast).mean() < 0.03


def test_score_threshold_marks_unsure_pixels_unknown(models: dict[str, Path]) -> None:
    frame = np.empty((48, 64, 3), np.uint8)
    frame[:, :32] = (0, 0, 250)  # R=250: confidence 0.98
    frame[:, 32:] = (0, 0, 150)  # R=150: red but confidence 0.59
    result = Segmenter(models["labels_dynamic"], score_threshold=0.8)(frame)
    assert (result.labels[:, :32] == 1).all()
    assert (result.labels[:, 32:] == UNKNOWN_LABEL).all()
    with pytest.raises(InputError, match="--score-threshold"):
        Segmenter(models["labels"], score_threshold=2.0)


def test_overlay_helper_and_fractions(models: dict[str, Path]) -> None:
    frame = scene(0, 64, 48)
    result = Segmenter(models["labels_dynamic"])(frame)
    over = result.overlay(frame, alpha=0.5)
    assert over.shape == frame.shape
    red_px = over[0, 0].astype(int)
    np.testing.assert_allclose(red_px, 0.5 * np.array(RED) + 0.5 * np.array((0, 0, 255)),
                               atol=1)
    np.testing.assert_array_equal(over[0, -1], frame[0, -1] // 2)  # background is black
    fractions = result.class_fractions()
    assert fractions["red"] == pytest.approx(8 / 64)


def test_foreign_model_with_bgr_hint_changes_the_answer(models: dict[str, Path]) -> None:
    frame = np.empty((32, 48, 3), np.uint8)
    frame[:] = RED
    rgb = Segmenter(models["foreign"])(frame).labels
    hints = ArtifactMetadata(model="f", family="foreign", classes=("b", "r", "g"), palette=(),
                             input=InputSpec(mean=(0, 0, 0), std=(1, 1, 1), color_order="BGR"))
    bgr = Segmenter(models["foreign"], hints=hints)(frame).labels
    assert (rgb == 1).all()  # red
    assert (bgr == 0).all()  # channels swapped: the "blue" class wins


def test_lazy_export_from_package() -> None:
    import segedge.runtime as rt

    assert rt.Segmenter is Segmenter


# -- options are honoured, confidence is lazy, overlay reuses one drawer --

def test_options_threads_reach_the_onnxruntime_session(models: dict[str, Path]) -> None:
    with Segmenter(models["labels"], options=BackendOptions(threads=1)) as seg:
        assert seg.backend.session.get_session_options().intra_op_num_threads == 1
    with Segmenter(models["labels"], threads=1, options=BackendOptions(provider="cpu")) as seg:
        assert seg.backend.session.get_session_options().intra_op_num_threads == 1
        assert seg.backend.providers == ["CPUExecutionProvider"]
        assert seg.options == BackendOptions(provider="cpu", threads=1)


def test_keyword_arguments_are_merged_into_options_not_dropped(
        models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import segedge.runtime.segmenter as segmenter_mod

    seen: list[BackendOptions] = []
    real = segmenter_mod.open_backend

    def spy(model: Path, backend: str, options: BackendOptions) -> object:
        seen.append(options)
        return real(model, backend, options)

    monkeypatch.setattr(segmenter_mod, "open_backend", spy)
    hints = ArtifactMetadata(model="f", family="foreign", classes=("b", "r", "g"), palette=())
    Segmenter(models["foreign"], provider="cpu", threads=2, hints=hints,
              options=BackendOptions(fp16=True, device_id=0)).close()
    assert seen == [BackendOptions(provider="cpu", threads=2, fp16=True, metadata=hints)]


def test_conflicting_keyword_and_option_is_an_error(models: dict[str, Path]) -> None:
    with pytest.raises(InputError) as err:
        Segmenter(models["labels"], threads=2, options=BackendOptions(threads=1))
    assert str(err.value) == ("threads: expected one value (the threads argument or "
                              "options.threads), got 2 and 1")


def test_hints_inside_options_are_used(models: dict[str, Path]) -> None:
    frame = np.empty((32, 48, 3), np.uint8)
    frame[:] = RED
    hints = ArtifactMetadata(model="f", family="foreign", classes=("b", "r", "g"), palette=(),
                             input=InputSpec(mean=(0, 0, 0), std=(1, 1, 1), color_order="BGR"))
    labels = Segmenter(models["foreign"], options=BackendOptions(metadata=hints))(frame).labels
    assert (labels == 0).all()  # BGR hint honoured: the "blue" class wins


def test_confidence_is_computed_only_when_read(models: dict[str, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = semantic.softmax_max

    def counting(logits: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        return real(logits)

    monkeypatch.setattr(semantic, "softmax_max", counting)
    seg = Segmenter(models["logits"])
    frame = scene(4, 64, 48)
    result = seg(frame)
    assert calls["n"] == 0 and result.labels.shape == (48, 64)
    first = result.confidence
    assert calls["n"] == 1 and first is not None and first.shape == (48, 64)
    assert result.confidence is first and calls["n"] == 1  # computed once, then kept
    tensor, geom = seg.preprocess(frame)
    assert seg.decode(seg.infer(tensor), geom).confidence is None  # the pipeline's call
    assert calls["n"] == 1
    Segmenter(models["logits"], score_threshold=0.5)(frame)  # the threshold needs it
    assert calls["n"] == 2


def test_overlay_reuses_one_drawer(models: dict[str, Path],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    class CountingDrawer(semantic.Drawer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(semantic, "Drawer", CountingDrawer)
    seg = Segmenter(models["labels_dynamic"])
    frame = scene(0, 64, 48)
    first, second = seg(frame), seg(scene(1, 64, 48))
    assert built == []  # nothing drawn yet: no drawer
    half = first.overlay(frame)
    faint = second.overlay(frame, alpha=0.25)
    first.overlay(frame)
    assert len(built) == 1 and seg.drawer().drawer is built[0]  # type: ignore[attr-defined]
    np.testing.assert_allclose(half[0, 0], 0.5 * np.array(RED) + 0.5 * np.array((0, 0, 255)),
                               atol=1)
    np.testing.assert_allclose(faint[0, 0],
                               0.75 * np.array(RED) + 0.25 * np.array((0, 0, 255)), atol=1)
