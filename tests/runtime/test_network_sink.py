"""Network outputs for real: a second process (ffmpeg) receives udp://, rtp:// (via the
SDP the sink writes) and rtsp:// (ffmpeg as the RTSP server) on loopback, and the frames
it recorded are reopened and counted.  Plus the one-line failures: bad targets, no
encoder, a refused RTSP server, an encoder that dies, nobody listening."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.errors import InputError
from segedge.runtime.sinks import network
from segedge.runtime.sinks.base import SinkContext
from segedge.runtime.sinks.network import NetworkSink, check_network, parse_target
from segedge.runtime.sinks.stream_encoders import FfmpegEncoder, find_ffmpeg

FFMPEG = find_ffmpeg()
needs_ffmpeg = pytest.mark.skipif(
    FFMPEG is None, reason="no ffmpeg on PATH and imageio-ffmpeg is not installed "
    "(pip install 'segedge[stream]')")
SIZE = (240, 320)  # height, width


def frame(i: int) -> np.ndarray:
    image = np.full((*SIZE, 3), 60, np.uint8)
    x = (i * 7) % (SIZE[1] - 40)
    image[:, x : x + 40] = (20, 40, 220)
    return image


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_bound(port: int, proto: str, timeout: float = 15.0) -> None:
    """Until a socket is bound to ``port`` (udp) or listening on it (tcp), from /proc."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
            try:
                rows = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                if int(fields[1].split(":")[1], 16) == port and (
                        proto == "udp" or fields[3] == "0A"):
                    return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound to {proto} port {port} within {timeout} s")


@pytest.fixture
def receivers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def receive(procs: list[subprocess.Popen[bytes]], args: list[str],
            out: Path) -> subprocess.Popen[bytes]:
    assert FFMPEG is not None
    proc = subprocess.Popen([FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args,
                             "-c", "copy", "-flush_packets", "1", str(out)],
                            stdin=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    procs.append(proc)
    return proc


def stop_and_count(proc: subprocess.Popen[bytes], out: Path) -> tuple[int, set[tuple]]:
    """End the receiver as a user would (Ctrl-C: it finalises its file); decode the file."""
    if proc.poll() is None:
        time.sleep(1.0)  # the last packets in flight
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:  # a blocked RTP read: a second Ctrl-C ends it
            proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    cap = cv2.VideoCapture(str(out))
    count, shapes = 0, set()
    while True:
        ok, image = cap.read()
        if not ok:
            break
        count += 1
        shapes.add(image.shape)
    cap.release()
    return count, shapes


def send(sink: NetworkSink, frames: range, fps: float) -> None:
    for i in frames:
        sink.write(i, frame(i), np.zeros(SIZE, np.uint8))
        time.sleep(1.0 / fps)


@pytest.mark.parametrize(("target", "message"), [
    ("udp://127.0.0.1", "--output: expected udp://HOST:PORT with a port 1-65535, got "
                        "'udp://127.0.0.1'"),
    ("udp://127.0.0.1:70000", "--output: expected a port number 1-65535 in udp://host:port, "
                              "rtp://host:port or rtsp://host:port/path, got "
                              "'udp://127.0.0.1:70000'"),
    ("rtp://:5004", "--output: expected rtp://HOST:PORT with the receiver's address (e.g. "
                    "rtp://127.0.0.1:5004), got 'rtp://:5004'"),
    ("rtsp://u:secret@:8554/out", "--output: expected rtsp://SERVER:PORT/PATH of an RTSP "
                                  "server to publish to (segrun serves no RTSP itself: run "
                                  "e.g. mediamtx and publish to it), got "
                                  "'rtsp://u:***@:8554/out'"),
    ("rtsp://server:8554", "--output: expected rtsp://SERVER:PORT/PATH with a stream path "
                           "(e.g. /segrun), got 'rtsp://server:8554'"),
    ("udp://bad_host!:5000", "--output: expected a host name or IP address, got 'bad_host!'"),
    ("tcp://127.0.0.1:5000", "--output: expected a network output udp://host:port, "
                             "rtp://host:port or rtsp://host:port/path, got "
                             "'tcp://127.0.0.1:5000'"),
])
def test_bad_targets_are_one_line_naming_the_form(target: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        check_network(target, "--output")
    assert str(err.value) == message


def test_good_targets_parse() -> None:
    assert parse_target("rtsp://user:pw@cam.local/live").port == 554
    target = parse_target("udp://[::1]:5004")
    assert (target.scheme, target.host, target.port, target.host_for_uri) == (
        "udp", "::1", 5004, "[::1]")
    assert parse_target("rtsp://u:pw@h:8554/x").shown == "rtsp://u:***@h:8554/x"


def test_no_encoder_is_refused_before_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "encoder_kind", lambda: None)
    with pytest.raises(InputError) as err:
        check_network("rtp://10.0.0.2:5004", "-o")
    assert str(err.value) == (
        "-o: expected an encoder for network outputs: ffmpeg on PATH, or pip install "
        "'segedge[stream]' (imageio-ffmpeg), or OpenCV with GStreamer, got none on this "
        "machine for rtp://10.0.0.2:5004")


def test_no_frame_is_an_empty_outcome() -> None:
    outcome = NetworkSink("udp://127.0.0.1:5004").close()
    assert (outcome.target, outcome.frames_written, outcome.status) == (
        "udp://127.0.0.1:5004", 0, "empty: no frame reached it")


@needs_ffmpeg
def test_udp_mpegts_received_by_another_process(tmp_path: Path,
                                                receivers: list) -> None:
    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "udp.ts"
    proc = receive(receivers, ["-i", f"udp://127.0.0.1:{port}"], out)
    wait_bound(port, "udp")
    sink = NetworkSink(f"udp://127.0.0.1:{port}", SinkContext(fps=20))
    send(sink, range(40), fps=20)
    outcome = sink.close()
    assert (outcome.status, outcome.frames_written) == ("ok", 40)
    count, shapes = stop_and_count(proc, out)
    assert 36 <= count <= 40 and shapes == {(*SIZE, 3)}


@needs_ffmpeg
def test_rtp_with_its_sdp_received_by_another_process(tmp_path: Path,
                                                      receivers: list) -> None:
    port = free_port(socket.SOCK_DGRAM)
    sdp = tmp_path / "out.sdp"
    sink = NetworkSink(f"rtp://127.0.0.1:{port}?sdp={sdp}", SinkContext(fps=20))
    assert sink.path == f"rtp://127.0.0.1:{port}" and sink.sdp_path == sdp
    sink.write(0, frame(0), np.zeros(SIZE, np.uint8))
    deadline = time.monotonic() + 15
    while not sdp.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = sdp.read_text()
    assert f"m=video {port} RTP/AVP 96" in text and "a=rtpmap:96 H264/90000" in text
    out = tmp_path / "rtp.ts"
    proc = receive(receivers, ["-protocol_whitelist", "file,udp,rtp", "-i", str(sdp)], out)
    wait_bound(port, "udp")
    send(sink, range(1, 60), fps=20)
    outcome = sink.close()
    assert (outcome.status, outcome.frames_written) == ("ok", 60)
    count, shapes = stop_and_count(proc, out)
    # a receiver that joins late waits for the next keyframe (one a second: 20 frames)
    assert 35 <= count <= 60 and shapes == {(*SIZE, 3)}


@needs_ffmpeg
def test_rtsp_published_to_a_server(tmp_path: Path, receivers: list) -> None:
    port = free_port(socket.SOCK_STREAM)
    out = tmp_path / "rtsp.ts"
    url = f"rtsp://127.0.0.1:{port}/out"
    proc = receive(receivers, ["-rtsp_flags", "listen", "-listen_timeout", "20", "-i", url],
                   out)
    wait_bound(port, "tcp")
    sink = NetworkSink(url, SinkContext(fps=20))
    send(sink, range(40), fps=20)
    outcome = sink.close()
    assert (outcome.status, outcome.frames_written) == ("ok", 40)
    count, shapes = stop_and_count(proc, out)  # ends by itself at the publisher's TEARDOWN
    assert 36 <= count <= 40 and shapes == {(*SIZE, 3)}


@needs_ffmpeg
def test_a_refused_rtsp_server_is_one_warning_and_a_failed_output(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port(socket.SOCK_STREAM)  # nobody listens there
    sink = NetworkSink(f"rtsp://user:secret@127.0.0.1:{port}/out", SinkContext(fps=20))
    start = time.monotonic()
    send(sink, range(30), fps=50)  # never raises, never blocks
    assert time.monotonic() - start < 5.0
    outcome = sink.close()
    assert outcome.target == f"rtsp://user:***@127.0.0.1:{port}/out"
    assert outcome.failed and outcome.frames_written == 0
    assert outcome.detail.startswith("the encoder stopped: ")
    assert "Connection refused" in outcome.detail and "secret" not in outcome.detail
    warnings = [r.getMessage() for r in caplog.records if "stream stopped" in r.getMessage()]
    assert warnings == [f"rtsp://user:***@127.0.0.1:{port}/out: stream stopped: "
                        f"{outcome.detail}"]


@needs_ffmpeg
def test_nobody_listening_on_udp_never_blocks_the_run() -> None:
    sink = NetworkSink(f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}", SinkContext(fps=30))
    start = time.monotonic()
    for i in range(60):
        sink.write(i, frame(i), np.zeros(SIZE, np.uint8))  # as fast as the run can
    assert time.monotonic() - start < 2.0
    outcome = sink.close()
    assert outcome.status == "ok"
    assert outcome.frames_written == sink.handed and sink.handed + sink.dropped == 60


@needs_ffmpeg
def test_an_encoder_that_dies_fails_this_output_only() -> None:
    sink = NetworkSink(f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}", SinkContext(fps=30))
    send(sink, range(5), fps=30)
    encoder = sink._encoder
    assert isinstance(encoder, FfmpegEncoder)
    encoder.proc.kill()
    encoder.proc.wait()
    send(sink, range(5, 30), fps=100)  # no exception reaches the pipeline
    outcome = sink.close()
    assert outcome.failed and outcome.detail == "the encoder stopped: exit status -9"


@needs_ffmpeg
def test_a_frame_of_another_size_is_letterboxed_into_the_stream() -> None:
    sink = NetworkSink(f"udp://127.0.0.1:{free_port(socket.SOCK_DGRAM)}", SinkContext(fps=30))
    sink.write(0, frame(0), np.zeros(SIZE, np.uint8))
    sink.write(1, np.zeros((240, 640, 3), np.uint8), np.zeros(SIZE, np.uint8))
    outcome = sink.close()
    assert (outcome.status, outcome.frames_written) == ("ok", 2)


def test_a_stalled_encoder_costs_the_run_one_wait_then_drops(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    class StuckEncoder:
        """An encoder whose network stalled: write blocks until released."""

        def __init__(self, cmd: list[str], sdp_path: Path | None) -> None:
            self.confirmed, self.ended = 0, True

        def write(self, image: np.ndarray) -> None:
            release.wait()
            self.confirmed += 1

        def finish(self, timeout: float) -> tuple[bool, str]:
            return True, ""

    monkeypatch.setattr(network, "FfmpegEncoder", StuckEncoder)
    monkeypatch.setattr(network, "find_ffmpeg", lambda: "ffmpeg")
    monkeypatch.setattr(network, "ffmpeg_codec", lambda exe: ("libx264", "H.264", ()))
    sink = NetworkSink("udp://127.0.0.1:5004", SinkContext(fps=30), encoder="ffmpeg",
                       queue_size=2)
    start = time.monotonic()
    for i in range(30):
        sink.write(i, frame(i), np.zeros(SIZE, np.uint8))
    waited = time.monotonic() - start
    assert network.STALL_S <= waited < network.STALL_S + 1.0  # one wait, not 30
    assert sink.dropped == 30 - 1 - 2  # one taken by the encoder, two queued
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "udp://127.0.0.1:5004: the encoder is more than 1 s behind: dropping frames until "
        "it catches up"]
    release.set()
    outcome = sink.close()
    assert (outcome.status, outcome.frames_written) == ("ok", 3)


@needs_ffmpeg
def test_segrun_streams_every_frame_of_a_file_to_a_receiver(tmp_path: Path,
                                                             receivers: list) -> None:
    from segedge.runtime.config import RunConfig
    from segedge.runtime.pipeline import run

    port = free_port(socket.SOCK_DGRAM)
    out = tmp_path / "run.ts"
    proc = receive(receivers, ["-i", f"udp://127.0.0.1:{port}"], out)
    wait_bound(port, "udp")
    onnx = Path(__file__).resolve().parents[2] / "runtime" / "assets" / "demo_fp32.onnx"
    stats = run(RunConfig(model=onnx, source="demo://", outputs=(f"udp://127.0.0.1:{port}",),
                          display=False, max_frames=30, backend="onnxruntime"))
    assert stats.outputs == {f"udp://127.0.0.1:{port}": "ok"}
    assert stats.frames_written == {f"udp://127.0.0.1:{port}": 30} and not stats.degraded
    count, shapes = stop_and_count(proc, out)
    assert 27 <= count <= 30 and shapes == {(240, 320, 3)}


def test_gstreamer_path_hardware_encoder_first_then_x264(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """JetPack's path, against a fake VideoWriter (pip's OpenCV has no GStreamer)."""
    from segedge.runtime.sinks import stream_encoders

    opened: list[str] = []

    class FakeWriter:
        def __init__(self, pipeline: str, api: int, fourcc: int, fps: float,
                     size: tuple[int, int], colour: bool) -> None:
            self.pipeline, self.frames = pipeline, 0
            opened.append(pipeline)

        def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
            return "x264enc" in self.pipeline  # no nvv4l2h264enc on this "board"

        def write(self, image: np.ndarray) -> None:
            self.frames += 1

        def release(self) -> None:
            pass

    monkeypatch.setattr(stream_encoders.cv2, "VideoWriter", FakeWriter)
    monkeypatch.setattr(network, "gstreamer_available", lambda: True)
    sdp = tmp_path / "gst.sdp"
    sink = NetworkSink(f"rtp://10.1.2.3:5004?sdp={sdp}", SinkContext(fps=25))
    send(sink, range(3), fps=200)
    outcome = sink.close()
    assert (outcome.status, outcome.frames_written) == ("ok", 3)
    assert sink.description == "GStreamer x264enc H.264"
    assert [("nvv4l2h264enc" in p, "x264enc " in p) for p in opened] == [(True, False),
                                                                          (False, True)]
    assert opened[0].startswith("appsrc is-live=true do-timestamp=true format=time ! ")
    assert opened[1].endswith("rtph264pay config-interval=1 pt=96 ! udpsink host=10.1.2.3 "
                              "port=5004 sync=false async=false")
    assert "m=video 5004 RTP/AVP 96" in sdp.read_text()
    assert "c=IN IP4 10.1.2.3" in sdp.read_text()
