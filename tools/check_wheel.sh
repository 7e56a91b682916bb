#!/usr/bin/env bash
# The wheel as users get it (`pip install .`, a wheel on an index, a Docker image), checked.
#
#   tools/check_wheel.sh [SOURCE]     SOURCE: a checkout (default: this one)
#
# 1. copies SOURCE as a fresh clone has it (git's tracked + untracked-but-not-ignored files; no
#    stale build/ or egg-info) and builds the wheel there with pip;
# 2. installs it NON-editable (--no-deps --force-reinstall) into a new virtual environment that
#    reuses the heavy packages of this Python (torch, onnxruntime, ...) through a path entry,
#    not --system-site-packages: that would also run the system's .pth files, and the editable
#    install's finder there would serve modules the wheel lacks from the checkout;
# 3. from a folder outside the checkout: where segedge is imported from, every command's --help
#    and --version, README's first command (its demo part), the demo at --fp16 and --int8, and
#    tests/packaging/test_installed.py (every module imports from the venv, assets byte for byte).
# Exits non-zero at the first failure, saying which step. 1-4 minutes on 2 cores.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
source_dir="$(cd "${1:-$repo}" && pwd)"
py="${PYTHON:-python}"
work="$(mktemp -d "${TMPDIR:-/tmp}/segedge-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
step() { printf 'check_wheel [%3ss]: %s\n' "$SECONDS" "$*" >&2; }
fail() { step "FAILED: $*"; exit 1; }
trap 'step "FAILED at line $LINENO: $BASH_COMMAND"' ERR

step "copying $source_dir as a fresh clone has it"
src="$work/src"
mkdir -p "$src"
if git -C "$source_dir" rev-parse --show-toplevel 2>/dev/null | grep -qxF "$source_dir"; then
  (cd "$source_dir" && git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$src"
else
  (cd "$source_dir" && tar --exclude=./build --exclude='./*.egg-info' --exclude=.git -cf - .) \
    | tar -xf - -C "$src"
fi

step "building the wheel"
if ! "$py" -m pip wheel -q --no-deps -w "$work/dist" "$src"; then
  step "isolated build failed (no package index?): building with this Python's setuptools"
  "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$src"
fi
wheels=("$work"/dist/segedge-*.whl)
[ "${#wheels[@]}" -eq 1 ] && [ -f "${wheels[0]}" ] || fail "expected one segedge wheel in $work/dist"
step "built $(basename "${wheels[0]}")"
strays="$("$py" -c 'import sys, zipfile
print("\n".join(n for n in zipfile.ZipFile(sys.argv[1]).namelist()
                if not n.startswith(("segedge/", "segedge-"))))' "${wheels[0]}")"
[ -z "$strays" ] || fail "the wheel holds files outside segedge/ (tests? tools?): $strays"

step "installing it non-editable into a fresh virtual environment"
venv="$work/venv"
"$py" -m venv --without-pip "$venv"
venv_site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
# This Python's site-packages as plain path entries: importable, their .pth files not run.
"$py" -c 'import site; print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' \
  > "$venv_site/_reuse_base_packages.pth"
"$venv/bin/python" -m pip install -q --no-deps --force-reinstall --no-index "${wheels[0]}" \
  2> >(grep -v "outside environment" >&2)

run="$work/run"
mkdir -p "$run"
cd "$run"
export PATH="$venv/bin:$PATH" SEGEDGE_WHEEL_SOURCE="$src" SEGEDGE_WHEEL_VENV="$venv"
unset PYTHONPATH

step "where segedge comes from"
python - "$venv" "$source_dir" <<'EOF'
import sys
from importlib import metadata
from pathlib import Path

venv, checkout = (Path(p).resolve() for p in sys.argv[1:])
import segedge.benchmarks, segedge.export, segedge.export.precision.modes, segedge.runtime  # noqa: E401,E402

for module in (segedge.export, segedge.runtime, segedge.benchmarks, segedge.export.precision.modes):
    where = Path(module.__file__).resolve()
    assert where.is_relative_to(venv) and not where.is_relative_to(checkout), (module, where)
assert not [f for f in sys.meta_path if "__editable__" in getattr(f, "__module__", "")]
print(f"segedge {metadata.version('segedge')} from {Path(segedge.runtime.__file__).parents[1]}")
EOF

version="$(python -c 'from importlib import metadata; print(metadata.version("segedge"))')"
commands="$(python -c 'from importlib import metadata
print(" ".join(sorted(e.name for e in metadata.distribution("segedge").entry_points
                      .select(group="console_scripts"))))')"
step "every command's --help and --version: $commands"
for cmd in $commands; do
  [ "$(command -v "$cmd")" = "$venv/bin/$cmd" ] || fail "$cmd is not the venv's ($(command -v "$cmd"))"
  "$cmd" --help >/dev/null || fail "$cmd --help"
  got="$("$cmd" --version)" || fail "$cmd --version"
  [ "$got" = "$cmd $version" ] || fail "$cmd --version printed '$got', expected '$cmd $version'"
done
segedge

step "README's first command (the demo part)"
segexport demo -o demo.onnx && segrun demo.onnx demo:// -o demo_overlay.mp4 --no-display
[ -s demo.onnx ] && [ -s demo_overlay.mp4 ] || fail "README's first command left no outputs"

step "the demo at --fp16 and --int8 (calibrated on the installed demo clip)"
clip="$(python -c 'import segedge.runtime, pathlib
print(pathlib.Path(segedge.runtime.__file__).parent / "assets" / "demo_clip.mp4")')"
segexport demo --fp16 -q
segexport demo --int8 --calib "$clip" -q
[ -s demo_fp16.onnx ] && [ -s demo_int8.onnx ] || fail "--fp16/--int8 left no artifacts"
segrun demo_int8.onnx demo:// -o int8_overlay.mp4 --no-display

step "tests/packaging/test_installed.py against the installed package"
mkdir -p "$work/pytest"
cp "$src/tests/packaging/test_installed.py" "$work/pytest/"
printf '[pytest]\naddopts = -ra -p no:cacheprovider\n' > "$work/pytest/pytest.ini"
python -m pytest -q -c "$work/pytest/pytest.ini" "$work/pytest/test_installed.py" \
  | tee "$work/pytest/out.txt"
# A skip would mean the tests did not look at the wheel: that fails too.
! grep -qi "skipped" "$work/pytest/out.txt" || fail "test_installed.py skipped tests"
step "ok: the wheel installs and runs (segedge $version)"
