#!/usr/bin/env bash
# The GPU check: the tests marked `gpu`, then dev/bench.py on a random-weight model shaped like
# Qwen2.5-Math-1.5B, in one run of under 8 minutes on one H100 or H200.
#
#   bash dev/gpu_check.sh [OUT_DIR]     results: OUT_DIR/gpu.txt, gpu_tests.txt, bench_gpu.{txt,json}
#
# What it measures (README "One GPU: measured"): the `gpu` tests (the CUDA-graph sampler in float32 and
# under bf16 autocast with float32 weights, bf16 training steps, the lean log-prob); one step of
# train.py's default recipe at the 1.5B shape (128 completions of up to 3,000 tokens: peak memory, phase
# times, and train.py's own memory estimate beside it); our step for grpo, grpo_kl and apo against TRL's
# GRPOTrainer at matched settings; the static sampler against `generate` at batch 128 and 256.
#
# The GPU machine has no network and its image lacks packages the project needs (datasets, math-verify,
# TRL, a transformers as new as requirements.txt's). Fetch them as wheels where pip works, into .whl/
# (ignored by git), for python 3.12 on manylinux x86_64, without dependencies, one version each:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl transformers==5.24.0 tokenizers datasets dill multiprocess xxhash math-verify \
#     latex2sympy2_extended antlr4-python3-runtime==4.13.2 trl==1.16.0 accelerate pytest pluggy iniconfig
# and carry .whl with the call; this script installs them into /tmp/site, never touching the CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root
OUT="${1:-${OUT:-runs/gpu_check}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if [ -d .whl ]; then  # install what the image lacks, never touching its CUDA torch
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; date -u +%Y-%m-%dT%H:%MZ;
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } \
  | tee "$OUT/gpu.txt"
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.txt"
timeout 360 "$PY" dev/bench.py --shape qwen2.5-1.5b --default-recipe --json "$OUT/bench_gpu.json" 2>&1 \
  | tee "$OUT/bench_gpu.txt"
