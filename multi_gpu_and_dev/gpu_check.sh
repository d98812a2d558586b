#!/usr/bin/env bash
# The GPU check: the tests marked `gpu`, then multi_gpu_and_dev/bench.py on a random-weight model shaped like
# Qwen2.5-Math-1.5B, on one H100 or H200. Measured on an H200 (2026-12-04): tests 41 s, bench 470 s (model 29,
# sampler 108, ours 132, default recipe 78, log-prob 18, TRL 102), about 9 minutes with the installs. With less
# device time, BENCH_PARTS (bench.py --parts) picks parts, BENCH_TIMEOUT bounds the bench (default 480 s).
#
#   bash multi_gpu_and_dev/gpu_check.sh [OUT_DIR]     results: OUT_DIR/gpu.txt, sampler.txt, gpu_tests.txt, bench_gpu.{txt,json}
#
# First, on its own: the CUDA-graph sampler's greedy tokens against `generate`'s for a generation that
# runs to the end of the static cache (tests/test_fast_sampler.py, sdpa and eager), so that a broken
# sampler is the first thing this reports. Then (README "One GPU: measured"): the other `gpu` tests (the
# CUDA-graph sampler in float32 and under bf16 autocast with float32 weights, bf16 training steps, the
# lean log-prob); one step of train.py's default recipe at the 1.5B shape (128 completions of up to 3,000 tokens: peak memory, phase
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
# (transformers 5.24.0, not 5.25: 5.25 needs huggingface_hub >= 2.4 and the image has 1.33)
# and carry .whl with the call; this script installs them into /tmp/site, never touching the CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."  # the repository root
OUT="${1:-${OUT:-runs/gpu_check}}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1
if [ -d .whl ]; then  # install what the image lacks, never touching its CUDA torch
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; date -u +%Y-%m-%dT%H:%MZ;
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } \
  | tee "$OUT/gpu.txt"
# the project's transformers, not the image's (5.17 has been seen, below requirements.txt's range)
"$PY" - <<'PYEOF' 2>&1 | tee -a "$OUT/gpu.txt"
import re, sys, transformers
from packaging.version import Version
line = next(l for l in open("requirements.txt") if l.startswith("transformers"))
low, high = re.search(r">=([\d.]+),<([\d.]+)", line).groups()
ok = Version(low) <= Version(transformers.__version__) < Version(high)
print(f"transformers {transformers.__version__}: {'in' if ok else 'OUTSIDE'} the supported range [{low}, {high})")
from plumbing import fast_sampler
print("static sampler check:", fast_sampler.unsupported_reason() or "StaticLayer writes at its counter, as assumed")
sys.exit(0 if ok else 1)
PYEOF
set +e  # from here on, each part reports even when an earlier one failed
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_fast_sampler.py 2>&1 | tee "$OUT/sampler.txt"
timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.txt"
timeout "${BENCH_TIMEOUT:-480}" "$PY" multi_gpu_and_dev/bench.py --shape qwen2.5-1.5b --default-recipe \
  --parts "${BENCH_PARTS:-sampler,ours,recipe,logprob,trl}" --json "$OUT/bench_gpu.json" 2>&1 \
  | tee "$OUT/bench_gpu.txt"
