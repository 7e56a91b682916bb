#!/usr/bin/env bash
# A real Triton Inference Server for tests/runtime/test_triton.py, best effort (always exits 0).
#
# PyTriton (nvidia-pytriton) bundles a real tritonserver binary (2.51) with its Python backend;
# it pins numpy<2, so it lives in its own virtual environment (.venv-triton/, git-ignored),
# never in the project's.  The tests start the server from that Python; where this script
# could not install it they skip, naming this script.  Needs x86_64/aarch64 Linux with
# glibc >= 2.35 (the wheel is manylinux_2_35) and the same Python minor as the project
# (the backend stub embeds it).  SEGEDGE_TRITON_VENV overrides the folder.
set -u
cd "$(dirname "$0")/../.."
venv="${SEGEDGE_TRITON_VENV:-.venv-triton}"
if "$venv/bin/python" -c "import pytriton, onnxruntime" >/dev/null 2>&1; then
  echo "setup_server_env: $venv ready"
  exit 0
fi
if python -m venv "$venv" && "$venv/bin/pip" install -q "nvidia-pytriton==0.7.0" "onnxruntime>=1.17"; then
  echo "setup_server_env: installed nvidia-pytriton 0.7.0 into $venv"
else
  echo "setup_server_env: could not install nvidia-pytriton into $venv; the Triton tests will skip" >&2
fi
exit 0
