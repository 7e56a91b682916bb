"""Network stream outputs: ``udp://host:port`` (MPEG-TS), ``rtp://host:port`` (RTP, with
an SDP file for receivers) and ``rtsp://host:port/path`` (published to an RTSP server
such as mediamtx).

The drawn frames are encoded by GStreamer where OpenCV has it (JetPack: hardware
H.264), else by ffmpeg (PATH, or imageio-ffmpeg from the ``stream`` extra).  The
encoder starts at the first frame (its size is known then).  Frames reach it
through a small queue on its own thread: the run waits for an encoder that keeps
up (every frame of a file is streamed), but one more than STALL_S behind (a
stalled network) gets only the newest frames, so no stream holds the run for
long; UDP never waits for a receiver at all.  A dead encoder (refused RTSP
connection, broken pipe) ends this output only: one warning, and a ``failed``
outcome with the encoder's error line (exit 4); the other outputs go on.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np

from segedge.runtime.draw import fit_into
from segedge.runtime.errors import InputError
from segedge.runtime.redact import redact
from segedge.runtime.sinks.base import SinkContext, SinkOutcome
from segedge.runtime.sinks.stream_encoders import (
    FfmpegEncoder,
    GstEncoder,
    StreamTarget,
    ffmpeg_codec,
    ffmpeg_command,
    find_ffmpeg,
    gstreamer_available,
    h264_sdp,
)

log = logging.getLogger("segedge.runtime")

SCHEMES = ("udp", "rtp", "rtsp")
DEFAULT_FPS = 30.0
FINISH_TIMEOUT_S = 10.0
STALL_S = 1.0  # an encoder this far behind is dropped frames instead of stalling the run
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                   r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$|^[0-9a-fA-F:.]+$")
_STOP = object()


def parse_target(target: str, flag: str = "--output") -> StreamTarget:
    """udp://host:port, rtp://host:port, rtsp://[user:pass@]host[:port]/path, or InputError."""
    shown = redact(target)
    try:
        parts = urlsplit(target)
        port = parts.port
    except ValueError:
        raise InputError(flag, "a port number 1-65535 in udp://host:port, rtp://host:port "
                         "or rtsp://host:port/path", repr(shown)) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InputError(flag, "a network output udp://host:port, rtp://host:port or "
                         "rtsp://host:port/path", repr(shown))
    host = parts.hostname or ""
    if not host or host in ("0.0.0.0", "::"):  # jetson-inference's rtsp://@:8554 = serve
        if scheme == "rtsp":
            raise InputError(flag, "rtsp://SERVER:PORT/PATH of an RTSP server to publish to "
                             "(segrun serves no RTSP itself: run e.g. mediamtx and publish "
                             "to it)", repr(shown))
        raise InputError(flag, f"{scheme}://HOST:PORT with the receiver's address "
                         f"(e.g. {scheme}://127.0.0.1:5004)", repr(shown))
    if not _HOST.match(host):
        raise InputError(flag, "a host name or IP address", repr(host))
    if port is None and scheme == "rtsp":
        port = 554
    if port is None or not 0 < port < 65536:
        raise InputError(flag, f"{scheme}://HOST:PORT with a port 1-65535", repr(shown))
    if scheme == "rtsp" and parts.path.strip("/") == "":
        raise InputError(flag, "rtsp://SERVER:PORT/PATH with a stream path (e.g. /segrun)",
                         repr(shown))
    return StreamTarget(scheme, host, port, parts.path, target)  # type: ignore[arg-type]


def split_sdp_option(target: str) -> tuple[str, str | None]:
    """``rtp://h:p?sdp=PATH`` -> (``rtp://h:p``, PATH): segrun's option, not the encoder's."""
    parts = urlsplit(target)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    sdp = next((v for k, v in pairs if k == "sdp"), None)
    if sdp is None:
        return target, None
    query = urlencode([(k, v) for k, v in pairs if k != "sdp"])
    return urlunsplit(parts._replace(query=query)), sdp


def encoder_kind() -> str | None:
    """``gstreamer`` (OpenCV with GStreamer), else ``ffmpeg`` where one exists, else None."""
    if gstreamer_available():
        return "gstreamer"
    return "ffmpeg" if find_ffmpeg() else None


def check_network(target: str, flag: str) -> None:
    """At config time, before the model loads: a well-formed target and an encoder here."""
    parse_target(target, flag)
    if encoder_kind() is None:
        raise InputError(flag, "an encoder for network outputs: ffmpeg on PATH, or "
                         "pip install 'segedge[stream]' (imageio-ffmpeg), or OpenCV with "
                         "GStreamer", f"none on this machine for {redact(target)}")


def default_sdp_path(target: StreamTarget) -> Path:
    host = re.sub(r"[^A-Za-z0-9.-]", "_", target.host)
    return Path(f"segrun-{host}-{target.port}.sdp")


class NetworkSink:
    """Streams the drawn frames to udp://, rtp:// or rtsp:// (see the module docstring).

    ``sdp``: where an rtp:// output writes its SDP (default: ``rtp://h:p?sdp=PATH``, else
    ``segrun-<host>-<port>.sdp`` in the working directory).  ``encoder``: auto, ffmpeg or
    gstreamer.  ``queue_size``: frames waiting for the encoder; the run waits up to
    STALL_S for room, then (encoder stalled) the oldest waiting frame is dropped instead.
    """

    needs_pixels = True
    main_thread = False

    def __init__(self, target: str, ctx: SinkContext | None = None, *,
                 sdp: Path | str | None = None, encoder: str = "auto",
                 queue_size: int = 4) -> None:
        if encoder not in ("auto", "ffmpeg", "gstreamer"):
            raise InputError("stream encoder", "auto, ffmpeg or gstreamer", repr(encoder))
        if queue_size < 1:
            raise InputError("stream queue size", "an integer >= 1", queue_size)
        target, sdp_option = split_sdp_option(target)
        sdp = sdp or sdp_option
        self.target = parse_target(target)
        self.ctx = ctx or SinkContext()
        self.path = self.target.shown  # what the stats and the pipeline name this output by
        self.quit_requested = False
        self.encoder_choice = encoder
        self.sdp_path = Path(sdp) if sdp else (default_sdp_path(self.target)
                                               if self.target.scheme == "rtp" else None)
        self.handed = 0  # frames given to the encoder
        self.dropped = 0  # frames dropped because the encoder was behind
        self.error = ""  # why the encoder stopped ("" while it runs)
        self.description = ""  # what ran: encoder, codec, SDP
        self._size: tuple[int, int] | None = None
        self._encoder: FfmpegEncoder | GstEncoder | None = None
        self._queue: queue.Queue[Any] = queue.Queue(queue_size)
        self._behind = False  # the encoder stalled: drop instead of waiting
        self._dead = threading.Event()
        self._thread: threading.Thread | None = None

    # -- encoder start (first frame) --
    def _start(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        self._size = (width, height)
        fps = float(self.ctx.fps) if self.ctx.fps and self.ctx.fps > 0 else DEFAULT_FPS
        kind = self.encoder_choice
        if kind == "auto":
            kind = encoder_kind() or "none"
        encoder: FfmpegEncoder | GstEncoder | None = None
        if kind == "gstreamer":
            gst = GstEncoder(self.target, (width, height), fps)
            if gst.alive():
                encoder, self.description = gst, f"GStreamer {gst.name} H.264"
                if self.sdp_path is not None:
                    from segedge.runtime.io import write_text_atomic

                    write_text_atomic(self.sdp_path, h264_sdp(self.target, fps))
            else:
                log.warning("%s: %s; trying ffmpeg", self.path, gst.last_error)
                kind = "ffmpeg"
        if encoder is None and kind == "ffmpeg":
            exe = find_ffmpeg()
            codec = ffmpeg_codec(exe) if exe else None
            if exe is None or codec is None:
                self._fail("no ffmpeg with an H.264 or MPEG-2 encoder (pip install "
                           "'segedge[stream]')")
                return
            cmd = ffmpeg_command(exe, self.target, (width, height), fps, codec)
            encoder = FfmpegEncoder(cmd, self.sdp_path)
            self.description = f"ffmpeg {codec[0]} ({codec[1]})"
        if encoder is None:
            self._fail("no encoder: ffmpeg (pip install 'segedge[stream]') or OpenCV with "
                       "GStreamer")
            return
        self._encoder = encoder
        self._thread = threading.Thread(target=self._feed, name=f"stream:{self.path}",
                                        daemon=True)
        self._thread.start()
        what = {"udp": "MPEG-TS over UDP", "rtp": "RTP", "rtsp": "RTSP publish"}
        extra = (f"; SDP for receivers: {self.sdp_path.resolve()}"
                 if self.sdp_path is not None else "")
        log.info("streaming %dx%d to %s: %s, %s%s", width, height, self.path,
                 what[self.target.scheme], self.description, extra)

    def _fail(self, why: str) -> None:
        if not self.error:
            self.error = why
            log.warning("%s: stream stopped: %s", self.path, why)

    def _feed(self) -> None:
        """The encoder's thread: blocks on a slow encoder instead of the pipeline."""
        encoder = self._encoder
        assert encoder is not None
        while (image := self._queue.get()) is not _STOP:
            try:
                encoder.write(image)
                self.handed += 1
            except (OSError, ValueError):
                self._dead.set()  # the run stops handing frames while the cause is read
                self._fail(f"the encoder stopped: {encoder.failure()}")
                return

    # -- the Sink protocol --
    def write(self, index: int, image: np.ndarray | None, labels: np.ndarray) -> None:
        if image is None or self.error or self._dead.is_set():
            return
        if self._encoder is None:
            self._start(image)
            if self._encoder is None:
                return
        assert self._size is not None
        if (image.shape[1], image.shape[0]) != self._size:  # one size per stream
            image = fit_into(image, (self._size[1], self._size[0]))
        if not self._behind:
            deadline = time.monotonic() + STALL_S
            while time.monotonic() < deadline:  # the run waits for an encoder that keeps
                try:                            # up (every frame of a file is streamed)
                    self._queue.put(image, timeout=0.05)
                    return
                except queue.Full:
                    if self._dead.is_set():  # it died meanwhile: said once, by _fail
                        return
            self._behind = True
            log.warning("%s: the encoder is more than %g s behind: dropping frames until "
                        "it catches up", self.path, STALL_S)
        if self._queue.empty():
            self._behind = False
        try:
            self._queue.put_nowait(image)
        except queue.Full:
            try:  # keep the newest: a live viewer wants now, not a backlog
                self._queue.get_nowait()
                self.dropped += 1
            except queue.Empty:
                pass
            try:
                self._queue.put_nowait(image)
            except queue.Full:
                self.dropped += 1

    def close(self, complete: bool = True) -> SinkOutcome:
        encoder = self._encoder
        if encoder is None:
            if self.error:
                return SinkOutcome(self.path, 0, "failed", self.error)
            return SinkOutcome(self.path, 0, "empty", "no frame reached it")
        if self._thread is not None:
            while self._thread.is_alive():
                try:
                    self._queue.put(_STOP, timeout=0.2)
                    break
                except queue.Full:
                    continue
            self._thread.join(timeout=FINISH_TIMEOUT_S)
        ok, why = encoder.finish(FINISH_TIMEOUT_S)
        if self.dropped and not self.error:
            log.warning("%s: %d frames dropped (the encoder or network was behind)",
                        self.path, self.dropped)
        if self.error:
            return SinkOutcome(self.path, min(encoder.confirmed, self.handed), "failed",
                               self.error)
        if not ok:
            return SinkOutcome(self.path, min(encoder.confirmed, self.handed), "failed", why)
        written = min(encoder.confirmed, self.handed) if encoder.ended else 0
        if written == 0:
            return SinkOutcome(self.path, 0, "failed",
                               f"the encoder confirmed no frame of {self.handed}")
        return SinkOutcome(self.path, written)
