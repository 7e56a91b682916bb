#!/usr/bin/env bash
# Best effort, bounded, always exits 0: the real TensorRT and cuda-python Python bindings
# (no GPU libraries) for tests/real_bindings, each version in its own folder under
# .real-bindings/ (git-ignored), installed with `pip install --no-deps --target`, never
# into site-packages, so the CPU suite never sees them.  Where a download fails, the tests
# that need that version skip and say so.  About 45 MB of wheels (190 MB unpacked);
# ~13 s here without a pip cache, instant when already there.
#   usage: tests/real_bindings/setup.sh [DEST]   (DEST default: <repo>/.real-bindings)
set -u
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-${SEGEDGE_REAL_BINDINGS:-$here/../../.real-bindings}}"
mkdir -p "$dest" || exit 0
dest="$(cd "$dest" && pwd)"
py="${PYTHON:-python3}"
budget="${SEGEDGE_REAL_BINDINGS_TIMEOUT:-120}"   # seconds for each pip call (5 calls)

install() {  # folder, then pip requirement(s); skip a folder that is already complete
  local name="$1"; shift
  if [ -f "$dest/$name/.complete" ]; then echo "real bindings: $name already there"; return; fi
  rm -rf "$dest/$name.tmp"
  if timeout "$budget" "$py" -m pip install --quiet --no-deps --no-compile \
      --disable-pip-version-check --target "$dest/$name.tmp" "$@" >"$dest/$name.log" 2>&1; then
    rm -rf "$dest/$name" && mv "$dest/$name.tmp" "$dest/$name" && touch "$dest/$name/.complete"
    echo "real bindings: $name installed"
  else
    rm -rf "$dest/$name.tmp"
    echo "real bindings: $name NOT installed (see $dest/$name.log); its tests skip"
  fi
}

# TensorRT's Python bindings: one TensorRT 10 at each end of what segedge supports, and 11.
# The `tensorrt` import name comes from the tensorrt-cu12 meta package, which needs the
# multi-GB libraries: a one-line alias of tensorrt_bindings stands in for it.
for v in 10.3.0 10.16.0.72 11.4.0.106; do
  install "trt-$v" "tensorrt_cu12_bindings==$v"
  if [ -d "$dest/trt-$v/tensorrt_bindings" ] && [ ! -d "$dest/trt-$v/tensorrt" ]; then
    mkdir -p "$dest/trt-$v/tensorrt" && printf '%s\n' \
      '"""Stand-in for the tensorrt-cu12 meta package: `import tensorrt` is tensorrt_bindings."""' \
      'import sys' 'import tensorrt_bindings' 'sys.modules[__name__] = tensorrt_bindings' \
      > "$dest/trt-$v/tensorrt/__init__.py"
  fi
done
# cuda-python at both ends of the gpu extra's pin: 12.3 (only cuda.cudart; raises
# RuntimeError when libcuda cannot be opened) and 12.9 (cuda.bindings; returns error codes).
install "cuda-12.3.0" "cuda-python==12.3.0"
install "cuda-12.9.10" "cuda-python==12.9.10" "cuda-bindings==12.9.10" "cuda-pathfinder>=1.1,<2"
exit 0
