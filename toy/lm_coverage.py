"""The paper's top-K coverage table, on the tiny LM: how much of a worked solution lies inside
the reference model's top-K, the safe manifold APO anchors to (METHOD.md §3).

Run:  python toy/lm_coverage.py                      the tiny LM (built if needed), 256 test problems
      python toy/lm_coverage.py --model runs/lm_demo/grpo_s0/final   any model of the arith task

The paper reads 1,000 MATH solutions into Qwen2.5-Math-7B under teacher forcing and counts how
often the next token of the solution is among the model's top-1/4/8/16: 83.84 / 95.52 / 97.47 /
98.46 %. Here `eval.py --topk-coverage` does the same with the worked solutions of toy/tasks.py's
test problems: left to right where that works, else "add first" (every hard problem, whose
strategy the tiny LM never saw in pre-training), each with the leading space the model writes
after "Answer:". It prints both tables, all problems and the hard ones alone.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python toy/lm_coverage.py`: the repository root is not on the path
    sys.path.insert(0, ROOT)
from toy import tasks, tiny_lm  # noqa: E402

PAPER = {1: 83.84, 4: 95.52, 8: 97.47, 16: 98.46}  # the paper's top-K coverage (%) on MATH, 7B


def solution_rows(n_problems):
    """{"all": rows, "hard": rows}: test problems with a `solution` field for eval.py."""
    rows = {"all": [], "hard": []}
    for p in tasks.arith_problems("test", n_problems):
        terms = tasks.parse_problem(p["problem"])
        row = {**p, "solution": " " + tasks.all_solutions(terms)[0]}  # left first when it works
        rows["all"].append(row)
        if tasks.category_of(terms) == "hard":
            rows["hard"].append(row)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="the model (default: the tiny LM, built if needed)")
    ap.add_argument("--problems", type=int, default=256, help="test problems read")
    ap.add_argument("--out", default="runs/lm_coverage", help="where eval.py writes")
    args = ap.parse_args(argv)
    if args.problems < 1:
        ap.error("--problems must be at least 1")
    model = tiny_lm.ensure_tiny_model() if args.model == "tiny" else args.model
    os.makedirs(args.out, exist_ok=True)
    result = {}
    for name, rows in solution_rows(args.problems).items():
        path, out = os.path.join(args.out, f"arith_solutions_{name}.jsonl"), os.path.join(args.out, name)
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        cmd = [sys.executable, os.path.join(ROOT, "eval.py"), "--model", model, "--out", out,
               "--benchmarks", path, "--n", "1", "--k", "1", "--max-new-tokens", "48", "--topk-coverage"]
        if subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode != 0:
            raise SystemExit(f"error: eval.py failed on {path}; to see why, run: {' '.join(cmd[1:])}")
        result[name] = json.load(open(os.path.join(out, "results.json")))["topk_coverage"]
    print("top-K coverage of worked solutions under teacher forcing (% of solution tokens)")
    print(f"{'':<36}" + "".join(f"{'top' + str(k):>8}" for k in PAPER))
    print(f"{'paper: Qwen2.5-Math-7B, MATH':<36}" + "".join(f"{v:>8.2f}" for v in PAPER.values()))
    for name, cov in result.items():
        label = f"{args.model}: {name} ({cov['tokens']} tokens)"
        print(f"{label:<36}" + "".join(f"{100 * cov[f'top{k}']:>8.2f}" for k in PAPER))
    return result


if __name__ == "__main__":
    main()
