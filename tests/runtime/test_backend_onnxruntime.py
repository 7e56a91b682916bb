"""ONNX Runtime backend: metadata, foreign models, validation, providers, I/O binding."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from segedge.runtime.backends.base import BackendOptions, open_backend
from segedge.runtime.backends.onnxruntime import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    OnnxRuntimeBackend,
    executed_providers,
    new_session,
    resolve_providers,
)
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, InputError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec


def test_reads_metadata_from_the_artifact(models: dict[str, Path]) -> None:
    backend = open_backend(models["labels"])
    assert backend.name == "onnxruntime"
    assert backend.active == CPU_EP
    assert backend.metadata.classes == ("background", "red")
    assert backend.metadata.input.format == "uint8"
    assert backend.metadata.output.kind == "labels"
    x = np.zeros((1, 32, 48, 3), np.uint8)
    x[..., 0] = 200  # R channel (the graph takes RGB)
    out = backend.infer(x)
    assert set(out) == {"labels", "confidence"}
    assert out["labels"].dtype == np.uint8 and out["labels"].shape == (1, 32, 48)
    assert (out["labels"] == 1).all()
    np.testing.assert_allclose(out["confidence"], 200 / 255, atol=1e-6)


def test_foreign_onnx_gets_shape_from_session_and_rest_from_hints(
        models: dict[str, Path]) -> None:
    hints = ArtifactMetadata(model="f", family="foreign", classes=("b", "r", "g"), palette=(),
                             input=InputSpec(mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5),
                                             color_order="BGR"))
    backend = open_backend(models["foreign"], options=BackendOptions(metadata=hints))
    meta = backend.metadata
    assert backend.input_name == "images"
    assert meta.input.name == "images" and meta.input.layout == "NCHW"
    assert meta.input.format == "float" and meta.input.size == (32, 48)
    assert meta.input.mean == (0.1, 0.2, 0.3) and meta.input.color_order == "BGR"
    assert meta.classes == ("b", "r", "g") and len(meta.palette) == 3
    assert meta.output.kind == "logits" and meta.output.logits == "logits"


def test_foreign_onnx_without_hints_uses_defaults_and_warns(
        models: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend = open_backend(models["foreign"])
    assert "no segedge metadata" in caplog.text
    assert backend.metadata.classes == ("class_0", "class_1", "class_2")
    assert backend.metadata.input.mean == (0.485, 0.456, 0.406)


def test_foreign_class_count_must_match_channels(models: dict[str, Path]) -> None:
    hints = ArtifactMetadata(model="f", family="foreign", classes=("a", "b"), palette=())
    with pytest.raises(InputError, match="--classes: expected 3 names"):
        open_backend(models["foreign"], options=BackendOptions(metadata=hints))


def test_non_segmentation_model_is_refused_in_one_line(models: dict[str, Path]) -> None:
    with pytest.raises(ArtifactError) as err:
        open_backend(models["classifier"])
    message = str(err.value)
    assert "expected a segmentation model" in message and "'scores'" in message
    assert "\n" not in message


def test_garbage_file_is_an_artifact_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ArtifactError, match="expected a loadable ONNX model") as err:
        open_backend(bad)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such file"):
        open_backend(tmp_path / "nope.onnx")


def test_metadata_naming_a_missing_output_is_refused(tmp_path: Path) -> None:
    import onnx

    from segedge.runtime.metadata import METADATA_KEY
    from tests.runtime.onnx_fixtures import make_labels_model

    path = make_labels_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    meta = ArtifactMetadata.from_json(model.metadata_props[0].value)
    bad = meta.with_changes(output=meta.output.__class__(kind="logits", logits="scores"))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, bad.to_json()
    onnx.save(model, str(path))
    with pytest.raises(ArtifactError, match="expected graph outputs \\['scores'\\]"):
        open_backend(path)


def test_explicit_gpu_provider_absent_is_backend_unavailable(models: dict[str, Path]) -> None:
    with pytest.raises(BackendUnavailableError, match="expected CUDAExecutionProvider"):
        open_backend(models["labels"], options=BackendOptions(provider="cuda"))
    with pytest.raises(InputError, match="provider"):
        open_backend(models["labels"], options=BackendOptions(provider="npu"))


def test_provider_lists_and_tensorrt_options(tmp_path: Path) -> None:
    every = [TRT_EP, CUDA_EP, CPU_EP]
    assert resolve_providers(BackendOptions(provider="cpu"), every) == [CPU_EP]
    auto = resolve_providers(BackendOptions(fp16=True, cache_dir=tmp_path / "c"), every)
    assert [p if isinstance(p, str) else p[0] for p in auto] == every
    trt = auto[0][1]
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] is True
    assert trt["trt_engine_cache_path"] == str(tmp_path / "c") and (tmp_path / "c").is_dir()
    cuda = resolve_providers(BackendOptions(provider="cuda", device_id=1), every)
    assert cuda == [(CUDA_EP, {"device_id": 1}), CPU_EP]
    assert resolve_providers(BackendOptions(), [CPU_EP]) == [CPU_EP]


def test_tensorrt_engine_cache_is_on_by_default(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import segedge.runtime.backends.onnxruntime as ort_backend

    monkeypatch.setattr(ort_backend, "DEFAULT_TRT_CACHE", tmp_path / "cache")
    trt = resolve_providers(BackendOptions(provider="tensorrt"), [TRT_EP, CPU_EP])[0][1]
    assert trt["trt_engine_cache_path"] == str(tmp_path / "cache")
    assert trt["trt_fp16_enable"] is False


def _cpu_sessions(monkeypatch: pytest.MonkeyPatch, available: list[str]) -> list[list[object]]:
    """onnxruntime-gpu without a GPU: providers are listed, every session runs on the CPU."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: list(available))
    real, asked = ort.InferenceSession, []

    def session(path: str, so: object, providers: list[object], **kw: object) -> object:
        assert kw == {"enable_fallback": 0}  # ORT's own retry would drop our options
        asked.append(providers)
        return real(path, so, providers=[CPU_EP], **kw)

    monkeypatch.setattr(ort, "InferenceSession", session)
    return asked


def test_fallback_from_a_listed_gpu_provider_is_warned(
        models: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """onnxruntime-gpu lists CUDA without a GPU; the session then runs on CPU.

    Where nodes ran is read from a profiled probe run, not get_providers(): ``auto``
    warns, an explicit ``--provider cuda`` that ran nothing on CUDA is refused.
    """
    _cpu_sessions(monkeypatch, [CUDA_EP, CPU_EP])
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend = open_backend(models["labels"], options=BackendOptions(provider="auto"))
    assert backend.active == CPU_EP
    assert "CUDAExecutionProvider was requested but onnxruntime runs CPUExecutionProvider" \
        in caplog.text
    assert backend.placement == {CPU_EP: backend.placement[CPU_EP]} and \
        backend.placement[CPU_EP] >= 1
    with pytest.raises(BackendUnavailableError,
                       match=r"^provider cuda: provider CUDAExecutionProvider was requested but "
                             r"onnxruntime runs CPUExecutionProvider \(fell back") as info:
        open_backend(models["labels"], options=BackendOptions(provider="cuda"))
    assert "\n" not in str(info.value)


def test_probe_leaves_no_profile_files(models: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    import tempfile

    _cpu_sessions(monkeypatch, [CUDA_EP, CPU_EP])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    backend = open_backend(models["logits"], options=BackendOptions(provider="auto"))
    assert list(tmp_path.iterdir()) == []
    x = np.random.default_rng(1).random((1, 3, 32, 48), dtype=np.float32)
    assert backend.infer(x)["logits"].shape == (1, 3, 32, 48)
    assert list(tmp_path.iterdir()) == []  # profiling ended with the probe


def test_onnxruntime_own_retry_is_off(models: dict[str, Path]) -> None:
    """ORT's retry re-creates the session with default options (device 0, no cache)."""
    import onnxruntime as ort

    session = new_session(ort, models["labels"], ort.SessionOptions(), [CPU_EP])
    assert session._enable_fallback is False


def test_failed_gpu_provider_steps_down_for_auto_and_is_refused_when_named(
        models: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    import onnxruntime as ort

    asked = _cpu_sessions(monkeypatch, [TRT_EP, CUDA_EP, CPU_EP])
    cpu_session = ort.InferenceSession

    def fails_with_tensorrt(path: str, so: object, providers: list[object], **kw: object
                            ) -> object:
        if any((p if isinstance(p, str) else p[0]) == TRT_EP for p in providers):
            asked.append(providers)
            raise RuntimeError("TensorRT EP failed to create engine\nsecond line")
        return cpu_session(path, so, providers, **kw)

    monkeypatch.setattr(ort, "InferenceSession", fails_with_tensorrt)
    options = BackendOptions(provider="auto", cache_dir=tmp_path / "c", device_id=0)
    with caplog.at_level(logging.WARNING, logger="segedge.runtime"):
        backend = open_backend(models["labels"], options=options)
    assert "TensorrtExecutionProvider could not open labels.onnx (RuntimeError: TensorRT EP " \
           "failed to create engine); trying CUDAExecutionProvider" in caplog.text
    # the retry keeps segedge's options (ORT's own retry would drop them)
    assert asked[1] == [(CUDA_EP, {"device_id": 0}), CPU_EP]
    assert backend.active == CPU_EP
    with pytest.raises(BackendUnavailableError, match=r"^provider tensorrt: "
                       r"TensorrtExecutionProvider could not open labels\.onnx: RuntimeError: "
                       r"TensorRT EP failed to create engine$"):
        open_backend(models["labels"], options=replace(options, provider="tensorrt"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07")  # a valid protobuf prefix, not a model
    with pytest.raises(ArtifactError, match="expected a loadable ONNX model"):
        open_backend(bad, options=replace(options, provider="tensorrt"))


def test_onnxruntime_retry_with_default_device_is_refused(
        models: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Older ORT ignores enable_fallback and may re-create the session on device 0."""
    import onnxruntime as ort

    _cpu_sessions(monkeypatch, [CUDA_EP, CPU_EP])
    cpu_session = ort.InferenceSession

    class Retried:
        def __init__(self, path: str, so: object, providers: list[object], **kw: object) -> None:
            self._real = cpu_session(path, so, providers, **kw)

        def get_providers(self) -> list[str]:
            return [CUDA_EP, CPU_EP]

        def get_provider_options(self) -> dict[str, dict[str, str]]:
            return {CUDA_EP: {"device_id": "0"}, CPU_EP: {}}

        def __getattr__(self, name: str) -> object:
            return getattr(self._real, name)

    monkeypatch.setattr(ort, "InferenceSession", Retried)
    with pytest.raises(BackendUnavailableError,
                       match=r"^CUDAExecutionProvider: expected CUDA device 1, got device 0 "):
        open_backend(models["labels"], options=BackendOptions(provider="cuda", device_id=1))


def test_executed_providers_counts_nodes_of_a_real_run(models: dict[str, Path],
                                                       tmp_path: Path) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "p")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = new_session(ort, models["logits"], so, [CPU_EP])
    x = np.zeros((1, 3, 32, 48), np.float32)
    assert executed_providers(session, {"input": x}) == {CPU_EP: 1}  # the one Conv


def test_io_binding_gives_the_same_outputs(models: dict[str, Path]) -> None:
    plain = OnnxRuntimeBackend(models["logits"], BackendOptions(), io_binding=False)
    bound = OnnxRuntimeBackend(models["logits"], BackendOptions(), io_binding=True)
    x = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)
    for _ in range(2):  # the binding is reused
        np.testing.assert_array_equal(plain.infer(x)["logits"], bound.infer(x)["logits"])


def test_threads_option(models: dict[str, Path]) -> None:
    backend = OnnxRuntimeBackend(models["labels"], BackendOptions(threads=1))
    assert backend.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(InputError, match="--threads"):
        OnnxRuntimeBackend(models["labels"], BackendOptions(threads=0))
