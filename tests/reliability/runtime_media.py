"""Bad inputs and hostile places for the segrun reliability tests, built on the spot.

Nothing here is downloaded or read from shared data: corrupt and truncated
media, artifacts whose metadata lies, a full (tmpfs) or read-only
destination, and a password-protected MJPEG server that drops its stream.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest

from segedge.runtime.metadata import METADATA_KEY

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2-s3cret"


def segrun_cmd(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "segedge.runtime.cli", *map(str, args)]


def segrun(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """segrun in a real process (exit codes, signals and stderr exactly as a user sees them)."""
    return subprocess.run(segrun_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("segrun: error:")]


def assert_fails(proc: subprocess.CompletedProcess[str], code: int, fragment: str) -> str:
    """Exit ``code``; with -q, stderr is exactly one ``segrun: error:`` line holding
    ``fragment``; never a traceback.  Returns that line."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("segrun: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary files (partial videos, atomic-writer temps, probes) left in ``folder``."""
    return sorted(p.name for p in folder.rglob(".*") if p.is_file())


# -- media ------------------------------------------------------------------------------------

def noise_video(path: Path, frames: int, size: tuple[int, int] = (320, 240),
                fps: float = 25.0) -> Path:
    """Random pixels: the overlay of them compresses badly, so outputs are large (~20 kB/frame)."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def corrupt_images(folder: Path, count: int) -> Path:
    """Files named like images holding random bytes (or nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        suffix = (".png", ".jpg", ".bmp")[i % 3]
        data = b"" if i % 5 == 4 else rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
        (folder / f"img{i:03d}{suffix}").write_bytes(data)
    return folder


def truncated(source: Path, target: Path, fraction: float) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def lying_model(source: Path, target: Path, input_changes: dict[str, Any] | None = None,
                output: dict[str, Any] | None = None) -> Path:
    """A copy of ``source`` whose segedge metadata says something its graph does not do."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            meta = json.loads(prop.value)
            meta["input"].update(input_changes or {})
            if output is not None:
                meta["output"] = output
            prop.value = json.dumps(meta)
    onnx.save(model, str(target))
    return target


# -- destinations -----------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(size: str = "300k", read_only: bool = False) -> Iterator[Path]:
    """A small tmpfs (full quickly) or a read-only one; skipped with the reason when the
    test does not run as root or mount is refused.  Always unmounted."""
    if os.name != "posix" or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (run the suite as root to test a full "
                    "or read-only destination)")
    if shutil.which("mount") is None:
        pytest.skip("no mount command on this machine")
    folder = Path(tempfile.mkdtemp(prefix="segedge-tmpfs-"))
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        folder.rmdir()
        pytest.skip(f"mount -t tmpfs refused here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)
        with contextlib.suppress(OSError):
            folder.rmdir()


def fill(folder: Path, leave_bytes: int = 8192) -> None:
    """Fill a small filesystem up to ``leave_bytes`` free."""
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with (folder / "filler.bin").open("wb") as fh:
        with contextlib.suppress(OSError):
            fh.write(b"\0" * max(0, free - leave_bytes))


# -- a password-protected MJPEG camera that drops its stream ----------------------------------

class _Camera(http.server.BaseHTTPRequestHandler):
    frames = 15

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for i in range(self.frames):
            ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), (i * 15) % 256, np.uint8))
            assert ok
            self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(jpeg))
            self.wfile.write(jpeg.tobytes() + b"\r\n")
            time.sleep(0.02)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def dropping_mjpeg_camera() -> Iterator[str]:
    """``http://admin:SECRET@127.0.0.1:PORT/video.mjpg``: serves one connection of 15 frames,
    then the camera is gone (every reconnect is refused)."""
    server = socketserver.TCPServer(("127.0.0.1", 0), _Camera)
    port = server.server_address[1]

    def serve_once() -> None:
        try:
            server.handle_request()
        finally:
            server.server_close()  # reconnects are refused at once, not left waiting

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        yield f"http://admin:{SECRET}@127.0.0.1:{port}/video.mjpg"
    finally:
        thread.join(timeout=10)
        server.server_close()
