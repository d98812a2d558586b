"""multi_gpu_and_dev/bench.py runs end to end and writes the documented JSON (a smoke test: timings are not
asserted here; speed and memory targets are read off its own output)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from multi_gpu_and_dev import bench

ROOT = Path(__file__).resolve().parent.parent


def test_bench_writes_the_documented_json(tmp_path):
    out = tmp_path / "bench.json"
    bench.main(["--steps", "1", "--tokens", "8", "--lp-tokens", "16", "--no-trl", "--json", str(out)])
    r = json.loads(out.read_text())
    for loss in ("grpo", "grpo_kl", "apo"):
        assert {"step_s", "peak_mb", "gen_s", "tok_per_s"} <= r["ours"][loss].keys()
        assert r["ours"][loss]["step_s"] > 0
    assert r["trl"] is None
    assert r["logprob_peak"]["naive_mb"] > 0 and r["logprob_peak"]["lean_mb"] > 0
    for sampler in r["sampler"].values():  # one entry per batch size
        assert sampler["hf"]["tok_per_s"] > 0 and sampler["static"]["tok_per_s"] > 0


def test_lean_and_naive_logprob_workers_agree(capsys):
    for mode in ("naive", "lean"):
        bench.main(["--lp-tokens", "8", "--worker", "logprob", mode])
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert abs(lines[0]["logp_sum"] - lines[1]["logp_sum"]) < 1e-3 * abs(lines[0]["logp_sum"])


def test_the_gpu_checks_python_snippets_run_on_a_cpu():
    """multi_gpu_and_dev/gpu_check.sh feeds Python to `python -` from the repository root: each such
    snippet must import and run here too (an import of a moved module stopped the whole check once)."""
    script = (ROOT / "multi_gpu_and_dev" / "gpu_check.sh").read_text()
    snippets = re.findall(r"<<'PYEOF'[^\n]*\n(.*?)\nPYEOF", script, re.S)
    assert snippets
    for code in snippets:
        done = subprocess.run([sys.executable, "-"], input=code, cwd=ROOT, capture_output=True, text=True,
                              timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
        assert done.returncode == 0, done.stdout + done.stderr
