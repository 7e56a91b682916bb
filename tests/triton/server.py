"""Start and stop the real Triton server of tests/triton/serve_demo.py for a test.

The server runs from its own environment (tests/triton/setup_server_env.sh) in its own
process group, so stopping it (or killing it mid-run) takes tritonserver and its Python
backend stubs along.  Where it cannot run, ``why_not`` says exactly why, for a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVE = Path(__file__).with_name("serve_demo.py")
DEMO_ONNX = REPO / "runtime" / "assets" / "demo_fp32.onnx"
START_TIMEOUT_S = 120.0
SETUP = "tests/triton/setup_server_env.sh"


def server_python() -> Path:
    given = os.environ.get("SEGEDGE_TRITON_PYTHON")
    venv = os.environ.get("SEGEDGE_TRITON_VENV", str(REPO / ".venv-triton"))
    return Path(given) if given else Path(venv) / "bin" / "python"


def why_not() -> str | None:
    """None when the server environment is installed, else the reason to skip."""
    python = server_python()
    if not python.is_file():
        return (f"no Triton server environment at {python}: run {SETUP} (installs "
                "nvidia-pytriton, which bundles tritonserver, into .venv-triton)")
    probe = subprocess.run([str(python), "-c", "import pytriton, onnxruntime"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot import pytriton/onnxruntime ({last}): run {SETUP}"
    return None


def free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def private_shm(cmd: list[str]) -> list[str]:
    """``cmd`` in its own mount namespace with a private /dev/shm where that is allowed
    (root, util-linux unshare): PyTriton's shared-memory files vanish with the server even
    when a test SIGKILLs it.  Elsewhere ``cmd`` unchanged (kill() then removes what it can)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return cmd
    wrap = [unshare, "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs -o size=1g tmpfs /dev/shm && exec "$@"', "sh"]
    probe = subprocess.run([*wrap, "true"], capture_output=True, timeout=30)
    return [*wrap, *cmd] if probe.returncode == 0 else cmd


def _libdir(python: Path) -> str:
    """The python_backend stub links libpython by soname; without this it may find the
    system's (another patch release) and fail inside multiprocessing."""
    out = subprocess.run([str(python), "-c",
                          "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"],
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


@dataclass
class TritonServer:
    """One running server: ``http`` / ``grpc`` ports; ``kill()`` is SIGKILL to all of it."""

    proc: subprocess.Popen[str]
    http: int
    grpc: int
    log: Path
    out: Path  # its stdout: "READY ..." once every model is ready
    private: bool = False  # its own /dev/shm: SIGKILL leaves nothing behind

    @classmethod
    def start(cls, workdir: Path, models: str | None = None) -> TritonServer:
        python = server_python()
        http, grpc, metrics = free_ports(3)
        env = dict(os.environ)
        libdir = _libdir(python)
        if libdir:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        env["PYTRITON_HOME"] = str(workdir / "home")  # its copy of tritonserver goes here
        log = workdir / "server.log"
        cmd = [str(python), str(SERVE), "--onnx", str(DEMO_ONNX), "--http-port", str(http),
               "--grpc-port", str(grpc), "--metrics-port", str(metrics),
               "--workspace", str(workdir / "workspace")]
        if models:
            cmd += ["--models", models]
        wrapped = private_shm(cmd)  # exec-chained: proc.pid is still the server's launcher
        ready = workdir / "server.out"
        with log.open("w") as sink, ready.open("w") as out:
            proc = subprocess.Popen(wrapped, stdout=out, stderr=sink, text=True, env=env,
                                    start_new_session=True)
        server = cls(proc, http, grpc, log, ready, private=wrapped is not cmd)
        server._wait_ready()
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "READY" in self.out.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        lines = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        raise RuntimeError(f"tritonserver did not become ready within {START_TIMEOUT_S:.0f} s "
                           f"(exit {self.proc.returncode}): {lines[-1] if lines else 'no log'}")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        for shm in Path("/dev/shm").glob(f"pytrtion{self.proc.pid}-*"):
            with contextlib.suppress(OSError):
                shm.unlink()

    def stop(self) -> None:
        if self.proc.poll() is None and not self.private:  # PyTriton's shutdown frees its shm
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=20)
            deadline = time.monotonic() + 10  # its helpers (resource tracker) clean up last
            while self._group_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        self.kill()  # whatever of the group is left: tritonserver, backend stubs

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
