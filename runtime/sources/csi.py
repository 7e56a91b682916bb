"""``csi://N``: a Jetson CSI camera through nvarguscamerasrc (GStreamer)."""

from __future__ import annotations

from segedge.runtime.errors import SourceError
from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.sources.gstreamer import open_pipeline
from segedge.runtime.sources.live import LiveSource


def csi_pipeline(sensor_id: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM),width={width},height={height},framerate={fps}/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1 sync=false"
    )


def create(uri: str, options: SourceOptions) -> LiveSource:
    sensor = uri[len("csi://"):]
    if not sensor.isdigit():
        raise SourceError(f"{uri}: expected csi://N with a sensor number N, got {sensor!r}")
    width, height = options.camera_size or (1280, 720)
    fps = int(options.fps or 30)
    return open_pipeline(uri, csi_pipeline(int(sensor), width, height, fps), options,
                         "CSI camera")
