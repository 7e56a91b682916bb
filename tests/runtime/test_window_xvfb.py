"""The real window under a virtual display: ``segrun`` on the demo clip with ``--display``
(pygame where OpenCV is headless, cv2.imshow where it has a GUI), keys sent by xdotool
(m mask, l legend off, h HUD off, p snapshot, q quit); the snapshot must be the mask
alone, pixel for pixel, and the run must end with exit 0."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from segedge.runtime.draw import colorize, full_palette, palette_lut
from segedge.runtime.segmenter import Segmenter
from segedge.runtime.sinks.window import gui_available

ASSETS = Path(__file__).resolve().parents[2] / "runtime" / "assets"
DEMO_ONNX = ASSETS / "demo_fp32.onnx"
DEMO_CLIP = ASSETS / "demo_clip.mp4"

pytestmark = [
    pytest.mark.skipif(shutil.which("Xvfb") is None,
                       reason="Xvfb not installed (apt-get install xvfb)"),
    pytest.mark.skipif(shutil.which("xdotool") is None,
                       reason="xdotool not installed (apt-get install xdotool)"),
    pytest.mark.skipif(not gui_available() and importlib.util.find_spec("pygame") is None,
                       reason="no window toolkit: OpenCV is headless and pygame is not "
                              "installed (pip install 'segedge[display]')"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Xvfb runs on Linux"),
]


@pytest.fixture
def xvfb() -> Iterator[dict[str, str]]:
    """A private X display (the first free number from 90): the environment to run in."""
    number = next(n for n in range(90, 400) if not Path(f"/tmp/.X{n}-lock").exists()
                  and not Path(f"/tmp/.X11-unix/X{n}").exists())
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "800x600x24",
                             "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Xvfb :{number} did not start (exit {proc.poll()})")
        time.sleep(0.05)
    env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
    env.update(DISPLAY=f":{number}", SDL_AUDIODRIVER="dummy")
    try:
        yield env
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def xdotool(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True,
                          timeout=10, check=False)


def demo_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    try:
        for _ in range(index + 1):
            ok, image = cap.read()
            assert ok, f"demo clip has no frame {index}"
    finally:
        cap.release()
    return image


def test_keys_in_a_real_window_mask_snapshot_quit(xvfb: dict[str, str],
                                                  tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "segedge.runtime.cli", str(DEMO_ONNX), "demo://",
           "--display", "--realtime", "--max-frames", "100000", "--backend", "onnxruntime"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=xvfb, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 40
        # any mapped window on this private display is segrun's (SDL's UTF-8 WM_NAME
        # escapes xdotool's --name search, its class is the program's file name)
        while not xdotool(xvfb, "search", "--onlyvisible", "--classname", ".").stdout.strip():
            assert proc.poll() is None, f"segrun ended before showing a window: " \
                                        f"{proc.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, "no segrun window within 40 s"
            time.sleep(0.1)
        # The demo plays 10 s at its 12 fps: time enough for the keys.
        assert xdotool(xvfb, "key", "--delay", "50", "m", "l", "h").returncode == 0
        time.sleep(1.5)  # frames already drawn in the queues are shown first
        assert xdotool(xvfb, "key", "p").returncode == 0
        time.sleep(0.5)
        assert xdotool(xvfb, "key", "q").returncode == 0
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    snaps = sorted(tmp_path.glob("segrun-snapshot-*.png"))
    assert len(snaps) == 1, (sorted(p.name for p in tmp_path.iterdir()), err[-2000:])
    assert f"snapshot {snaps[0].name}" in err
    index = int(snaps[0].stem.rsplit("-", 1)[1])
    assert index < 115, "q came after the clip's end: the run did not end on q"
    shot = cv2.imread(str(snaps[0]))
    seg = Segmenter(DEMO_ONNX, backend="onnxruntime")
    try:
        frame = demo_frame(index)
        labels = seg(frame).labels
        lut = palette_lut(full_palette(seg.classes, seg.metadata.palette))
    finally:
        seg.close()
    expected = colorize(labels, lut)  # mask only: no blend, no legend, no HUD, no key hint
    assert shot.shape == frame.shape
    np.testing.assert_array_equal(shot, expected)
