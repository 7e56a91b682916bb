"""Where tests/real_bindings/setup.sh put the real bindings, the stand-in TensorRT libraries
(built here with the system C compiler), and the environment a subprocess needs to load them.

The TensorRT bindings link ``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and
``libnvinfer_plugin.so.N`` and look up a few factory symbols at import or first use
(``nm -D --undefined-only tensorrt_bindings/tensorrt.so``).  The stand-ins export exactly
those and return NULL, which is what the real libraries return where CUDA cannot initialise:
so the bindings import, their enums and signatures can be read, and every factory fails as it
does on a machine without a working GPU.  Each version runs in its own subprocess (two
versions of a pybind11 module cannot share one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOT = Path(os.environ.get("SEGEDGE_REAL_BINDINGS", REPO / ".real-bindings"))
TENSORRT = ("10.3.0", "10.16.0.72", "11.4.0.106")
CUDA_PYTHON = ("12.3.0", "12.9.10")  # the gpu extra's pin, lowest and highest
SETUP = "tests/real_bindings/setup.sh"

# The symbols the bindings import from each library (nm -D on 10.3, 10.16 and 11.4).
_SOURCES = {
    "libnvinfer": """
void *createInferBuilder_INTERNAL(void *logger, int version) { return 0; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return 0; }
void *getPluginRegistry(void) { return 0; }
void *getBuilderPluginRegistry(int kind) { return 0; }
""",
    "libnvonnxparser": """
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
""",
    "libnvinfer_plugin": """
int initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }
""",
}


def folder(kind: str, version: str) -> Path | None:
    """The installed folder of ``trt``/``cuda`` ``version``, or None where setup.sh could not."""
    path = ROOT / f"{kind}-{version}"
    return path if (path / ".complete").is_file() else None


def missing_reason(kind: str, version: str) -> str:
    return (f"real {'tensorrt_cu12_bindings' if kind == 'trt' else 'cuda-python'} {version} "
            f"is not installed under {ROOT} (run {SETUP}; it needs the package index)")


def build_standins(out: Path, major: int) -> Path | None:
    """Stand-in TensorRT ``major`` libraries in ``out``; None where no C compiler is here."""
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    for lib, source in _SOURCES.items():
        c_file = out / f"{lib}.c"
        c_file.write_text(source)
        soname = f"{lib}.so.{major}"
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(out / soname),
                        f"-Wl,-soname,{soname}", str(c_file)], check=True, capture_output=True,
                       timeout=60)
    return out


@dataclass(frozen=True)
class RealEnv:
    """PYTHONPATH and LD_LIBRARY_PATH for one TensorRT and/or cuda-python version."""

    paths: tuple[Path, ...]
    libs: Path | None

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([*map(str, self.paths), str(REPO)])
        if self.libs is not None:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                [str(self.libs), *filter(None, [env.get("LD_LIBRARY_PATH")])])
        env.pop("SEGEDGE_DEBUG", None)
        env.update(extra)
        return env
