"""The encoders behind network outputs: an ffmpeg process fed raw BGR frames on stdin,
or a GStreamer pipeline through OpenCV's VideoWriter (JetPack's OpenCV has GStreamer).

Kept apart from the sink so the sink holds only the policy (lazy start, a small
drop-newest queue so a slow encoder never stalls the run, the outcome) and this
module only the commands.  ffmpeg comes from PATH, else from imageio-ffmpeg (the
``stream`` extra); which encoder and codec ran is said in the sink's log line.
"""

from __future__ import annotations

import collections
import functools
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from segedge.runtime.io import write_text_atomic
from segedge.runtime.redact import redact

Scheme = Literal["udp", "rtp", "rtsp"]

# (ffmpeg encoder, codec as receivers name it, options), best first: H.264 where present
FFMPEG_CODECS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("libx264", "H.264", ("-preset", "ultrafast", "-tune", "zerolatency")),
    ("libopenh264", "H.264", ()),
    ("mpeg2video", "MPEG-2", ("-q:v", "5")),
)

# ffmpeg's lines that follow an error and only restate it
_CONSEQUENCE = re.compile(r"Conversion failed|Nothing was written into output file|"
                          r"Error sending frames to consumers|Task finished with error code|"
                          r"Terminating thread with return code|Error writing trailer|"
                          r"Error closing file|^Error muxing a packet|Could not write header")
_ADDRESS = re.compile(r"^\[([^\]@]+?) @ 0x[0-9a-fA-F]+\]\s*")


@dataclass(frozen=True)
class StreamTarget:
    """A parsed network output; ``uri`` is the one to hand the encoder (may hold a password)."""

    scheme: Scheme
    host: str
    port: int
    path: str
    uri: str

    @property
    def shown(self) -> str:
        return redact(self.uri)

    @property
    def host_for_uri(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def gstreamer_available() -> bool:
    """OpenCV was built with GStreamer (JetPack's is; pip's wheels are not)."""
    match = re.search(r"GStreamer:\s*(\S+)", cv2.getBuildInformation())
    return match is not None and match.group(1).upper().startswith("YES")


def find_ffmpeg() -> str | None:
    """``ffmpeg`` on PATH, else imageio-ffmpeg's bundled binary, else None."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError, OSError):
        return None


@functools.lru_cache(maxsize=4)
def ffmpeg_encoders(exe: str) -> frozenset[str]:
    """Video encoder names this ffmpeg build has (asked once per binary)."""
    try:
        out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True,
                             text=True, timeout=20, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(m.group(1) for m in re.finditer(r"^\s*V\S*\s+(\S+)", out, re.M))


def ffmpeg_codec(exe: str) -> tuple[str, str, tuple[str, ...]] | None:
    have = ffmpeg_encoders(exe)
    return next((c for c in FFMPEG_CODECS if c[0] in have), None)


def ffmpeg_command(exe: str, target: StreamTarget, size: tuple[int, int], fps: float,
                   codec: tuple[str, str, tuple[str, ...]]) -> list[str]:
    """Raw BGR on stdin -> low-latency encode -> the network (progress on stdout).

    Frames carry wall-clock timestamps (a live run delivers them at its own pace, not
    the source's nominal rate); a keyframe every second lets a late receiver join.
    """
    width, height = size
    gop = str(max(1, round(fps)))
    cmd = [exe, "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
           "-use_wallclock_as_timestamps", "1",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
           "-framerate", f"{fps:g}", "-i", "pipe:0", "-an",
           "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", codec[0], *codec[2],
           "-pix_fmt", "yuv420p", "-g", gop, "-bf", "0", "-fps_mode", "passthrough",
           "-flush_packets", "1"]
    host = target.host_for_uri
    if target.scheme == "udp":
        cmd += ["-f", "mpegts", "-muxdelay", "0", "-muxpreload", "0",
                f"udp://{host}:{target.port}?pkt_size=1316"]
    elif target.scheme == "rtp":
        cmd += ["-f", "rtp", f"rtp://{host}:{target.port}"]  # prints the SDP on stdout
    else:
        cmd += ["-f", "rtsp", "-rtsp_transport", "tcp", target.uri]
    return cmd


class FfmpegEncoder:
    """One ffmpeg process; counts the frames ffmpeg reports as encoded (``-progress``)."""

    def __init__(self, cmd: Sequence[str], sdp_path: Path | None = None) -> None:
        self.cmd = list(cmd)
        self.sdp_path = sdp_path
        self.confirmed = 0  # frames ffmpeg reported encoded and sent
        self.ended = False  # ffmpeg's final progress report arrived
        self.sdp_written = threading.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self._readers = [threading.Thread(target=fn, daemon=True, name=f"ffmpeg-{n}")
                         for n, fn in (("out", self._read_stdout), ("err", self._read_stderr))]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        sdp: list[str] | None = None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if sdp is not None:
                if line:
                    sdp.append(line)
                    continue
                self._write_sdp("\n".join(sdp) + "\n")
                self.sdp_written.set()
                sdp = None
            elif line == "SDP:":
                sdp = []
            elif line.startswith("frame="):
                self.confirmed = int(line[6:] or 0)
            elif line == "progress=end":
                self.ended = True

    def _write_sdp(self, text: str) -> None:
        if self.sdp_path is None:
            return
        try:
            write_text_atomic(self.sdp_path, text)
        except OSError as err:
            self._stderr.append(f"SDP not written to {self.sdp_path}: {err.strerror or err}")

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = _ADDRESS.sub(r"\1: ", raw.decode("utf-8", "replace").strip())
            if line:
                self._stderr.append(redact(line))

    @property
    def last_error(self) -> str:
        """The root cause ffmpeg printed (its first error line; the ones after it are
        consequences such as 'Conversion failed!'), else its exit status."""
        causes = [line for line in self._stderr if not _CONSEQUENCE.search(line)]
        if causes:
            return causes[0]
        return self._stderr[-1] if self._stderr else f"exit status {self.proc.returncode}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def failure(self, timeout: float = 3.0) -> str:
        """Why ffmpeg stopped: its last stderr line, once it has exited and been read."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.last_error
        self._readers[1].join(timeout=timeout)
        return self.last_error

    def write(self, image: np.ndarray) -> None:
        """Hand one frame to ffmpeg; a dead ffmpeg raises OSError (BrokenPipeError)."""
        assert self.proc.stdin is not None
        data = np.ascontiguousarray(image).reshape(-1).data  # bytes, without a copy
        while data:  # an unbuffered pipe may take part of a frame per call
            written = self.proc.stdin.write(data)
            data = data[written or 0 :]

    def finish(self, timeout: float) -> tuple[bool, str]:
        """End of input; wait for ffmpeg. (ok, why not) - killed when it does not end."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return False, f"the encoder did not finish within {timeout:g} s (killed)"
        for reader in self._readers:
            reader.join(timeout=2.0)
        if code != 0:
            return False, f"the encoder failed: {self.last_error}"
        return True, ""

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()


def gstreamer_pipelines(target: StreamTarget, fps: float) -> list[tuple[str, str]]:
    """(encoder, pipeline) candidates for cv2.VideoWriter, hardware H.264 first.

    Not run here (no GStreamer in pip's OpenCV): written for JetPack's elements.
    """
    gop = max(1, round(fps))
    src = "appsrc is-live=true do-timestamp=true format=time ! videoconvert ! "
    encoders = [
        ("nvv4l2h264enc", "video/x-raw,format=BGRx ! nvvidconv ! "
         "video/x-raw(memory:NVMM),format=I420 ! nvv4l2h264enc insert-sps-pps=true "
         f"idrinterval={gop} maxperf-enable=true ! h264parse"),
        ("x264enc", f"video/x-raw,format=I420 ! x264enc tune=zerolatency "
         f"speed-preset=ultrafast key-int-max={gop} ! h264parse"),
    ]
    host, port = target.host, target.port
    if target.scheme == "udp":
        out = f"mpegtsmux alignment=7 ! udpsink host={host} port={port} sync=false async=false"
    elif target.scheme == "rtp":
        out = (f"rtph264pay config-interval=1 pt=96 ! udpsink host={host} port={port} "
               "sync=false async=false")
    else:
        out = f"rtspclientsink location={target.uri} protocols=tcp latency=0"
    return [(name, f"{src}{enc} ! {out}") for name, enc in encoders]


def h264_sdp(target: StreamTarget, fps: float) -> str:
    """The SDP a receiver needs for RTP H.264 (payload 96; SPS/PPS travel in-band)."""
    family = "IP6" if ":" in target.host else "IP4"
    return "\n".join([
        "v=0", f"o=- 0 0 IN {family} {target.host}", "s=segrun", f"c=IN {family} {target.host}",
        "t=0 0", f"m=video {target.port} RTP/AVP 96", f"a=framerate:{fps:g}",
        "a=rtpmap:96 H264/90000", "a=fmtp:96 packetization-mode=1", ""])


class GstEncoder:
    """cv2.VideoWriter on a GStreamer pipeline; OpenCV reports no per-frame errors, so
    frames written = frames handed over."""

    def __init__(self, target: StreamTarget, size: tuple[int, int], fps: float) -> None:
        self.name = ""
        self.writer: cv2.VideoWriter | None = None
        for name, pipeline in gstreamer_pipelines(target, fps):
            writer = cv2.VideoWriter(pipeline, cv2.CAP_GSTREAMER, 0, fps, size, True)
            if writer.isOpened():
                self.name, self.writer = name, writer
                break
        self.confirmed = 0
        self.ended = True
        self.sdp_written = threading.Event()
        self.last_error = "no GStreamer pipeline opened (x264enc or nvv4l2h264enc missing?)"

    def alive(self) -> bool:
        return self.writer is not None

    def failure(self, timeout: float = 0.0) -> str:
        return self.last_error

    def write(self, image: np.ndarray) -> None:
        if self.writer is None:
            raise OSError(self.last_error)
        self.writer.write(image)
        self.confirmed += 1

    def finish(self, timeout: float) -> tuple[bool, str]:
        if self.writer is None:
            return False, self.last_error
        self.writer.release()
        return True, ""

    def kill(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
