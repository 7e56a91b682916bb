"""The Triton backend against a REAL Triton Inference Server (PyTriton's bundled tritonserver).

The server (tests/triton/serve_demo.py) serves the shipped demo ONNX through ONNX Runtime in
a Python-backend model; the server and its HTTP/gRPC protocols are Triton's own.  Tests that
need it skip with the reason where tests/triton/setup_server_env.sh could not install it;
URI parsing, dispatch and the no-server failures run everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.backends.base import backend_for_uri, open_backend
from segedge.runtime.backends.triton import TritonBackend, TritonLostError
from segedge.runtime.backends.triton_client import TritonTarget
from segedge.runtime.errors import ArtifactError, BackendUnavailableError, InputError
from segedge.runtime.metadata import ArtifactMetadata, InputSpec
from segedge.runtime.segmenter import Segmenter
from tests.triton.server import DEMO_ONNX, REPO, TritonServer, free_ports, why_not

CLIP = REPO / "runtime" / "assets" / "demo_clip.mp4"
HAS_CLIENT = all(importlib.util.find_spec(m) is not None
                 for m in ("tritonclient", "geventhttpclient", "grpc"))
needs_client = pytest.mark.skipif(
    not HAS_CLIENT, reason="tritonclient[http,grpc] is not installed (pip install -e '.[triton]')")
SCHEMES = {"http": "triton", "grpc": "triton+grpc"}


def uri(server: TritonServer, protocol: str, model: str, query: str = "") -> str:
    port = server.http if protocol == "http" else server.grpc
    return f"{SCHEMES[protocol]}://127.0.0.1:{port}/{model}{query}"


def segrun(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "segedge.runtime.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)


def clip_frames(count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(CLIP))
    frames = []
    for _ in range(count):
        ok, frame = cap.read()
        assert ok
        frames.append(frame)
    cap.release()
    return frames


def error_of(call: Callable[[], object], within_s: float) -> BaseException | None:
    """What ``call`` raised, run on a thread; a call still running after ``within_s`` hangs."""
    box: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            box.append(err)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout=within_s)
    assert not worker.is_alive(), f"still running after {within_s} s: a hang"
    return box[0] if box else None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    reason = None if HAS_CLIENT else "tritonclient[http,grpc] is not installed"
    reason = reason or why_not()
    if reason is not None:
        pytest.skip(reason)
    srv = TritonServer.start(tmp_path_factory.mktemp("triton"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def local() -> Iterator[Segmenter]:
    with Segmenter(DEMO_ONNX, backend="onnxruntime") as seg:
        yield seg


# -- no server needed ---------------------------------------------------------------------


def test_uri_forms_and_defaults() -> None:
    t = TritonTarget.parse("triton://edge-box/seg")
    assert (t.protocol, t.host, t.port, t.model, t.version, t.timeout_s) == \
        ("http", "edge-box", 8000, "seg", "", 30.0)
    g = TritonTarget.parse("triton+grpc://10.0.0.5/seg/3?timeout=2.5")
    assert (g.protocol, g.port, g.version, g.timeout_s, g.where) == \
        ("grpc", 8001, "3", 2.5, "grpc://10.0.0.5:8001")
    a = TritonTarget.parse("triton://me:s3cret@host:9000/m")
    assert a.where == "http://host:9000" and "s3cret" not in repr(a)
    assert a.headers == {"authorization": "Basic bWU6czNjcmV0"}  # base64("me:s3cret")


@pytest.mark.parametrize(("text", "message"), [
    ("triton://host:8000/", "model: expected triton[+grpc]://host[:port]/model[/version]"
                            "[?timeout=SECONDS], got triton://host:8000/"),
    ("triton://host/m/1/x", "got triton://host/m/1/x"),
    ("triton://host/m/latest", "triton model version: expected a positive integer, "
                               "got 'latest'"),
    ("triton://host/m?timeout=0", "triton timeout: expected seconds in (0, 3600], got 0.0"),
    ("triton://host/m?retries=3", "(query: timeout only), got triton://host/m?retries=3"),
    ("triton://u:pw@host/m?token=abc&x=1", "got triton://u:***@host/m?token=***&x=1"),
])
def test_bad_uris_are_one_input_error(text: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        TritonTarget.parse(text)
    assert message in str(err.value)
    assert "pw" not in str(err.value) and "abc" not in str(err.value)


def test_scheme_picks_the_backend_and_files_keep_theirs() -> None:
    assert backend_for_uri("triton://h/m") == "triton"
    assert backend_for_uri("TRITON+GRPC://h/m") == "triton"
    assert backend_for_uri("model.onnx") is None
    assert backend_for_uri(Path("triton:/h/m")) is None  # a Path is a file, never a URI
    with pytest.raises(ArtifactError, match=r"^ftp://u:\*\*\*@h/m: expected a model file or a "
                       r"triton:// or triton\+grpc:// URI, got scheme ftp://$"):
        backend_for_uri("ftp://u:pw@h/m")
    with pytest.raises(InputError, match="backend: expected auto or triton for a triton URI, "
                                         "got 'onnxruntime'"):
        open_backend("triton://127.0.0.1:1/m", "onnxruntime")
    with pytest.raises(InputError, match=r"a backend for files \(triton serves triton://, "
                                         r"triton\+grpc:// URIs\)"):
        open_backend(DEMO_ONNX, "triton")


def test_the_descriptor_says_whether_a_client_is_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from segedge.runtime.backends.base import descriptor

    entry = descriptor("triton")
    try:
        installed = dist_version("tritonclient")
    except PackageNotFoundError:
        installed = "absent"
    assert entry.version() == installed
    monkeypatch.setitem(sys.modules, "tritonclient", None)
    assert entry.available() == (False, "triton: expected tritonclient (pip install "
                                 "'segedge[triton]'), got ModuleNotFoundError: import of "
                                 "tritonclient halted; None in sys.modules")


@needs_client
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_no_server_is_one_password_free_line(protocol: str) -> None:
    (port,) = free_ports(1)  # nothing listens there
    text = f"{SCHEMES[protocol]}://ops:hunter2@127.0.0.1:{port}/demo?timeout=3"
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError) as err:
        Segmenter(text)
    assert time.monotonic() - t0 < 10
    message = str(err.value)
    assert message.startswith(f"triton {protocol}://127.0.0.1:{port}: expected a live Triton "
                              "server, got ")
    assert "Connection refused" in message and "hunter2" not in message
    assert "\n" not in message


@needs_client
def test_segrun_without_server_exits_2_with_one_line(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    proc = segrun(f"triton://ops:hunter2@127.0.0.1:{port}/demo?timeout=3", "demo://",
                  "--max-frames", "2", "--no-display", "-o", tmp_path / "o.mp4", timeout=60)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error" in ln]
    assert errors == [f"segrun: error: triton http://127.0.0.1:{port}: expected a live Triton "
                      "server, got ConnectionRefusedError: [Errno 111] Connection refused"]
    assert "hunter2" not in proc.stderr + proc.stdout
    assert not (tmp_path / "o.mp4").exists()


# -- a real server ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("model", ["demo", "demo_nobatch", "demo_fp16in"])
def test_labels_equal_the_local_onnxruntime_labels(server: TritonServer, local: Segmenter,
                                                   protocol: str, model: str) -> None:
    """Same uint8 frames, same graph, same ONNX Runtime CPU kernels: exactly equal labels."""
    with Segmenter(uri(server, protocol, model)) as remote:
        port = server.http if protocol == "http" else server.grpc
        assert remote.active == f"triton {protocol}://127.0.0.1:{port} model {model} v1"
        assert remote.backend_reason.endswith(": a served model, nothing to probe here")
        for frame in clip_frames(4):
            got, want = remote(frame).labels, local(frame).labels
            assert got.shape == want.shape == frame.shape[:2]
            np.testing.assert_array_equal(got, want)
            assert len(np.unique(want)) >= 3  # a real scene, not a constant map


def test_metadata_comes_from_the_config_parameter(server: TritonServer,
                                                  local: Segmenter) -> None:
    with Segmenter(uri(server, "grpc", "demo")) as batched, \
            Segmenter(uri(server, "http", "demo_nobatch")) as fixed:
        # max_batch_size 4: the server batches, so the batch is dynamic here
        assert batched.metadata == local.metadata.with_changes(
            input=replace(local.metadata.input, batch=None))
        assert fixed.metadata == local.metadata  # max_batch_size 0, declared batch 1
        backend = batched.backend
        assert isinstance(backend, TritonBackend) and backend.max_batch == 4
        assert backend.input_dtype == np.uint8


@pytest.mark.parametrize("model", ["demo", "demo_nobatch"])
def test_a_batch_is_sent_in_pieces_the_server_takes(server: TritonServer, local: Segmenter,
                                                    model: str) -> None:
    """6 frames: in 4 + 2 (max_batch_size 4) or 6 x 1 (declared batch 1); order kept."""
    frames = clip_frames(6)
    tensors = [local.preprocess(f)[0] for f in frames]
    with Segmenter(uri(server, "http", model)) as remote:
        got = remote.backend.infer(np.concatenate(tensors))["labels"]
        # a request the live server refuses is the artifact's fault (exit 2), not a lost server
        with pytest.raises(ArtifactError, match=r"model " + model + r": expected an inference "
                           r"answer, got InferenceServerException: .*unexpected shape for "
                           r"input 'input'") as err:
            remote.backend.infer(np.zeros((1, 100, 100, 3), np.uint8))
        assert not isinstance(err.value, TritonLostError)
    assert got.shape == (6, 240, 320)
    for i, tensor in enumerate(tensors):
        np.testing.assert_array_equal(got[i], local.infer(tensor)["labels"][0])


def test_without_metadata_parameter_hints_or_one_line(server: TritonServer,
                                                      local: Segmenter) -> None:
    with pytest.raises(ArtifactError) as err:
        Segmenter(uri(server, "http", "demo_nometa"))
    assert str(err.value) == (
        f"triton http://127.0.0.1:{server.http} model demo_nometa: expected segedge metadata "
        "in the model config parameter 'segedge_metadata' (segdeploy triton writes it) or "
        "hints (--classes/--mean/--std/--bgr), got neither")
    hints = ArtifactMetadata(model="demo", family="foreign", classes=local.classes,
                             palette=(), input=InputSpec(color_order="BGR"))
    with Segmenter(uri(server, "grpc", "demo_nometa"), hints=hints) as remote:
        assert remote.metadata.input.format == "uint8" and remote.metadata.input.layout == "NHWC"
        assert remote.metadata.input.size == (240, 320) and remote.classes == local.classes
        for frame in clip_frames(2):
            np.testing.assert_array_equal(remote(frame).labels, local(frame).labels)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wrong_model_name_is_input_error(server: TritonServer, protocol: str) -> None:
    port = server.http if protocol == "http" else server.grpc
    with pytest.raises(InputError) as err:
        Segmenter(uri(server, protocol, "nope"))
    assert str(err.value) == (f"model: expected a model served by triton {protocol}://"
                              f"127.0.0.1:{port}, got 'nope' (Request for unknown model: "
                              "'nope' is not found)")
    with pytest.raises(InputError, match=r"got 'demo' version 7 \("):
        Segmenter(uri(server, protocol, "demo/7"))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_segrun_triton_writes_8_frames(server: TritonServer, tmp_path: Path,
                                       protocol: str) -> None:
    """Credentials in the URI go to the server as a Basic header, never to any output."""
    out, stats = tmp_path / "out.mp4", tmp_path / "stats.json"
    port = server.http if protocol == "http" else server.grpc
    model = f"{SCHEMES[protocol]}://ops:s3cret@127.0.0.1:{port}/demo"
    proc = segrun(model, "demo://", "--max-frames", "8", "-o", out, "--no-display",
                  "--stats", stats)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stdout + proc.stderr + stats.read_text()
    assert f"segrun: model {SCHEMES[protocol]}://ops:***@127.0.0.1:{port}/demo on triton " \
           f"{protocol}://127.0.0.1:{port} model demo v1" in proc.stderr
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    cap.release()
    data = json.loads(stats.read_text())
    assert data["frames_processed"] == 8 and data["backend"] == "triton"
    assert data["backend_reason"].startswith(f"triton {protocol}://127.0.0.1:{port} model demo v1")


def test_segrun_hints_for_a_model_without_metadata(server: TritonServer, local: Segmenter,
                                                   tmp_path: Path) -> None:
    """--classes/--bgr stand in for the missing parameter, as for a foreign ONNX."""
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(local.classes) + "\n")
    masks = tmp_path / "masks"
    proc = segrun(uri(server, "grpc", "demo_nometa"), "demo://", "--max-frames", "3",
                  "--classes", classes, "--bgr", "--save-masks", masks, "--no-display")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in masks.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    for i, frame in enumerate(clip_frames(3)):
        mask = cv2.imread(str(masks / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, local(frame).labels)


def test_segrun_wrong_model_exits_2(server: TritonServer) -> None:
    proc = segrun(uri(server, "http", "nope"), "demo://", "--max-frames", "2", "--no-display")
    assert proc.returncode == 2
    assert [ln for ln in proc.stderr.splitlines() if "error" in ln] == [
        f"segrun: error: model: expected a model served by triton http://127.0.0.1:"
        f"{server.http}, got 'nope' (Request for unknown model: 'nope' is not found)"]


def test_server_hung_or_killed_mid_run_is_one_line_and_exit_4(tmp_path: Path) -> None:
    """A server of its own (this one dies): stopped (SIGSTOP), then killed while segrun
    streams to it; segrun and both clients get one typed error (exit 4), never a hang."""
    reason = None if HAS_CLIENT else "tritonclient[http,grpc] is not installed"
    reason = reason or why_not()
    if reason is not None:
        pytest.skip(reason)
    srv = TritonServer.start(tmp_path, models="demo")
    try:
        frame = clip_frames(1)[0]
        http = Segmenter(uri(srv, "http", "demo", "?timeout=2"))
        grpc = Segmenter(uri(srv, "grpc", "demo", "?timeout=2"))
        http(frame), grpc(frame)  # both answered before the kill
        # A hung server (stopped, not dead): the call times out, then so does the liveness check.
        os.killpg(srv.proc.pid, signal.SIGSTOP)
        try:
            with ThreadPoolExecutor(2) as pool:
                t0 = time.monotonic()
                hung = [f.result(timeout=30) for f in
                        [pool.submit(error_of, partial(seg, frame), 30) for seg in (http, grpc)]]
                waited = time.monotonic() - t0
                assert waited < 20, f"{waited:.1f} s for 2 x the 2 s timeout"
        finally:
            os.killpg(srv.proc.pid, signal.SIGCONT)
        for err, said in zip(hung, ("TimeoutError: timed out", "Deadline Exceeded"), strict=True):
            assert isinstance(err, TritonLostError) and said in str(err), err
        http(frame), grpc(frame)  # answered again once the server runs on
        out = tmp_path / "out.mp4"
        run = subprocess.Popen(
            [sys.executable, "-m", "segedge.runtime.cli", uri(srv, "http", "demo", "?timeout=5"),
             str(CLIP), "--realtime", "--no-display", "-o", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*out*.mp4*")) and time.monotonic() < deadline:
            time.sleep(0.2)  # the video's partial file: frames are flowing
        time.sleep(1.0)
        assert run.poll() is None, "segrun ended before the server was killed"
        srv.kill()
        _, stderr = run.communicate(timeout=60)
    finally:
        srv.stop()
    assert run.returncode == 4, stderr
    errors = [ln for ln in stderr.splitlines() if "error" in ln]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"segrun: error: triton http://127.0.0.1:{srv.http} model demo:"
                                " expected an inference answer, got ")
    assert errors[0].endswith("; the server no longer answers (stopped or unreachable)")
    for seg in (http, grpc):
        t0 = time.monotonic()
        err = error_of(partial(seg, frame), within_s=30)
        assert time.monotonic() - t0 < 15, "a dead server must fail fast (refused)"
        assert isinstance(err, TritonLostError), err
        assert err.exit_code == 4 and "no longer answers" in str(err)
        seg.close()
