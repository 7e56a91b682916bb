"""Frozen configuration of one `segrun` run (what the CLI parses into).

Validation lives here, not in the CLI, so `run(RunConfig(...))` from Python
(the benchmark) gets the same one-line errors as the command line.  Every
output (video, masks, stats) is checked for writability here, before a model
is loaded: a run must not work for minutes and then fail to save.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.draw import DrawConfig
from segedge.runtime.errors import InputError
from segedge.runtime.io import check_writable
from segedge.runtime.sinks.video import check_video_path
from segedge.runtime.sources.base import SourceOptions
from segedge.runtime.tasks import DecodeOptions


@dataclass(frozen=True)
class RunConfig:
    model: Path
    source: str
    output: Path | None = None  # video file; codec from the extension
    save_masks: Path | None = None  # directory of PNG label maps, 000000.png ...
    stats_path: Path | None = None
    display: bool | None = None  # None: a window when a display exists; False: headless
    draw: DrawConfig = field(default_factory=DrawConfig)
    backend: str = "auto"
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    source_options: SourceOptions = field(default_factory=SourceOptions)
    postprocess: Literal["exact", "fast"] = "exact"
    score_threshold: float | None = None
    max_frames: int | None = None
    realtime: bool = False  # pace file sources at their frame rate (demos)
    queue_size: int = 3
    background_nice: int = 10  # lower priority of decode/draw/encode threads (Linux); 0: off
    window_name: str = "segrun"

    def __post_init__(self) -> None:
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError("--max-frames", "a positive integer", self.max_frames)
        if self.queue_size < 1:
            raise InputError("queue size", "a positive integer", self.queue_size)
        DecodeOptions(self.postprocess, self.score_threshold)  # the one check of both
        if self.output is not None:
            check_video_path(self.output)
            check_writable(self.output, "--output")
        if self.save_masks is not None:
            if self.save_masks.exists() and not self.save_masks.is_dir():
                raise InputError("--save-masks", "a directory",
                                 f"existing file {self.save_masks}")
            check_writable(self.save_masks / "000000.png", "--save-masks")
        if self.stats_path is not None:
            check_writable(self.stats_path, "--stats")
        outputs = [p.resolve() for p in (self.output, self.stats_path) if p is not None]
        if len(set(outputs)) < len(outputs):
            raise InputError("--stats", "a path other than --output", str(self.stats_path))
