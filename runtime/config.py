"""Frozen configuration of one `segrun` run (what the CLI parses into).

Validation lives here, not in the CLI, so `run(RunConfig(...))` from Python
(the benchmark) gets the same one-line errors as the command line.  Every
output (``-o`` targets of any kind, masks, stats) is checked here, before a
model is loaded: a run must not work for minutes and then fail to save.
"""

from __future__ import annotations

import glob
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Literal

from segedge.runtime.backends.base import BackendOptions
from segedge.runtime.draw import DrawConfig
from segedge.runtime.errors import InputError
from segedge.runtime.io import check_writable
from segedge.runtime.paths import is_image
from segedge.runtime.redact import redact
from segedge.runtime.sinks.base import SinkKind, check_output
from segedge.runtime.sources.base import SourceOptions, scheme
from segedge.runtime.tasks import DecodeOptions


def is_uri(text: str | Path) -> bool:
    """``triton://host:8000/m``, ``udp://h:5000``: a URI, never to become a Path (which would
    collapse ``//``)."""
    return isinstance(text, str) and scheme(text) is not None


def single_image_source(source: str) -> bool:
    """A source that is one image file (image in, image out); not a folder, glob or video."""
    return (scheme(source) is None and is_image(source) and not glob.has_magic(source)
            and not Path(source).is_dir())


def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


@dataclass(frozen=True)
class RunConfig:
    model: Path | str  # an artifact path, or a URI served elsewhere (triton://host:8000/m)
    source: str
    # One output as Python callers always passed it: only an argument, it joins `outputs`
    # (the one field that says where overlays go).
    output: InitVar[Path | str | None] = None
    outputs: tuple[str, ...] = ()  # -o targets: video, image, folder/, display://N, udp://...
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
    stream: str = ""  # this stream's name in a multi-stream run ("" for one stream)

    def __post_init__(self, output: Path | str | None) -> None:
        if isinstance(self.model, str) and not is_uri(self.model):
            object.__setattr__(self, "model", Path(self.model))
        if self.max_frames is not None and self.max_frames < 1:
            raise InputError("--max-frames", "a positive integer", self.max_frames)
        if self.queue_size < 1:
            raise InputError("queue size", "a positive integer", self.queue_size)
        DecodeOptions(self.postprocess, self.score_threshold)  # the one check of both
        object.__setattr__(self, "outputs", self._merged_outputs(output))
        kinds = {target: check_output(target, "--output") for target in self.outputs}
        for target, kind in kinds.items():
            self._check_against_source(target, kind)
        if self.display is False and any(k.window for k in kinds.values()):
            raise InputError("--no-display", "no display:// output with it",
                             next(t for t, k in kinds.items() if k.window))
        if self.save_masks is not None:
            if self.save_masks.exists() and not self.save_masks.is_dir():
                raise InputError("--save-masks", "a directory",
                                 f"existing file {self.save_masks}")
            check_writable(self.save_masks / "000000.png", "--save-masks")
            folders = [t for t, k in kinds.items() if k.folder]
            if any(_same_path(t, self.save_masks) for t in folders):
                raise InputError("--save-masks", "a folder other than the overlay folder of -o "
                                 "(both name files <image>.png)", str(self.save_masks))
        if self.stats_path is not None:
            check_writable(self.stats_path, "--stats")
            files = [t for t, k in kinds.items() if k.suffixes and not k.schemes]
            if any(_same_path(t, self.stats_path) for t in files):
                raise InputError("--stats", "a path other than --output", str(self.stats_path))

    def _merged_outputs(self, output: Path | str | None) -> tuple[str, ...]:
        """``output`` first, then ``outputs``; each target once (a str, never a Path)."""
        given = (self.outputs,) if isinstance(self.outputs, (str, Path)) else self.outputs
        targets = [str(t) for t in given]
        if output is not None and str(output) not in targets:
            targets.insert(0, str(output))
        for target in targets:
            if targets.count(target) > 1:
                raise InputError("--output", "each target once", f"{target!r} twice")
        return tuple(targets)

    def _check_against_source(self, target: str, kind: SinkKind) -> None:
        """Image out needs image in; no output may overwrite the source it reads."""
        if kind.single_image and not single_image_source(self.source):
            raise InputError("--output", "a folder (DIR/) or a video file for a source that is "
                             f"not one image ({redact(self.source)})", repr(target))
        if scheme(self.source) is not None or glob.has_magic(self.source) or kind.schemes:
            return
        source = Path(self.source)
        if kind.folder and source.is_dir() and _same_path(target, source):
            raise InputError("--output", "a folder other than the source folder (overlays would "
                             "replace its images)", repr(target))
        if not kind.folder and source.exists() and _same_path(target, source):
            raise InputError("--output", "a path other than the source", repr(target))
