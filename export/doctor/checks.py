"""The stack proof: demo engines built here, run on every GPU path, compared with the CPU.

Each check ends pass, fail (with the fix to try) or n/a (with why).  Masks are
compared with ONNX Runtime's CPU provider running the same ONNX on the same
frames of the shipped demo clip; agreement is the share of equal pixels (the one
comparator, export.verify.compare), latency the median of timed runs (runtime.timing).
ONNX Runtime's GPU paths and their provider names are its descriptor's segbench rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import segedge.runtime
from segedge.export.doctor.probe import dla_core_count
from segedge.runtime.backends.base import BackendOptions, BenchRow, descriptor, open_backend
from segedge.runtime.errors import InputError, SegedgeError
from segedge.runtime.precisions import artifact_precisions, precision, reference
from segedge.runtime.timing import Rounds, time_one

Status = Literal["pass", "fail", "n/a"]
ASSETS = Path(segedge.runtime.__file__).parent / "assets"  # the demo ONNX files and clip
PRECISIONS = artifact_precisions()  # each has a demo ONNX in ASSETS (runtime.precisions)
# ONNX Runtime's GPU rows (ort-tensorrt, ort-cuda: provider option, provider name it must run).
ORT_GPU_ROWS = {row.provider: row for row in descriptor("onnxruntime").bench_rows
                if row.device == "cuda"}

FIX_CUDA = ("check that the NVIDIA driver is installed and loads (nvidia-smi works, libcuda.so.1 "
            "is on the loader path) and supports this CUDA major; install cuda-python matching "
            "it: pip install 'cuda-python>=12,<13' (JetPack 6, CUDA 12) or "
            "'cuda-python>=13,<14' (CUDA 13)")
FIX_TENSORRT_INIT = ("TensorRT is installed but cannot initialise CUDA: update the NVIDIA driver "
                     "to one that supports the CUDA major this TensorRT was built for "
                     "(tensorrt-cu12: a CUDA 12 driver), free GPU memory, and keep TensorRT, "
                     "CUDA and the driver from one JetPack/CUDA release")
FIX_TENSORRT = ("Jetson: sudo apt install python3-libnvinfer and make the venv with "
                "--system-site-packages; workstation/server: pip install 'segedge[gpu]' "
                "(TensorRT 10 for CUDA 12)")
FIX_ORT_GPU = ("pip uninstall onnxruntime, then install onnxruntime-gpu (Jetson: NVIDIA's "
               "wheel for your JetPack from the Jetson AI Lab index); its CUDA/TensorRT major "
               "versions must match the installed ones")
# onnxruntime-gpu lists its CUDA/TensorRT providers even where it cannot load them; the
# usual cause is missing CUDA 12 / cuDNN 9 user-space libraries, not a broken wheel.
FIX_ORT_LOAD = ("ONNX Runtime could not load its GPU provider: usually the CUDA 12 and cuDNN 9 "
                "user-space libraries are missing: pip install \"onnxruntime-gpu[cuda,cudnn]\" "
                "(TensorRT provider: also tensorrt-cu12 10.x, pip install 'segedge[gpu]'); "
                "Jetson: they come with JetPack; check the driver supports that CUDA")
FIX_BUILD = ("read the TensorRT log above; check free GPU memory (close other GPU processes) "
             "and that TensorRT, CUDA and the driver come from one JetPack/CUDA release")
FIX_MASKS = ("delete the work folder and engine caches and rerun; if it persists, report "
             "segdoctor.json (a kernel gives other masks than the CPU)")
FIX_RUN = "rerun with SEGEDGE_DEBUG=1 and read the TensorRT/CUDA error; check free GPU memory"


def min_agreement(name: str) -> float:
    """Least agreement with the CPU on the same ONNX, in percent of pixels: the precision's
    own cross-device tolerance (runtime.precisions)."""
    return precision(name).device_agreement


def asset(precision: str) -> Path:
    return ASSETS / f"demo_{precision}.onnx"


@dataclass(frozen=True)
class Check:
    """One line of the verdict; a failure always carries the fix to try."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    ms: float | None = None  # median latency per frame
    agreement: float | None = None  # percent of pixels equal to the CPU path

    def __post_init__(self) -> None:
        if self.status not in ("pass", "fail", "n/a"):
            raise InputError(f"check {self.name} status", "pass, fail or n/a", self.status)
        if self.status == "fail" and not self.fix:
            raise InputError(f"check {self.name}", "a fix to try with a failure", "none")


@dataclass(frozen=True)
class DoctorConfig:
    workdir: Path
    device_id: int = 0
    frames: int = 8
    iters: int = 20
    warmup: int = 3
    precisions: tuple[str, ...] = PRECISIONS

    def __post_init__(self) -> None:
        for flag, value in (("--frames", self.frames), ("--iters", self.iters)):
            if value < 1:
                raise InputError(flag, "a positive integer", value)
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if unknown:
            raise InputError("--precision", " or ".join(PRECISIONS), ", ".join(unknown))


def demo_frames(count: int) -> list[np.ndarray]:
    """``count`` BGR frames spread over the shipped demo clip."""
    import cv2

    cap = cv2.VideoCapture(str(ASSETS / "demo_clip.mp4"))
    frames = []
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    if not frames:
        raise InputError("demo clip", "readable frames", str(ASSETS / "demo_clip.mp4"))
    step = max(1, len(frames) // count)
    return frames[::step][:count]


@dataclass
class Doctor:
    """Runs the checks in order; later checks read what earlier ones found."""

    cfg: DoctorConfig
    frames: list[np.ndarray] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    reference: dict[str, list[np.ndarray]] = field(default_factory=dict)
    plans: dict[str, Path] = field(default_factory=dict)
    tensorrt_ok: bool = False
    providers: tuple[str, ...] = ()

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        return check

    @contextmanager
    def guarded(self, name: str, fix: str) -> Iterator[None]:
        """Any error inside becomes a failed check (one line), never a traceback."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 - bindings raise TypeError, RuntimeError, ...
            text = " ".join(str(err).split())
            if not isinstance(err, SegedgeError):
                text = f"{type(err).__name__}: {text}"
            self.add(Check(name, "fail", text[:300], fix))

    def _run(self, backend: Any, name: str, precision: str) -> Check:
        from segedge.export.evaluation.evaluate import labels_from_outputs
        from segedge.export.verify.compare import agreement
        from segedge.runtime.preprocess import prepare

        meta = backend.metadata
        masks, tensors = [], [prepare([f], meta.input)[0] for f in self.frames]
        for tensor in tensors:
            masks.append(labels_from_outputs(backend.infer(tensor), meta))
        rounds = Rounds(self.cfg.warmup, self.cfg.iters, self.cfg.iters, budget_s=None)
        ms = round(time_one(lambda: backend.infer(tensors[0]), rounds).median_ms, 3)
        if precision not in self.reference:  # the CPU path itself
            self.reference[precision] = masks
            return Check(name, "pass", f"{len(masks)} frames", ms=ms, agreement=100.0)
        agree = round(agreement(masks, self.reference[precision]), 3)
        need = min_agreement(precision)
        if agree < need:
            return Check(name, "fail", f"masks agree {agree:.2f}% with the CPU, expected >= "
                         f"{need}%", FIX_MASKS, ms, agree)
        return Check(name, "pass", f"masks agree {agree:.2f}% with the CPU", ms=ms,
                     agreement=agree)

    def _open_and_run(self, path: Path, backend: str, options: BackendOptions, name: str,
                      precision: str, fix: str) -> None:
        with self.guarded(name, fix):
            opened = open_backend(path, backend, options)
            try:
                self.add(self._run(opened, name, precision))
            finally:
                opened.close()

    # -- the checks ---------------------------------------------------------------------------
    def environment(self) -> None:
        from segedge.runtime.backends.cuda import device_count, import_cudart
        from segedge.runtime.backends.tensorrt import tensorrt_available

        with self.guarded("cuda", FIX_CUDA):
            count = device_count(import_cudart())
            self.add(Check("cuda", "pass", f"cuda-python sees {count} device(s)"))
        cuda_ok = self.checks[-1].name == "cuda" and self.checks[-1].status == "pass"
        self.tensorrt_ok, why = tensorrt_available(self.cfg.device_id)
        # the fix for the cause: CUDA itself, TensorRT unable to initialise it, or no TensorRT
        fix = FIX_CUDA if not cuda_ok and why.startswith(("no usable CUDA", "cuda-python")) \
            else FIX_TENSORRT_INIT if "could not create" in why else FIX_TENSORRT
        self.add(Check("tensorrt", "pass", why) if self.tensorrt_ok else
                 Check("tensorrt", "fail", why, fix))
        try:
            import onnxruntime as ort

            self.providers = tuple(ort.get_available_providers())
        except ImportError as err:
            self.add(Check("onnxruntime-gpu", "fail", str(err), FIX_ORT_GPU))
            return
        missing = [p for p in descriptor("onnxruntime").gpu_provider_names
                   if p not in self.providers]
        self.add(Check("onnxruntime-gpu", "fail", f"onnxruntime lacks {', '.join(missing)} "
                       f"(has {', '.join(self.providers)})", FIX_ORT_GPU) if missing else
                 Check("onnxruntime-gpu", "pass", ", ".join(self.providers)))

    def cpu(self, precision: str) -> None:
        self._open_and_run(asset(precision), "onnxruntime", BackendOptions(provider="cpu"),
                           f"cpu {precision}", precision, "reinstall segedge (demo assets)")

    def engine(self, precision: str, dla_core: int | None = None) -> None:
        from segedge.export.tensorrt.build import EngineConfig, build_engine
        from segedge.runtime.backends.onnx_peek import peek
        from segedge.runtime.metadata import ArtifactMetadata

        tag = f"{precision}" if dla_core is None else f"{precision} dla{dla_core}"
        if not self.tensorrt_ok:
            self.add(Check(f"engine {tag}", "n/a", "TensorRT is not usable (see tensorrt)"))
            self.add(Check(f"tensorrt {tag}", "n/a", "no engine"))
            return
        onnx_path = asset(precision)
        meta = ArtifactMetadata.from_props(peek(onnx_path).metadata_props, str(onnx_path))
        plan = self.cfg.workdir / f"demo_{precision}{'' if dla_core is None else '_dla'}.plan"
        before = len(self.checks)
        with self.guarded(f"engine {tag}", FIX_BUILD):
            built = build_engine(onnx_path, plan, EngineConfig(device_id=self.cfg.device_id,
                                                               dla_core=dla_core), meta)
            typing = "strongly typed" if built.sidecar.strongly_typed else \
                f"flags {'+'.join(built.sidecar.builder_flags)}"
            self.add(Check(f"engine {tag}", "pass", f"built in {built.sidecar.build_time_s} s "
                           f"({typing}, TensorRT {built.sidecar.tensorrt_version})"))
        if len(self.checks) > before and self.checks[-1].status == "fail":
            self.add(Check(f"tensorrt {tag}", "n/a", f"no engine (see engine {tag})"))
            return
        self._open_and_run(plan, "tensorrt", BackendOptions(device_id=self.cfg.device_id),
                           f"tensorrt {tag}", precision, FIX_RUN)

    def ort(self, precision: str, row: BenchRow) -> None:
        """ONNX Runtime on one of its GPU providers (its descriptor's segbench ``row``)."""
        name = f"{row.row} {precision}"
        if row.expects not in self.providers:
            self.add(Check(name, "n/a", f"onnxruntime lacks {row.expects} (see onnxruntime-gpu)"))
            return
        options = BackendOptions(provider=row.provider, device_id=self.cfg.device_id,
                                 cache_dir=self.cfg.workdir / "ort_trt")
        self._open_and_run(asset(precision), "onnxruntime", options, name, precision,
                           FIX_ORT_LOAD)

    def dla_cores(self) -> int:
        if not self.tensorrt_ok:
            return 0
        try:
            return dla_core_count()
        except Exception:  # noqa: BLE001 - a Builder that cannot initialise: the engine checks said why
            return 0


def run_checks(cfg: DoctorConfig, progress: Callable[[Check], None] | None = None
               ) -> list[Check]:
    """Every check, in order: environment, CPU references, engines, GPU providers, DLA."""
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    doctor = Doctor(cfg, demo_frames(cfg.frames))
    shown = 0

    def report() -> None:
        nonlocal shown
        for check in doctor.checks[shown:]:
            if progress is not None:
                progress(check)
        shown = len(doctor.checks)

    doctor.environment()
    report()
    for name in cfg.precisions:
        doctor.cpu(name)
        doctor.engine(name)
        doctor.ort(name, ORT_GPU_ROWS["tensorrt"])
        report()
    if reference().name in cfg.precisions:
        doctor.ort(reference().name, ORT_GPU_ROWS["cuda"])
    cores = doctor.dla_cores()
    if cores:
        doctor.engine("fp16", dla_core=0)
    else:
        doctor.add(Check("dla", "n/a", "this device has no DLA cores"))
    report()
    return doctor.checks

