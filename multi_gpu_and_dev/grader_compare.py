"""Accuracy of verify.reward against plain math_verify on other graders' public test cases.

Run:  python multi_gpu_and_dev/grader_compare.py              (about 20 s on one core)
      python multi_gpu_and_dev/grader_compare.py --show ours  (also list the cases verify.reward gets wrong)
      python multi_gpu_and_dev/grader_compare.py --load 2     (the same beside 2 busy processes: call times)

The cases are in tests/data/grader_cases.jsonl, one per line: {"source", "ref", "completion", "gold",
"expected"}, ported from the public test suites that "ref" names (inputs and expected labels only, no
code). A grader's answer-level pairs, `is_equiv(pred, gold)`, became the completion "\\boxed{pred}".
An optional "benchmark" field is passed to verify.reward (its departure 7: "minerva"); plain math_verify
has no such mode. The Minerva graders publish no test suite: the minerva-ocw and qwen2.5-math-minerva
cases are answers to golds of the 272-problem set, written in each evaluation's own answer format
("Final answer: The final answer is X. I hope it is correct." and "\\boxed{X}"), labelled by running
that evaluation's grader as published, and kept where the label follows its stated rule (a unit it
strips or keeps, its tolerance); its parse failures are left out (README, "The grader").
"Plain" math_verify is what a user of that library writes:

    verify(parse("\\boxed{" + gold + "}"), parse(completion))     # gold first

Both graders get the same completion and gold. The table gives, per source, the share of cases each
grader labels as the source does. The timings are verify.reward's: the first call (it pays sympy's
one-off warm-up), then the slowest later call in wall-clock and in CPU seconds (the time limit
counts CPU seconds). With --thread every call runs from a worker thread (a forked child per check:
its CPU time is the child's).
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict

from math_verify import parse, verify

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)  # run as a script from anywhere
import verify as V  # noqa: E402

CASES = os.path.join(ROOT, "tests", "data", "grader_cases.jsonl")
BUSY_LOOP = "while True: pass"


def plain_math_verify(completion: str, gold: str) -> int:
    try:
        return int(bool(verify(parse("\\boxed{" + gold + "}"), parse(completion))))
    except Exception:  # math_verify raises on a few inputs (its own timeouts, recursion)
        return 0


def cpu_s(in_thread: bool) -> float:
    """This thread's CPU seconds, or, for checks run from a thread, those of the forked children."""
    return sum(os.times()[2:4]) if in_thread else time.thread_time()


def timed_reward(case: dict, in_thread: bool) -> tuple[float, float, float]:
    """(reward, wall seconds, CPU seconds of the check)."""
    out = {}

    def call():
        out["reward"] = V.reward(case["completion"], case["gold"], benchmark=case.get("benchmark"))

    wall, cpu = time.perf_counter(), cpu_s(in_thread)
    if in_thread:
        thread = threading.Thread(target=call)
        thread.start()
        thread.join()
    else:
        call()
    return out["reward"], time.perf_counter() - wall, cpu_s(in_thread) - cpu


def main():
    cli = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cli.add_argument("--cases", default=CASES, help="a .jsonl file of cases")
    cli.add_argument("--show", choices=["none", "ours", "plain", "diff"], default="none",
                     help="list the cases verify.reward (ours), plain math_verify, or only one, gets wrong")
    cli.add_argument("--load", type=int, default=0, help="busy processes to run beside the grading")
    cli.add_argument("--thread", action="store_true", help="call verify.reward from a worker thread")
    args = cli.parse_args()
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # plain math_verify warns on timeouts
    with open(args.cases) as f:
        cases = [json.loads(line) for line in f if line.strip()]
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.load)]
    try:
        _, first_s, _ = timed_reward({"completion": r"\boxed{(x+1)^2}", "gold": "x^2+2x+1"}, args.thread)
        right = defaultdict(lambda: [0, 0, 0])  # source -> [cases, ours right, plain right]
        slowest = (0.0, 0.0, None)  # (wall, cpu, case)
        for case in cases:
            ours, wall, cpu = timed_reward(case, args.thread)
            slowest = max(slowest, (wall, cpu, case), key=lambda s: s[:2])
            plain = plain_math_verify(case["completion"], case["gold"])
            counts = right[case["source"]]
            counts[0] += 1
            counts[1] += ours == case["expected"]
            counts[2] += plain == case["expected"]
            wrong = {"ours": ours != case["expected"], "plain": plain != case["expected"],
                     "diff": (ours == case["expected"]) != (plain == case["expected"])}.get(args.show, False)
            if wrong:
                print(f"[{case['source']}] expected {case['expected']} ours {ours:.0f} plain {plain} "
                      f"gold {case['gold']!r} answer {V.extract_answer(case['completion'])!r}\n"
                      f"    {case['completion'][-200:]!r}")
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()

    print("\n| source | cases | verify.reward | plain math_verify |\n|---|---:|---:|---:|")
    total = [0, 0, 0]
    for source, (n, ours, plain) in right.items():
        print(f"| {source} | {n} | {ours / n:.1%} ({ours}) | {plain / n:.1%} ({plain}) |")
        total = [total[0] + n, total[1] + ours, total[2] + plain]
    n, ours, plain = total
    print(f"| all | {n} | {ours / n:.1%} ({ours}) | {plain / n:.1%} ({plain}) |")
    wall, cpu, case = slowest
    print(f"\nverify.reward with {args.load} busy processes{' from a thread' if args.thread else ''}: "
          f"first call {first_s:.2f} s (pays the warm-up); slowest later call {wall:.2f} s wall, "
          f"{cpu:.2f} s CPU (limit {V.TIME_LIMIT_S} s CPU), gold {case['gold']!r} ({case['source']})")


if __name__ == "__main__":
    main()
