#!/usr/bin/env bash
# One prepared check for a machine with an NVIDIA GPU (at most ~10 minutes on a workstation GPU).
#
#   tools/gpu_check.sh CLIP.mp4 [OUTDIR]     (OUTDIR default: ./gpu_check)
#
# Installs segedge with `.[gpu,export]` into a fresh virtual environment (OUTDIR/venv, with
# the system site packages so a Jetson's TensorRT is seen), runs segdoctor, exports the demo
# model and LR-ASPP at FP32/FP16/INT8 with TensorRT engines, runs segrun on every plan with
# CLIP (--mode latency, then --mode throughput: two execution slots), runs segbench's GPU
# rows, and writes ONE results file, OUTDIR/results.md (GPU, driver, CUDA, TensorRT, ONNX
# Runtime versions, every step's exit code and timings; logs beside it).
# A failed step is recorded and the next one runs.  These are the only GPU numbers to trust:
# CI has no GPU and runs the GPU paths against fakes.
# Exit: 0 every step passed; 3 some step failed (results.md says which); 2 usage; 1 install.
# Environment: PYTHON (default python3), SEGEDGE_GPU_CHECK_SKIP_INSTALL=1 to use the current
# environment as it is, SEGEDGE_GPU_CHECK_STEP_TIMEOUT (seconds per step, default 300).
set -u
clip="${1:-}"
if [ -z "$clip" ] || [ ! -f "$clip" ]; then
  echo "gpu_check: usage: tools/gpu_check.sh CLIP.mp4 [OUTDIR] (the dash-cam clip, e.g." \
       "solidWhiteRight.mp4); got '${clip}'" >&2
  exit 2
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
clip="$(cd "$(dirname "$clip")" && pwd)/$(basename "$clip")"
out="${2:-$PWD/gpu_check}"
mkdir -p "$out/logs" "$out/work" || exit 2
out="$(cd "$out" && pwd)"
results="$out/results.md"
step_timeout="${SEGEDGE_GPU_CHECK_STEP_TIMEOUT:-300}"
py="${PYTHON:-python3}"
start_all=$(date +%s)
failed=0

note() { printf '%s\n' "$*" >>"$results"; }

step() {  # name, then the command; records exit code, seconds and the log's last line
  local name="$1"; shift
  local log="$out/logs/$name.log" t0 rc
  t0=$(date +%s)
  echo "gpu_check: $name ..."
  timeout "$step_timeout" "$@" >"$log" 2>&1
  rc=$?
  [ "$rc" -ne 0 ] && failed=$((failed + 1))
  note "| $name | $rc | $(( $(date +%s) - t0 )) | $(tail -n 1 "$log" | tr '|' '/' | cut -c1-160) |"
  return 0
}

# -- environment ---------------------------------------------------------------------------
if [ "${SEGEDGE_GPU_CHECK_SKIP_INSTALL:-0}" != "1" ]; then
  echo "gpu_check: installing .[gpu,export] into $out/venv (a few minutes) ..."
  "$py" -m venv --system-site-packages "$out/venv" >"$out/logs/install.log" 2>&1 &&
    "$out/venv/bin/python" -m pip install --upgrade pip >>"$out/logs/install.log" 2>&1
  "$out/venv/bin/python" -m pip uninstall -y onnxruntime >>"$out/logs/install.log" 2>&1
  if ! "$out/venv/bin/python" -m pip install "$repo[gpu,export]" >>"$out/logs/install.log" 2>&1
  then
    echo "gpu_check: pip install .[gpu,export] failed; see $out/logs/install.log" >&2
    exit 1
  fi
  export PATH="$out/venv/bin:$PATH"
  py="$out/venv/bin/python"
fi

{
  echo "# segedge GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), host: $(hostname), commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  gpus="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | paste -sd ';' -)"
  echo "- GPU / driver / memory: ${gpus:-nvidia-smi not available or lists no GPU}"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //')"
  echo "- versions: $("$py" - <<'PY' 2>&1
import importlib.metadata as md
names = ("segedge", "tensorrt-cu12", "tensorrt", "tensorrt_cu12_bindings", "cuda-python",
         "cuda-bindings", "onnxruntime-gpu", "onnxruntime", "torch", "numpy")
found = []
for name in names:
    try:
        found.append(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        pass
try:
    from segedge.runtime.backends.cuda import versions
    found.append("CUDA " + ", ".join(f"{k} {v}" for k, v in versions().items()))
except Exception as err:  # noqa: BLE001 - the report says why
    found.append(f"CUDA: {err}")
print("; ".join(found))
PY
)"
  echo "- clip: $clip"
  echo
  echo "| step | exit | seconds | last line of its log (logs/STEP.log) |"
  echo "| --- | --- | --- | --- |"
} >"$results"

cd "$out/work" || exit 2
step segdoctor segdoctor --json "$out/segdoctor.json" --workdir "$out/work/doctor"

# -- exports with engines, then segrun on each plan ------------------------------------------
for model in demo lraspp_mobilenet_v3_large; do
  for precision in fp32 fp16 int8; do
    name="${model}_${precision}"
    args=(segexport "$model" -o "$name.onnx" --engine)
    [ "$precision" = fp16 ] && args+=(--fp16)
    [ "$precision" = int8 ] && args+=(--int8 --calib "$clip" --calib-count 64)
    step "export_$name" "${args[@]}"
    if [ -f "$name.plan" ]; then
      step "segrun_$name" segrun "$name.plan" "$clip" -o "$name.mp4" --max-frames 300 \
        --stats "$out/segrun_$name.json" --no-display --mode latency
      step "segrun_${name}_throughput" segrun "$name.plan" "$clip" --max-frames 300 --mode \
        throughput --stats "$out/segrun_${name}_throughput.json" --no-display  # two slots
    else
      note "| segrun_$name | - | - | no plan (see export_$name) |"
    fi
  done
done

# -- segbench's GPU rows, on the ONNX files exported above (no second export) ----------------
artifacts=()
for f in demo_fp32 demo_fp16 demo_int8 lraspp_mobilenet_v3_large_fp32 \
         lraspp_mobilenet_v3_large_fp16 lraspp_mobilenet_v3_large_int8; do
  [ -f "$f.onnx" ] && artifacts+=("$f.onnx")
done
if [ "${#artifacts[@]}" -gt 0 ]; then
  step segbench segbench "${artifacts[@]}" --backends tensorrt,ort-tensorrt,ort-cuda,ort-cpu \
    --iters 100 --warmup 10 --max-seconds 15 \
    --json "$out/segbench.json" --markdown "$out/segbench.md" --workdir "$out/work/bench"
else
  note "| segbench | - | - | no ONNX exported (see the export steps) |"
  failed=$((failed + 1))
fi

{
  echo
  echo "Steps failed: $failed; total $(( $(date +%s) - start_all )) s."
  echo "segdoctor report: segdoctor.json; segrun statistics: segrun_*.json;"
  echo "segbench: segbench.md / segbench.json (GPU rows; ort-cpu is the CPU reference)."
  [ -f "$out/segbench.md" ] && { echo; cat "$out/segbench.md"; }
} >>"$results"
echo "gpu_check: results in $results ($failed step(s) failed)"
[ "$failed" -eq 0 ] || exit 3
exit 0
