"""Pass@k of a model on math benchmarks, and the paper's top-K coverage of reference solutions.

    python eval.py --model Qwen2.5-Math-1.5B --n 16          # five benchmarks: runs/eval-Qwen2.5-Math-1.5B
    python eval.py --model runs/apo/final --benchmarks math500,aime24       # writes runs/apo/eval
    python eval.py --model Qwen2.5-Math-1.5B --benchmarks math500 --limit 200 --topk-coverage
    python eval.py --compare runs/eval-Qwen2.5-Math-1.5B/results.json runs/apo/eval/results.json

What it implements (METHOD.md §5, §6, §3):
- n samples per problem, graded by `verify.reward` (the training reward), and pass@k with the
  unbiased estimator 1 - C(n-c, k)/C(n, k), averaged over problems. "Max over the first k"
  would be a noisier estimate of the same number; the estimator uses all n samples.
- `--topk-coverage`: teacher forcing on reference solutions. The model reads prompt + solution
  and we count how often each solution token is among its top-1/4/8/16 next tokens (the paper
  reports 83.84 / 95.52 / 97.47 / 98.46 % for Qwen2.5-Math-7B on MATH): how much of a correct
  path lies inside the safe manifold M(s_t) that APO anchors to.
Outputs in --out (default: beside the model's run, see `default_out`): results.json, results.md
(also printed), pass_at_k.png, samples.jsonl (per problem: c correct of n, and one completion to
read); `--compare` writes compare.png.

Departures and choices, with reasons:
1. Default temperature 0.6, top-p 1.0: the temperature of common pass@k studies of Qwen2.5-Math
   (e.g. Yue et al. 2025), at which base models stay coherent over 3000 tokens; the paper does
   not give its evaluation temperature. Training samples at 1.0: pass `--temperature 1.0` to
   measure the distribution that was trained.
2. Every benchmark is graded by our `verify.reward`, not each benchmark's own grader, so all
   numbers use one answer checker (the one that gave the training reward); `minerva` is graded
   with its benchmark rules, as its published evaluations do (units dropped, numbers within a
   relative 1e-4; verify.py departure 7).
3. The default k list is the powers of 2 up to n, plus n itself when n is not a power of 2.
4. Top-K coverage uses temperature-1 logits (a ranking does not depend on the temperature),
   the same prompt as sampling, and at most --max-new-tokens solution tokens per problem. The
   paper's prompt is not given; the solution is tokenized on its own, after the prompt.
"""

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

import rollout
import verify
from plumbing import checkpoints, cli, curves, data, loading, prompts
from toy import tiny_lm

COVERAGE_KS = (1, 4, 8, 16)  # the paper's teacher-forcing table
COVERAGE_ROWS = 8  # solutions per forward pass: bounds the (rows, T, V) logits tensor
SAMPLE_CHARS = 2000  # characters of the example completion kept in samples.jsonl


class UsageError(ValueError):
    """A bad flag or input file; the message says what to do."""


# -------------------------------------------------------------------------------- pass@k

def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 2), pass_at_k(4, 0, 4), pass_at_k(4, 3, 2)
    (0.25, 0.5, 0.0, 1.0)
    """
    if not all(isinstance(x, int) for x in (n, c, k)) or not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs integers with 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def default_ks(n):
    """Powers of 2 up to n, and n itself.

    >>> default_ks(16), default_ks(12)
    ([1, 2, 4, 8, 16], [1, 2, 4, 8, 12])
    """
    ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
    return ks if ks[-1] == n else ks + [n]


def parse_ks(text, n):
    if not text:
        return default_ks(n)
    try:
        ks = sorted({int(k) for k in text.split(",")})
    except ValueError:
        raise UsageError(f"--k must be a comma list of integers such as 1,2,4,8; got {text!r}") from None
    if ks[0] < 1 or ks[-1] > n:
        raise UsageError(f"every k must be between 1 and --n={n}; got --k {text} (raise --n or drop k > n)")
    return ks


def benchmark_name(spec):
    """A local file is named by its stem; a benchmark name or hub id stays as it is."""
    return Path(spec).stem if Path(spec).suffix.lower() in data.LOCAL_FORMATS else spec


def benchmark_names(specs):
    """One distinct name per --benchmarks entry: a file's stem, or the path as given when two
    files share a stem (their results would otherwise overwrite each other).

    >>> benchmark_names(["a/test.jsonl", "b/test.jsonl", "math500", "c/other.json"])
    ['a/test.jsonl', 'b/test.jsonl', 'math500', 'other']
    """
    stems = [benchmark_name(s) for s in specs]
    names = [s if stems.count(n) > 1 else n for s, n in zip(specs, stems)]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise UsageError(f"--benchmarks lists {twice!r} twice; give each benchmark once")
    return names


# ------------------------------------------------------------------------------ sampling

def evaluate(model, tokenizer, name, problems, args, ks):
    """Sample n completions per problem; return the benchmark's results and per-problem records."""
    torch.manual_seed(args.seed)  # per benchmark: its numbers do not depend on what ran before
    per_call = max(1, args.batch_size // args.n)  # whole problems per sample(): their n rows together
    records, truncated, tokens = [], 0, 0
    start = time.perf_counter()
    bar = tqdm(total=len(problems), desc=name, unit="problem")
    for first in range(0, len(problems), per_call):
        chunk = problems[first:first + per_call]
        out = rollout.sample(model, tokenizer, [p["problem"] for p in chunk], args.n,
                             temperature=args.temperature, top_p=args.top_p,
                             max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                             sampler=args.sampler)
        truncated += int(out.truncated.sum())
        tokens += int(out.completion_mask.sum())
        for i, p in enumerate(chunk):  # rows i*n .. (i+1)*n-1 answer problem i (Rollout layout)
            texts = out.texts[i * args.n:(i + 1) * args.n]
            rewards = [verify.reward(t, p["answer"], benchmark=name) for t in texts]
            shown = rewards.index(1.0) if 1.0 in rewards else 0  # a correct completion if there is one
            records.append({"benchmark": name, "index": first + i, "problem": p["problem"],
                            "answer": p["answer"], "n": args.n, "c": int(sum(rewards)),
                            "sample": texts[shown][:SAMPLE_CHARS],
                            "sample_answer": verify.extract_answer(texts[shown]),
                            "sample_correct": rewards[shown] == 1.0})
        bar.update(len(chunk))
    bar.close()
    result = {"problems": len(problems), "n": args.n}
    for k in ks:
        result[f"pass@{k}"] = sum(pass_at_k(r["n"], r["c"], k) for r in records) / len(records)
    rows = len(problems) * args.n
    result.update(truncated_frac=truncated / rows, mean_completion_tokens=tokens / rows,
                  seconds=round(time.perf_counter() - start, 1))
    return result, records


# ------------------------------------------------------------------------ top-K coverage

def load_solutions(spec, limit):
    """Rows {"problem", "solution"} of a dataset, or [] when it has no `solution` field."""
    if spec in data.SYNTHETIC:  # generated problems (data.py `arith`) have no solutions
        return []
    rows = data.load_rows(spec, None)  # data.load_problems keeps only problem and answer
    p_field = next((f for f in data.PROBLEM_FIELDS if f in rows.column_names), None)
    if p_field is None or "solution" not in rows.column_names:
        return []
    out = []
    for row in rows:  # rows of a JSON file may lack a field the others have
        solution = row.get("solution")
        solution = (solution or [None])[0] if isinstance(solution, list) else solution
        if isinstance(solution, str) and solution.strip() and isinstance(row.get(p_field), str):
            out.append({"problem": row[p_field], "solution": solution})
        if limit and len(out) >= limit:
            break
    return out


@torch.no_grad()
def topk_coverage(model, tokenizer, rows, max_tokens):
    """Teacher forcing on reference solutions: (hits per K in COVERAGE_KS, solution tokens).

    Same layout as a Rollout: prompts left-padded to P, solutions right-padded to T, so one
    `completion_logits` call scores every solution position.
    """
    device = next(model.parameters()).device
    has_template = bool(getattr(tokenizer, "chat_template", None))
    hits, count = torch.zeros(len(COVERAGE_KS), dtype=torch.long), 0
    for start in tqdm(range(0, len(rows), COVERAGE_ROWS), desc="top-k coverage", unit="batch"):
        chunk = rows[start:start + COVERAGE_ROWS]
        enc = tokenizer([prompts.format_prompt(tokenizer, r["problem"]) for r in chunk],
                      return_tensors="pt", padding=True, padding_side="left",
                      add_special_tokens=not has_template)
        solutions = tokenizer([r["solution"] for r in chunk], return_tensors="pt", padding=True,
                              padding_side="right", add_special_tokens=False, truncation=True,
                              max_length=max_tokens)
        y = solutions["input_ids"].to(device)  # (n, T) reference solution tokens
        valid = solutions["attention_mask"].to(device).bool()  # (n, T) True on solution tokens
        input_ids = torch.cat([enc["input_ids"].to(device), y], 1)  # (n, P+T)
        attention_mask = torch.cat([enc["attention_mask"].to(device), valid.long()], 1)  # (n, P+T)
        logits = rollout.completion_logits(model, input_ids, attention_mask, y.shape[1])  # (n, T, V)
        top_ids = logits.topk(max(COVERAGE_KS), dim=-1).indices  # (n, T, 16) most likely first
        at_rank = top_ids == y[..., None]  # (n, T, 16) True where the solution token sits
        for j, K in enumerate(COVERAGE_KS):
            hits[j] += int((at_rank[..., :K].any(-1) & valid).sum())
        count += int(valid.sum())
        del logits
    return hits.tolist(), count


# ------------------------------------------------------------------------------- outputs

def markdown_table(results):
    ks = [key for key in next(iter(results["benchmarks"].values())) if key.startswith("pass@")]
    lines = [f"model: {results['model']}", "",
             "| benchmark | problems | n | " + " | ".join(ks) + " | truncated |",
             "|---" * (len(ks) + 4) + "|"]
    for name, r in results["benchmarks"].items():
        cells = [name, str(r["problems"]), str(r["n"]), *(f"{r[k]:.3f}" for k in ks),
                 f"{r.get('truncated_frac', 0):.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if "topk_coverage" in results:
        cov = results["topk_coverage"]
        lines += ["", f"top-K coverage of reference solutions ({cov['tokens']} tokens): " +
                  ", ".join(f"top{K} {cov[f'top{K}']:.4f}" for K in COVERAGE_KS)]
    return "\n".join(lines) + "\n"


def write_outputs(results, out):
    """results.json, results.md and pass_at_k.png; rewritten after every benchmark of a long run."""
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown_table(results))
    curves.draw_pass_at_k([(results["model"], results)], out / "pass_at_k.png")


def compare(files, out):
    """Draw several results.json files into OUT/compare.png, labelled by model (or file)."""
    runs = []
    for f in files:
        size = checkpoints.regular_size(os.path.realpath(f))  # a pipe would block the read forever
        try:
            res = json.loads(Path(f).read_text()) if size is not None and size < 1 << 26 else None
        except (OSError, ValueError, RecursionError):
            res = None
        if not (isinstance(res, dict) and "model" in res and isinstance(res.get("benchmarks"), dict)):
            raise UsageError(f"{f!r} is not a results.json written by eval.py; check the path")
        if bad := curves.pass_at_k_problem(res["benchmarks"]):
            raise UsageError(f"{f!r} is not a results.json written by eval.py: {bad}")
        runs.append((str(res["model"]), res))
    labels = [label for label, _ in runs]
    runs = [(f if labels.count(label) > 1 else label, res) for f, (label, res) in zip(files, runs)]
    checkpoints.check_out_dir(str(out))
    curves.draw_pass_at_k(runs, out / "compare.png")
    print(f"wrote {out / 'compare.png'}")


# ---------------------------------------------------------------------------------- main

@dataclass
class EvalConfig:
    """Pass@k of a model on math benchmarks (unbiased estimator)."""
    model: str = cli.option(None, "local folder, hub id (a bare Qwen name such as Qwen2.5-Math-1.5B means "
                            "Qwen/<name>), or `tiny` for the CPU math LM")
    benchmarks: str = cli.option(",".join(data.BENCHMARKS), "comma list of benchmark names, `arith`, hub ids "
                                 "or local .jsonl/.json/.parquet files (a file is named by its stem)")
    n: int = cli.option(16, "samples per problem")
    k: str = cli.option(None, "comma list of k, each <= n; default: powers of 2 up to n, and n itself")
    temperature: float = cli.option(0.6, "sampling temperature (see eval.py departure 1)")
    top_p: float = cli.option(1.0, "nucleus sampling; 1.0 is off")
    max_new_tokens: int = cli.option(3000, "completion budget; longer is truncated")
    limit: int = cli.option(None, "first N problems of each benchmark", type=int)
    batch_size: int = cli.option(64, "rows (problem x sample) per generate call")
    sampler: str = cli.option("auto", "auto (static cache + CUDA graph on GPU), hf (generate) or static",
                              choices=["auto", "hf", "static"])
    dtype: str = cli.option("auto", "auto: bfloat16 on CUDA, float32 on CPU",
                            choices=["auto", "float32", "bfloat16", "float16"])
    seed: int = cli.option(0, "torch seed, set again before each benchmark")
    out: str = cli.option(None, "folder for results.json, results.md, the plots (default: RUN/eval for "
                          "--model RUN/final, RUN/eval-checkpoint-N for a checkpoint, runs/eval-NAME for "
                          "another model, runs/compare for --compare)", type=str)
    topk_coverage: bool = cli.option(False, "also measure how often reference-solution tokens lie in the "
                                     "model's top-1/4/8/16")
    compare: list = cli.option(None, "draw these results.json files together into OUT/compare.png; runs no "
                               "model", nargs="+")


def check_flags(args):
    """UsageError naming the first bad flag; nothing is loaded before these pass."""
    if not args.model:
        raise UsageError("--model is required (a local folder or hub id), unless you pass --compare")
    bad = cli.non_finite_floats(args)
    if bad:
        raise UsageError(f"--{bad[0].replace('_', '-')} must be a finite number; got {getattr(args, bad[0])}")
    for flag in ("n", "max_new_tokens", "batch_size", "limit"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1; got {getattr(args, flag)}")
    if args.temperature <= 0 or not 0 < args.top_p <= 1:
        raise UsageError("--temperature must be > 0 and --top-p in (0, 1]")


def default_out(args):
    """Where results go without --out: beside the run that made the model, so that evaluating
    runs/apo/final writes runs/apo/eval (a checkpoint: eval-checkpoint-N beside it), and a hub model
    such as Qwen/Qwen2.5-Math-1.5B writes runs/eval-Qwen2.5-Math-1.5B (tests/test_recipe.py)."""
    if args.compare:
        return "runs/compare"
    path = Path(args.model)
    if path.is_dir() and path.name == "final":
        return str(path.parent / "eval")
    if path.is_dir() and checkpoints.CHECKPOINT_NAME.fullmatch(path.name):
        return str(path.parent / f"eval-{path.name}")
    return f"runs/eval-{path.name}"


def run(args):
    args.out = args.out or default_out(args)
    out = Path(args.out)
    if args.compare:
        return compare(args.compare, out)
    check_flags(args)
    ks = parse_ks(args.k, args.n)
    specs = [s.strip() for s in args.benchmarks.split(",") if s.strip()]
    if not specs:
        raise UsageError("--benchmarks is empty; give names such as math500,aime24 or a .jsonl file")
    checkpoints.check_out_dir(str(out))  # a file, a path below a file, a read-only folder: say so now
    names = benchmark_names(specs)
    benchmarks = {name: data.load_problems(s, limit=args.limit) for name, s in zip(names, specs)}  # fail fast
    solutions = {}  # benchmark -> reference solutions, for --topk-coverage
    if args.topk_coverage:
        solutions = {name: load_solutions(s, args.limit) for name, s in zip(names, specs)}
    if args.topk_coverage and not any(solutions.values()):
        raise UsageError("--topk-coverage needs a benchmark with a `solution` field (e.g. math500)")
    model, tokenizer = loading.load_model_and_tokenizer(tiny_lm.resolve_model(args.model), dtype=args.dtype)
    print(f"model {args.model} on {next(model.parameters()).device}; n={args.n}, k={ks}, "
          f"temperature={args.temperature}, top_p={args.top_p}, max_new_tokens={args.max_new_tokens}")
    results = {"model": args.model, "benchmarks": {}, "config": dataclasses.asdict(args)}
    with open(out / "samples.jsonl", "w") as f:
        for name, problems in benchmarks.items():
            results["benchmarks"][name], records = evaluate(model, tokenizer, name, problems, args, ks)
            f.writelines(json.dumps(r) + "\n" for r in records)
            f.flush()
            write_outputs(results, out)  # a crash later keeps the benchmarks already done
            r = results["benchmarks"][name]
            print(f"{name}: " + "  ".join(f"pass@{k} {r[f'pass@{k}']:.3f}" for k in ks) +
                  f"  truncated {r['truncated_frac']:.2f}  ({r['seconds']} s)")
    if args.topk_coverage:
        used = [name for name, rows in solutions.items() if rows]
        if len(used) < len(solutions):
            print(f"top-k coverage on {', '.join(used)} (the other benchmarks have no `solution` field)")
        rows = [r for name in used for r in solutions[name]]
        hits, count = topk_coverage(model, tokenizer, rows, args.max_new_tokens)
        results["topk_coverage"] = {**{f"top{K}": h / count for K, h in zip(COVERAGE_KS, hits)},
                                    "tokens": count, "benchmarks": used}
    write_outputs(results, out)
    print(markdown_table(results), end="")
    print(f"wrote {out}/results.json, results.md, pass_at_k.png, samples.jsonl")


def main(argv=None):
    """Run the CLI; returns the exit code (2 with one "error: ..." line for bad input)."""
    args = cli.parse(EvalConfig, argv)
    try:
        run(args)
    except (UsageError, data.DataError, loading.ModelLoadError, checkpoints.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
