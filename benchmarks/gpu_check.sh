#!/usr/bin/env bash
# Every GPU check in one call, for a machine lent for a few minutes: the CUDA tests, the network's
# time by stage and batch size (benchmarks/network_stages.py), and BENCHMARKS.md's CUDA section
# measured again (the CPU sections kept as they are).
#
#   OUT=DIR [PYTHON=python3] benchmarks/gpu_check.sh
#
# Runs from the repository root with a Python that imports voxface (a venv, or PYTHONPATH set).
# Every step has its own time limit and its output file under $OUT; a failing step does not stop
# the others; $OUT/summary.txt has one line per step with its exit status. Copy $OUT/BENCHMARKS.md
# and .json over the repository's to keep the new CUDA section.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
: > "$OUT/summary.txt"

step() {  # step NAME SECONDS CMD...: run CMD under a time limit, output to $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: exit $rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}

# the limits add up to 560 s, under the device tool's 600 s a command; BENCHMARKS' CUDA section, the
# result to keep, runs first, so that a slow step after it cannot cost it
step gpu 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
cp BENCHMARKS.md BENCHMARKS.json "$OUT/"
step bench_cuda 300 "$PY" -m voxface bench --only cuda --device cuda -o "$OUT/BENCHMARKS.md"
step test_cuda 150 "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py
step network_stages 90 "$PY" benchmarks/network_stages.py --device cuda --batch-sizes 1,4,16,32,64,128,256 \
  --json "$OUT/network_stages.json"
