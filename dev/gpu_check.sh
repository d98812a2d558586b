#!/usr/bin/env bash
# The GPU check: the tests marked `gpu`, then dev/bench.py on a random-weight model shaped like
# Qwen2.5-Math-1.5B, in one run of under 8 minutes on one H100 or H200.
#
#   bash dev/gpu_check.sh [OUT_DIR]     results: OUT_DIR/gpu.txt, gpu_tests.txt, bench_gpu.{txt,json}
#
# The GPU machine has no network. It brings its own CUDA PyTorch; packages it lacks (our
# requirements, TRL) travel as wheels in .whl/, downloaded beforehand where pip works:
#   python3 -m pip download -d .whl --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -r requirements.txt -r requirements-trl.txt pytest  (minus torch)
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root
OUT="${1:-${OUT:-runs/gpu_check}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -d .whl ]; then  # install what the image lacks, never touching its CUDA torch
  "$PY" -m pip install -q --no-index --find-links .whl --no-deps .whl/*.whl
fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; date -u +%Y-%m-%dT%H:%MZ;
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } \
  | tee "$OUT/gpu.txt"
timeout 180 "$PY" -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.txt"
timeout 300 "$PY" dev/bench.py --shape qwen2.5-1.5b --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.txt"
