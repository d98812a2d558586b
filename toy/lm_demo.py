"""GRPO, KL and APO on an actual transformer, on a CPU: the problems RL forgets, and who keeps them.

Run:  python toy/lm_demo.py                     one seed, every method at its tuned knob
      python toy/lm_demo.py --seeds 5 --jobs 5  the README's tables and figures (paired by seed)
      python toy/lm_demo.py --tune --jobs 5     the sweep of each method's knob on the `val` split
      python toy/lm_demo.py --methods grpo,apo  only these (grpo, the baseline, always)
      python toy/lm_demo.py --quick             seconds: a much smaller model, every stage (CI)

1. `toy/tiny_lm.py` builds (once) a ~1M-parameter Qwen2 pre-trained on `arith` (toy/tasks.py,
   "Compute a - b + c."): on `both` problems (left to right in 80 % of their solutions, "add
   a and c first" in 20 %) and `left_only` ones (a + c >= 100: only left to right works), a
   fifth of its solutions careless in their last step. It never sees a `hard` problem (a < b,
   30 % of every split), where only "add first" works.
2. `train.py --model tiny --dataset arith` trains every kind of apo.py (grpo, grpo_kl,
   kl_on_wrong, apo and the one-sign ablations psr and nsr) from the same start, prompts and
   budget (separate processes, as a user runs them), `--track-safe-mass` on.
3. `eval.py` measures pass@k (k <= 64, temperature 1.0) on held-out problems and each
   problem's c of n; a probe counts the strategies each model samples.
4. A table, differences paired by seed (`paired`), `OUT/lm_demo.json`, `toy/lm_demo.png` and
   `toy/lm_forgotten.png`: the held-out problems the base model solves within 64 samples and
   GRPO never does, selected on all seeds but one and measured on the one left out, so that a
   held-out GRPO run is the control (`forgotten`).

Fairness (one tuning budget for every method, never on a reported split): `--tune` gives each
knob (TUNED: kl_coef for grpo_kl and for kl_on_wrong, beta for apo) the four settings of its grid
on the `val` split with seed TUNE_SEED, neither reported; the rule, fixed before the sweep, takes
the highest (pass@1 + pass@64) / 2 on `val`. psr and nsr have no knob.

Departures from train.py's defaults: lr 1e-4, not 1e-6 (a 1M-parameter model, 200 steps on a
CPU); 8 prompts x G = 8; 48 new tokens. `--jobs J`: J processes at once, cores / J threads each.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python toy/lm_demo.py`: the repository root is not on the path
    sys.path.insert(0, ROOT)
from toy import lm_plots, tasks, tiny_lm  # noqa: E402

METHODS = ("grpo", "grpo_kl", "kl_on_wrong", "apo", "psr", "nsr")  # psr, nsr: one sign only, no knob
TUNED = {"grpo_kl": "kl_coef", "kl_on_wrong": "kl_coef", "apo": "beta"}  # the knob --tune sweeps
PAIRS = (("apo", "grpo_kl"), ("apo", "grpo"), ("apo", "kl_on_wrong"), ("grpo_kl", "grpo"), ("psr", "grpo"),
         ("nsr", "grpo"))  # paired differences, by seed
PAIRED = ("pass@1", "pass@64", "hard pass@64")  # the metrics of the paired table
KS = (1, 2, 4, 8, 16, 32, 64)
TUNE_SEED = 100  # the sweep's seed: never a report seed (0 .. seeds-1)
KL_GRID = (0.003, 0.01, 0.03, 0.1)  # kl_coef settings tried by --tune (log-spaced)
BETA_GRID = (0.05, 0.1, 0.2, 0.4)  # beta settings tried by --tune (log-spaced; the paper's 0.1)
PROBE = (64, 16)  # strategy probe: held-out problems x samples each


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="RL steps per method")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate for RL")
    ap.add_argument("--prompts-per-step", type=int, default=8, help="B prompts per step")
    ap.add_argument("--group-size", type=int, default=8, help="G completions per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=48, help="completion budget")
    ap.add_argument("--beta", type=float, default=0.4, help="APO pull (chosen by --tune; above the gate)")
    ap.add_argument("--kl-coef", type=float, default=0.1, help="k3 weight for grpo_kl (chosen by --tune)")
    ap.add_argument("--kl-on-wrong-coef", type=float, default=0.03, help="kl_on_wrong's k3 weight (--tune)")
    ap.add_argument("--methods", default=",".join(METHODS), help="a comma-separated subset (grpo in it)")
    ap.add_argument("--n", type=int, default=64, help="samples per held-out problem for pass@k")
    ap.add_argument("--problems", type=int, default=256, help="held-out problems evaluated")
    ap.add_argument("--seeds", type=int, default=1, help="report seeds 0..seeds-1 (mean +- SE)")
    ap.add_argument("--tune", action="store_true", help="run the kl_coef / beta sweep on `val` instead")
    ap.add_argument("--jobs", type=int, default=1, help="runs (train or eval) at a time, cores shared")
    ap.add_argument("--quick", action="store_true", help="a tiny model and a few steps: seconds (CI)")
    ap.add_argument("--model", default="tiny", help="start model (default: the tiny LM, built if needed)")
    ap.add_argument("--out", default="runs/lm_demo", help="runs, evaluations and lm_demo.json")
    ap.add_argument("--json", default=None, help="also write the summary here")
    ap.add_argument("--plot", default=os.path.join(ROOT, "toy", "lm_demo.png"), help="main figure")
    ap.add_argument("--plot-forgotten", default=os.path.join(ROOT, "toy", "lm_forgotten.png"), help="PNG")
    ap.add_argument("--no-plot", action="store_true", help="skip the figures")
    args = ap.parse_args(argv)
    if args.quick:  # every stage, on a model that builds in seconds; numbers mean nothing
        args.steps, args.prompts_per_step, args.group_size, args.problems = 2, 2, 4, 4
        args.max_new_tokens, args.jobs = 24, max(args.jobs, 4)  # 4 at a time: mostly Python start-up
    if args.n < max(KS) or min(args.steps, args.problems, args.seeds, args.jobs) < 1:
        ap.error(f"--n must be at least {max(KS)}; --steps, --problems, --seeds and --jobs at least 1")
    given = set(args.methods.split(","))
    if not given <= set(METHODS) or "grpo" not in given:
        ap.error(f"--methods takes names from {', '.join(METHODS)} and must include grpo (the baseline)")
    args.methods = tuple(m for m in METHODS if m in given)  # in METHODS' order
    return args


def run_all(jobs, args):
    """Run each (log name, script, argv) of `jobs` as its own process, args.jobs at a time; stop
    the demo if one fails. With several at a time each gets cores / jobs threads and a log file."""
    pending, running = list(jobs), []
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    while pending or running:
        while pending and len(running) < args.jobs:
            name, script, argv = pending.pop(0)
            cmd = [sys.executable, os.path.join(ROOT, script), *map(str, argv)]
            print("$ " + " ".join(cmd[1:]), flush=True)
            log = open(os.path.join(args.out, f"{name}.log"), "w") if args.jobs > 1 else None
            env = dict(os.environ, OMP_NUM_THREADS=threads) if args.jobs > 1 else None
            running.append((name, subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, env=env), log))
        time.sleep(0.2)
        for job in [j for j in running if j[1].poll() is not None]:
            running.remove(job)
            if job[2]:
                job[2].close()
            if job[1].returncode != 0:
                for _, other, other_log in running:  # stop the rest too: none of them may keep writing
                    other.kill()
                    other.wait()
                    if other_log:
                        other_log.close()
                raise SystemExit(f"error: {job[0]} failed; see its message above or {args.out}/{job[0]}.log")


def base_model(args):
    if args.quick:
        path = os.path.join(args.out, "quick_model")
        return path if tiny_lm.is_built(path, tiny_lm.QUICK) else tiny_lm.build(path, tiny_lm.QUICK, False)
    return tiny_lm.ensure_tiny_model() if args.model == "tiny" else args.model


def write_split(args, split):
    """The held-out problems of `split` as a .jsonl that eval.py reads (benchmark = its stem)."""
    path = os.path.join(args.out, f"arith_{split}.jsonl")
    with open(path, "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in tasks.arith_problems(split, args.problems))
    return path


def train_job(args, method, seed, base, out, **knobs):
    """The train.py command of one run (a job for run_all); `knobs` overrides the method's own."""
    if method == "kl_on_wrong":
        knobs = {"kl_coef": args.kl_on_wrong_coef, **knobs}
    return (os.path.basename(out), "train.py", [
        "--model", base, "--dataset", "arith", "--loss", method, "--steps", args.steps, "--lr", args.lr,
        "--prompts-per-step", args.prompts_per_step, "--group-size", args.group_size,
        "--max-new-tokens", args.max_new_tokens, "--beta", knobs.get("beta", args.beta),
        "--kl-coef", knobs.get("kl_coef", args.kl_coef), "--seed", seed, "--micro-batch-size", 32,
        "--gen-batch-size", 256, "--save-every", args.steps, "--keep-checkpoints", 1,
        "--sample-every", 50, "--track-safe-mass", "--out", out])


def read_curves(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return {key: [r.get(key) for r in rows] for key in ("step", "reward_mean", "safe_mass", "entropy")}


def eval_job(args, model, split_file, seed, out):
    """The eval.py command that writes pass@k (results.json) and each problem's c (samples.jsonl)."""
    return (os.path.basename(out), "eval.py", [
        "--model", model, "--out", out, "--benchmarks", split_file, "--n", args.n,
        "--k", ",".join(map(str, KS)), "--temperature", 1.0, "--max-new-tokens", args.max_new_tokens,
        "--batch-size", 1024, "--seed", seed])


def read_eval(out, split_file):
    name = os.path.splitext(os.path.basename(split_file))[0]
    res = json.load(open(os.path.join(out, "results.json")))["benchmarks"][name]
    res["c"] = [json.loads(line)["c"] for line in open(os.path.join(out, "samples.jsonl"))]
    return res


def probe(model, args, seed):
    """Share of held-out samples that "add first", per category of problem."""
    res = tiny_lm.sampled_pass_at_k(model, 4 if args.quick else PROBE[0], PROBE[1], seed=seed)
    return res["add_first share"]


def pass_at_k(n, c, k):
    """Unbiased 1 - C(n-c, k)/C(n, k), as eval.pass_at_k (toy/ does not import entry points)."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def mean_se(xs):
    """Mean and standard error over seeds (nan for one seed: no spread to measure)."""
    m = sum(xs) / len(xs)
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else math.nan
    return m, math.sqrt(var / len(xs))


def k_star(base_curve, grpo_curve):
    """Where GRPO's mean pass@k curve falls below base's, interpolated in log2 k; None if never."""
    diffs = [grpo_curve[k] - base_curve[k] for k in KS]
    for (k0, d0), (k1, d1) in zip(zip(KS, diffs), zip(KS[1:], diffs[1:])):
        if d0 >= 0 > d1:
            return round(2 ** (math.log2(k0) + d0 / (d0 - d1) * (math.log2(k1) - math.log2(k0))), 1)
    return KS[0] if diffs[0] < 0 else None


def summarise(per_seed):
    """{method: [eval result per seed]} -> the JSON contract's per-method numbers."""
    out = {name: {"curve": {k: mean_se([r[f"pass@{k}"] for r in runs])[0] for k in KS},
                  "per_seed_curve": {k: [r[f"pass@{k}"] for r in runs] for k in KS}}
           for name, runs in per_seed.items()}
    for name, runs in per_seed.items():
        for k in (1, max(KS)):
            out[name][f"pass@{k}"], out[name][f"pass@{k}_se"] = mean_se([r[f"pass@{k}"] for r in runs])
    return out


def forgotten(per_seed, categories):
    """Problems the base model solves (c >= 1 in some seed) and GRPO never does (c = 0 in every
    seed), selected on all seeds but one and measured on the one left out, each seed in turn.
    Selected and measured on the same samples, GRPO's 0 would hold by construction; held out, a
    GRPO replicate is the control row (what chance alone gives back). One seed: no held-out seed,
    the same samples (biased, said in the print)."""
    seeds, n = range(len(per_seed["base"])), per_seed["base"][0]["n"]
    c = {m: [r["c"] for r in runs] for m, runs in per_seed.items()}
    folds = []
    for s in seeds:
        rest = [t for t in seeds if t != s] or [s]
        index = [i for i in range(len(categories))
                 if any(c["base"][t][i] > 0 for t in rest) and all(c["grpo"][t][i] == 0 for t in rest)]
        solved = {m: sum(c[m][s][i] > 0 for i in index) for m in c}  # on the held-out seed s
        folds.append({"seed": s, "index": index, "solved": solved})
    union = sorted({i for f in folds for i in f["index"]})
    held = {m: {i: sum(c[m][f["seed"]][i] for f in folds if i in f["index"])  # c/n on the held-out seeds
                / (n * sum(i in f["index"] for f in folds)) for i in union} for m in c}
    rate = {m: [sum(col) / (len(col) * n) for col in zip(*c[m])] for m in c}  # pooled over seeds
    full = [f for f in folds if f["index"]]
    return {"index": sorted(union, key=lambda i: -held["base"][i]), "categories": categories, "rate": rate,
            "held_out_rate": held, "held_out": len(folds) > 1, "sizes": [len(f["index"]) for f in folds],
            "kept": {m: sum(f["solved"][m] for f in folds) for m in c},
            "kept_share": {m: mean_se([f["solved"][m] / len(f["index"]) for f in full])
                           if full else (math.nan, math.nan) for m in c}}


def category_pass(r, of, category, k):
    """pass@k of one evaluation over the problems of one category."""
    values = [pass_at_k(r["n"], c, k) for c, x in zip(r["c"], of) if x == category]
    return sum(values) / len(values) if values else math.nan


def paired(per_seed, of):
    """{"a - b": {metric: (mean, SE, holds at 2 SE)}}: differences taken seed by seed, so that what
    the seed shares (its prompts, its samples) cancels; SE over seeds (nan for one seed)."""
    value = {"pass@1": lambda r: r["pass@1"], "pass@64": lambda r: r["pass@64"],
             "hard pass@64": lambda r: category_pass(r, of, "hard", 64)}
    out = {}
    for a, b in (p for p in PAIRS if set(p) <= set(per_seed)):
        out[f"{a} - {b}"] = {}
        for metric in PAIRED:
            m, se = mean_se([value[metric](x) - value[metric](y) for x, y in zip(per_seed[a], per_seed[b])])
            out[f"{a} - {b}"][metric] = (m, se, abs(m) > 2 * se)  # False for nan (one seed)
    return out


def print_table(summary, title):
    print(f"\n{title}\n{'method':<12}" + "".join(f"{'pass@' + str(k):>8}" for k in KS)
          + f"{'pass@1 +- SE':>17}{'pass@64 +- SE':>17}")
    for name, r in summary.items():
        print(f"{name:<12}" + "".join(f"{r['curve'][k]:>8.3f}" for k in KS)
              + f"{r['pass@1']:>10.3f} +- {r['pass@1_se']:.3f}{r['pass@64']:>10.3f} +- {r['pass@64_se']:.3f}")


def print_derived(d, args):
    print(f"k* (GRPO below base) = {d['k_star']}; GRPO pass@64 change {-d['grpo_pass@64_loss']:+.3f}, "
          f"pass@1 change {d['grpo_pass@1_gain']:+.3f}")
    for m in (m for m in args.methods if m != "grpo"):
        rec, keep = d[f"{m}_recovers"], d[f"{m}_keeps_gain"]
        print(f"{m}: recovers {'-' if rec is None else f'{rec:.0%}'} of GRPO's pass@64 loss, keeps "
              f"{'-' if keep is None else f'{keep:.0%}'} of its pass@1 gain")
    f = d["forgotten"]
    where = "selected on the other seeds, measured on the held-out one" if f["held_out"] else \
        "one seed: selected and measured on the same samples, so GRPO's 0 holds by construction"
    print(f"forgotten (base solves within {args.n}, GRPO never; {where}):\n  sets of "
          + ", ".join(map(str, f["sizes"])) + " problems; " + ("share still solved (folds share seeds: "
          "the SE is indicative):\n  " + ", ".join(f"{m} {v[0]:.2f} +- {v[1]:.2f}" for m, v in
                                                   f["kept_share"].items()) if any(f["sizes"])
              else "no forgotten problems"))
    print(f"\npaired by seed ({args.seeds} seeds; * = beyond 2 SE, not a t-test: with few seeds the "
          f"t quantile is larger)\n{'':<20}" + "".join(f"{x:>22}" for x in PAIRED))
    for name, row in d["paired"].items():
        print(f"{name:<20}" + "".join(f"{m:>+11.3f} +- {se:.3f}{'*' if hold else ' '}"
                                      for m, se, hold in row.values()))
    for key in d["by_category"]["base"]:
        print(f"{key:<18}" + ", ".join(f"{m} {v[key][0]:.3f} +- {v[key][1]:.3f}"
                                       for m, v in d["by_category"].items()))
    shares = [f"{m} " + " / ".join(f"{x:.3f}" for x in v.values()) for m, v in d["add_first_share"].items()]
    print("'add first' share of samples (both / left_only / hard):" + "".join(
        ("\n  " if i % 3 == 0 else ", ") + x for i, x in enumerate(shares)))


def report_seeds(args, base):
    """Train and evaluate every method on every report seed; the summary (the JSON contract)."""
    test_file, problems = write_split(args, "test"), tasks.arith_problems("test", args.problems)
    of = [tasks.category_of(tasks.parse_problem(p["problem"])) for p in problems]  # each problem's category
    seeds, t, out = range(args.seeds), time.time(), args.out
    run_all([train_job(args, m, s, base, os.path.join(out, f"{m}_s{s}"))
             for s in seeds for m in args.methods], args)
    seconds = {"train": round(time.time() - t)}
    model = {(m, s): base if m == "base" else os.path.join(args.out, f"{m}_s{s}", "final")
             for m in ("base",) + args.methods for s in seeds}
    t = time.time()
    run_all([eval_job(args, path, test_file, s, os.path.join(args.out, f"eval_{m}_s{s}"))
             for (m, s), path in model.items()], args)
    seconds["eval"] = round(time.time() - t)
    per_seed = {m: [read_eval(os.path.join(args.out, f"eval_{m}_s{s}"), test_file) for s in seeds]
                for m in ("base",) + args.methods}
    curves = {m: [read_curves(os.path.join(args.out, f"{m}_s{s}")) for s in seeds] for m in args.methods}
    strategies = {m: [probe(model[m, s], args, s) for s in seeds] for m in ("base",) + args.methods}
    summary = summarise(per_seed)
    ks = k_star(summary["base"]["curve"], summary["grpo"]["curve"])
    lost = summary["base"]["pass@64"] - summary["grpo"]["pass@64"]
    gain = summary["grpo"]["pass@1"] - summary["base"]["pass@1"]
    derived = {"k_star": ks, "grpo_pass@64_loss": lost, "grpo_pass@1_gain": gain}
    for m in (m for m in args.methods if m != "grpo"):  # shares of GRPO's pass@64 loss and pass@1 gain
        r = summary[m]
        derived[f"{m}_recovers"] = (r["pass@64"] - summary["grpo"]["pass@64"]) / lost if lost > 0 else None
        derived[f"{m}_keeps_gain"] = (r["pass@1"] - summary["base"]["pass@1"]) / gain if gain > 0 else None
    for_figure = forgotten(per_seed, of)
    derived["forgotten"] = {k: for_figure[k] for k in ("held_out", "sizes", "kept", "kept_share")}
    derived["paired"] = paired(per_seed, of)
    cats, sm = tasks.CATEGORY_SHARE, strategies  # the problem categories; each model's strategy shares
    derived["add_first_share"] = {m: {c: mean_se([x[c] for x in v])[0] for c in cats} for m, v in sm.items()}
    derived["by_category"] = {m: {f"{cat} pass@{k}": mean_se([category_pass(r, of, cat, k) for r in runs])
                                  for cat in cats for k in (1, max(KS))} for m, runs in per_seed.items()}
    return summary, derived, curves, for_figure, seconds


def tune(args, base):
    """The sweep: KL_GRID for grpo_kl and kl_on_wrong, BETA_GRID for apo, on `val` with TUNE_SEED;
    the rule picks (only the methods of --methods)."""
    val_file, rows, runs = write_split(args, "val"), [], []
    grids = {"kl_coef": KL_GRID, "beta": BETA_GRID}
    for method in (m for m in args.methods if m in TUNED):
        knob = TUNED[method]
        runs += [(method, knob, v, os.path.join(args.out, f"tune_{method}_{knob}{v:g}")) for v in grids[knob]]
    ref = os.path.join(args.out, "tune_grpo")  # GRPO and base: a reference for the reader, not tuned
    run_all([train_job(args, "grpo", TUNE_SEED, base, ref)]
            + [train_job(args, m, TUNE_SEED, base, out, **{knob: v}) for m, knob, v, out in runs], args)
    run_all([eval_job(args, base, val_file, TUNE_SEED, os.path.join(args.out, "tune_base_eval")),
             eval_job(args, os.path.join(ref, "final"), val_file, TUNE_SEED, ref + "_eval")]
            + [eval_job(args, os.path.join(out, "final"), val_file, TUNE_SEED, out + "_eval")
               for m, knob, v, out in runs], args)
    for name, out in (("base", os.path.join(args.out, "tune_base")), ("grpo", ref)):
        r = read_eval(out + "_eval", val_file)
        print(f"reference {name}: val pass@1 {r['pass@1']:.3f} pass@64 {r['pass@64']:.3f}")
        rows.append({"method": name, "pass@1": r["pass@1"], "pass@64": r["pass@64"]})
    for method, knob, value, out in runs:
        r = read_eval(out + "_eval", val_file)
        rows.append({"method": method, knob: value, "pass@1": r["pass@1"], "pass@64": r["pass@64"],
                     "score": (r["pass@1"] + r["pass@64"]) / 2})
    choice = {m: max((r for r in rows if r["method"] == m), key=lambda r: r["score"])
              for m in args.methods if m in TUNED}
    print("\nval split, seed %d, rule max (pass@1 + pass@64)/2" % TUNE_SEED)
    for r in rows[2:]:
        knob = TUNED[r["method"]]
        mark = " <- chosen" if r is choice[r["method"]] else ""
        print(f"{r['method']:<11} {knob}={r[knob]:<6g} pass@1 {r['pass@1']:.3f} pass@64 {r['pass@64']:.3f} "
              f"score {r['score']:.3f}{mark}")
    return {"rows": rows, "chosen": {m: c[TUNED[m]] for m, c in choice.items()}}


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    base = base_model(args)
    if args.tune:
        result = {"config": vars(args), "tune": tune(args, base), "seconds": round(time.time() - t0)}
    else:
        summary, derived, curves, for_figure, seconds = report_seeds(args, base)
        print_table(summary, f"held-out arith ({args.problems} problems x n = {args.n}, temperature 1.0), "
                             f"pass@k mean over {args.seeds} seed(s)")
        print_derived(derived, args)
        result = {"config": vars(args), "seconds": round(time.time() - t0), "methods": summary,
                  "derived": derived, "train_seconds": seconds, "curves": curves}
        if not args.no_plot:
            lm_plots.plot_main(summary, derived, curves, args, KS)
            problems = tasks.arith_problems("test", args.problems)
            lm_plots.plot_forgotten(for_figure, args, problems, args.methods)
    for path in filter(None, (os.path.join(args.out, "lm_demo.json"), args.json)):
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
    print(f"total {time.time() - t0:.0f} s")
    return result


if __name__ == "__main__":
    main()
