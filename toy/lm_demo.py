"""GRPO vs APO on an actual transformer, on a CPU: the same train.py and eval.py as a GPU run.

Run:  python toy/lm_demo.py                  (builds the tiny LM if needed; ~15 min on 2 cores)
      python toy/lm_demo.py --steps 20 --problems 32 --n 16     (a few minutes: a smoke run)

What it does:
1. `toy/tiny_lm.py` builds (once) a ~1M-parameter Qwen2-architecture model pre-trained on the
   `arith` task, whose problems have 6 valid solution paths (addition orders).
2. `train.py --model tiny --dataset arith` trains it with `grpo`, `grpo_kl` and `apo`, from the
   same start, with the same seed, prompts and budget (each a separate process, as a user runs
   it), logging reward and safe-manifold mass per step (`--track-safe-mass`).
3. `eval.py --benchmarks arith` (the held-out split) measures pass@k for k up to 64 for the base
   model and each trained one, at the training temperature 1.0.
4. A table on stdout, `OUT/lm_demo.json`, and a figure (pass@k curves; reward and safe-manifold
   mass over training steps), `toy/lm_demo.png` by default.

Departures from train.py's defaults, with reasons: a learning rate of 5e-5 instead of 1e-6 (a
1M-parameter model needs larger steps than a 1.5B one; at 3e-4 and above, Adam's normalised
updates wreck the tiny model's arithmetic within a few steps and the reward falls to 0), 8
prompts x G = 8 per step, 48 new tokens (a worked solution is ~25 tokens).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("grpo", "grpo_kl", "apo")
KS = (1, 2, 4, 8, 16, 32, 64)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="RL steps per method")
    ap.add_argument("--lr", type=float, default=5e-5, help="AdamW learning rate for RL")
    ap.add_argument("--prompts-per-step", type=int, default=8, help="B prompts per step")
    ap.add_argument("--group-size", type=int, default=8, help="G completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="completion budget")
    ap.add_argument("--beta", type=float, default=0.1, help="APO pull (the paper's 0.1)")
    ap.add_argument("--kl-coef", type=float, default=1e-3, help="k3 weight for grpo_kl")
    ap.add_argument("--n", type=int, default=64, help="samples per held-out problem for pass@k")
    ap.add_argument("--problems", type=int, default=128, help="held-out problems evaluated")
    ap.add_argument("--seed", type=int, default=0, help="seed shared by every method")
    ap.add_argument("--model", default="tiny", help="start model (default: the tiny LM, built if needed)")
    ap.add_argument("--out", default="runs/lm_demo", help="runs, evaluations and lm_demo.json")
    ap.add_argument("--plot", default=os.path.join(ROOT, "toy", "lm_demo.png"), help="PNG path")
    ap.add_argument("--no-plot", action="store_true", help="skip the figure")
    args = ap.parse_args(argv)
    if args.n < 1 or args.steps < 1 or args.problems < 1:
        ap.error("--n, --steps and --problems must be at least 1")
    return args


def run(script, *argv):
    """One of the project's entry points in its own process; stop the demo if it fails."""
    cmd = [sys.executable, os.path.join(ROOT, script), *map(str, argv)]
    print("$ " + " ".join(cmd[1:]), flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise SystemExit(f"error: {script} failed; its message is above")


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    sys.path.insert(0, ROOT)
    from toy import tiny_lm
    base = tiny_lm.ensure_tiny_model() if args.model == "tiny" else args.model  # build once, here
    ks = [k for k in KS if k <= args.n]
    common_eval = ["--benchmarks", "arith", "--n", args.n, "--k", ",".join(map(str, ks)),
                   "--temperature", 1.0, "--max-new-tokens", args.max_new_tokens, "--limit", args.problems,
                   "--batch-size", 1024, "--seed", args.seed]
    seconds = {}
    for method in METHODS:
        start = time.time()
        run("train.py", "--model", base, "--dataset", "arith", "--loss", method, "--steps", args.steps,
            "--lr", args.lr, "--prompts-per-step", args.prompts_per_step, "--group-size", args.group_size,
            "--max-new-tokens", args.max_new_tokens, "--beta", args.beta, "--kl-coef", args.kl_coef,
            "--seed", args.seed, "--micro-batch-size", 32, "--gen-batch-size", 256, "--save-every",
            args.steps, "--sample-every", 25, "--track-safe-mass", "--out", os.path.join(args.out, method))
        seconds[method] = time.time() - start
    results, curves = {}, {}
    for name in ("base",) + METHODS:
        model = base if name == "base" else os.path.join(args.out, name, "final")
        out = os.path.join(args.out, f"eval_{name}")
        run("eval.py", "--model", model, "--out", out, *common_eval)
        with open(os.path.join(out, "results.json")) as f:
            results[name] = json.load(f)["benchmarks"]["arith"]
        if name != "base":
            with open(os.path.join(args.out, name, "metrics.jsonl")) as f:
                rows = [json.loads(line) for line in f]
            curves[name] = {key: [r.get(key) for r in rows] for key in ("step", "reward_mean", "safe_mass")}
    print_table(results, ks)
    summary = {"config": vars(args), "train_seconds": seconds, "seconds": time.time() - t0,
               "methods": results, "curves": curves}
    with open(os.path.join(args.out, "lm_demo.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if not args.no_plot:
        plot(results, curves, ks, args)
    print("train seconds: " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items())
          + f"; total {time.time() - t0:.0f} s")
    return summary


def print_table(results, ks):
    print(f"\nheld-out arith, pass@k (unbiased, temperature 1.0)\n{'method':<10}"
          + "".join(f"{'pass@' + str(k):>9}" for k in ks))
    for name, r in results.items():
        print(f"{name:<10}" + "".join(f"{r[f'pass@{k}']:>9.3f}" for k in ks))


def smooth(values, width=10):
    values = [v for v in values if v is not None]
    return [sum(values[max(0, i - width + 1):i + 1]) / len(values[max(0, i - width + 1):i + 1])
            for i in range(len(values))]


def plot(results, curves, ks, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(15, 4))
    color = {name: f"C{i}" for i, name in enumerate(results)}
    for name, r in results.items():
        ax[0].plot(ks, [r[f"pass@{k}"] for k in ks], marker="o", color=color[name], label=name,
                   linestyle="--" if name == "base" else "-")
    ax[0].set(xscale="log", xlabel="k", ylabel="pass@k", title="held-out arith: pass@k")
    ax[0].set_xticks(ks, [str(k) for k in ks])
    for name, c in curves.items():
        ax[1].plot(c["step"], smooth(c["reward_mean"]), color=color[name], label=name)
        ax[2].plot(c["step"], smooth(c["safe_mass"]), color=color[name], label=name)
    ax[1].set(xlabel="step", ylabel="reward (mean of 10 steps)", title="training reward")
    ax[2].set(xlabel="step", ylabel="sum of pi over the reference top-8", title="safe-manifold mass")
    for a in ax:
        a.legend(fontsize=8)
    fig.suptitle(f"tiny LM on CPU: {args.steps} steps, B={args.prompts_per_step}, G={args.group_size}, "
                 f"lr={args.lr}, beta={args.beta}, n={args.n} samples x {args.problems} problems")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
