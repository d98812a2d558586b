"""eval.py: the pass@k estimator against brute force, and the CLI end to end on a tiny random model.

    HF_HUB_OFFLINE=1 python -m pytest -q tests/test_eval.py

A random tiny model never solves arithmetic, so the end-to-end pass@k tests replace
`verify.reward` by "the completion contains this problem's gold letter": they check eval's
counting, estimator and files, not the answer checker (tests/test_verify.py does that).
"""

import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import eval as eval_cli
import verify
from plumbing import loading, prompts
from toy.random_qwen2 import TOY_PROBLEMS

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
N = 8  # samples per problem in the end-to-end run
GOLD_LETTERS = ["e", "a", "t"]  # letters a random model's 8-token completions often, not always, contain
SOLUTIONS = [  # reference solutions of different lengths, so the batch is padded on both sides
    "We add: 2 + 3 = 5. The answer is \\boxed{5}.",
    "Subtract to get 3, so \\boxed{3}.",
    "First, we multiply 6 by 7. Then the product is 42. The answer is \\boxed{42}.",
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def brute_force_pass_at_k(n, c, k):
    """Fraction of all k-subsets of n samples (the first c correct) that hold a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


@pytest.fixture(scope="module")
def letter_run(random_model_dir, tmp_path_factory):
    """One eval run (n=8, temperature 1) where "correct" means "contains the gold letter"."""
    d = tmp_path_factory.mktemp("letters")
    bench = write_jsonl(d / "letters.jsonl", [{"problem": p["problem"], "answer": a}
                                              for p, a in zip(TOY_PROBLEMS, GOLD_LETTERS)])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verify, "reward", lambda text, gold, benchmark=None: float(gold in text))
        code = eval_cli.main(["--model", random_model_dir, "--benchmarks", bench, "--n", str(N),
                         "--temperature", "1.0", "--max-new-tokens", "8", "--out", str(d / "out")])
    assert code == 0
    return d / "out"


def run_cli(*argv):
    return subprocess.run([sys.executable, str(ROOT / "eval.py"), *argv], cwd=ROOT, env=OFFLINE_ENV,
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------ estimator

def test_pass_at_k_equals_enumeration_of_all_k_subsets():
    for n in range(1, 8):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert eval_cli.pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_and_exact_for_n_1000():
    n = 1000  # C(1000, 500) has 300 digits: a float ratio of binomials would overflow
    for c in (0, 1, 7, 100, 500, 999, 1000):
        for k in (1, 10, 100, 500, 1000):
            exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
            got = eval_cli.pass_at_k(n, c, k)
            assert math.isfinite(got) and got == pytest.approx(float(exact), abs=1e-9)


@pytest.mark.parametrize("n, c, k", [(4, 1, 5), (4, 1, 0), (4, -1, 2), (4, 5, 2), (0, 0, 1), (4, 1, 1.5)])
def test_pass_at_k_rejects_k_above_n_and_invalid_counts(n, c, k):
    with pytest.raises(ValueError):
        eval_cli.pass_at_k(n, c, k)


# ------------------------------------------------------------------------------------ CLI

def test_run_writes_results_json_md_png_and_samples(letter_run):
    results = json.loads((letter_run / "results.json").read_text())
    bench = results["benchmarks"]["letters"]  # a local file is named by its stem
    assert isinstance(results["model"], str)
    assert bench["problems"] == 3 and bench["n"] == N
    assert [key for key in bench if key.startswith("pass@")] == ["pass@1", "pass@2", "pass@4", "pass@8"]
    assert 0 <= bench["truncated_frac"] <= 1
    assert "| letters | 3 | 8 |" in (letter_run / "results.md").read_text()
    assert (letter_run / "pass_at_k.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    samples = [json.loads(line) for line in (letter_run / "samples.jsonl").read_text().splitlines()]
    assert [(s["index"], s["answer"], s["n"]) for s in samples] == [(i, a, N)
                                                                     for i, a in enumerate(GOLD_LETTERS)]
    assert all(s["sample_correct"] == (s["answer"] in s["sample"]) for s in samples)


def test_pass_at_k_is_the_problem_mean_of_brute_force_on_saved_counts(letter_run):
    results = json.loads((letter_run / "results.json").read_text())["benchmarks"]["letters"]
    counts = [json.loads(line)["c"] for line in (letter_run / "samples.jsonl").read_text().splitlines()]
    for k in (1, 2, 4, 8):
        expected = sum(brute_force_pass_at_k(N, c, k) for c in counts) / len(counts)
        assert results[f"pass@{k}"] == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_never_falls_and_rises_when_some_samples_are_correct(letter_run):
    counts = [json.loads(line)["c"] for line in (letter_run / "samples.jsonl").read_text().splitlines()]
    assert any(0 < c < N for c in counts), f"the run should mix right and wrong samples, got c={counts}"
    results = json.loads((letter_run / "results.json").read_text())["benchmarks"]["letters"]
    curve = [results[f"pass@{k}"] for k in (1, 2, 4, 8)]
    assert all(a <= b for a, b in zip(curve, curve[1:])) and curve[0] < curve[-1]


def test_compare_draws_two_results_files_into_one_png_without_a_model(letter_run, tmp_path):
    other = json.loads((letter_run / "results.json").read_text())
    other["model"] = "another-model"
    other["benchmarks"]["letters"] = {**other["benchmarks"]["letters"], "pass@1": 0.5}
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    files = [str(letter_run / "results.json"), str(other_path)]
    assert eval_cli.main(["--compare", *files, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_gives_the_same_samples(random_model_dir, toy_problems_file, tmp_path):
    argv = ["--model", random_model_dir, "--benchmarks", toy_problems_file, "--limit", "2", "--n", "2",
            "--max-new-tokens", "8", "--seed", "3"]
    assert eval_cli.main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert eval_cli.main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "samples.jsonl").read_text() == (tmp_path / "b" / "samples.jsonl").read_text()


def test_missing_model_folder_exits_2_with_one_error_line_from_the_real_cli(toy_problems_file, tmp_path):
    proc = run_cli("--model", str(tmp_path / "no-such-model"), "--benchmarks", toy_problems_file,
                   "--out", str(tmp_path / "out"))
    lines = proc.stderr.strip().splitlines()  # loading the dataset may draw a progress bar first
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: model folder")
    assert sum(line.startswith("error") for line in lines) == 1


@pytest.mark.parametrize("case", ["k above n", "n below 1", "dataset without fields"])
def test_bad_input_returns_2_with_one_error_line(case, random_model_dir, toy_problems_file, tmp_path, capsys):
    argv = {
        "k above n": ["--benchmarks", toy_problems_file, "--n", "4", "--k", "1,8"],
        "n below 1": ["--benchmarks", toy_problems_file, "--n", "0"],
        "dataset without fields": ["--benchmarks", write_jsonl(tmp_path / "x.jsonl", [{"text": "hi"}])],
    }[case]
    assert eval_cli.main(["--model", random_model_dir, *argv, "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1


# ------------------------------------------------------------------------- top-K coverage

def slow_coverage_hits(model, tokenizer, problem, solution):
    """Hits per K for one unpadded sequence, ranking each solution token position by position."""
    prompt = tokenizer(prompts.format_prompt(tokenizer, problem), add_special_tokens=False)["input_ids"]
    y = tokenizer(solution, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + y])).logits[0]  # (P+T, V)
    hits = [0] * len(eval_cli.COVERAGE_KS)
    for j, token in enumerate(y):
        row = logits[len(prompt) + j - 1]  # the logit row that predicts solution token j
        rank = int((row > row[token]).sum())  # tokens the model ranks strictly above it
        hits = [h + (rank < K) for h, K in zip(hits, eval_cli.COVERAGE_KS)]
    return hits, len(y)


def test_topk_coverage_is_ordered_and_matches_a_slow_unpadded_loop(random_model_dir, tmp_path):
    rows = [{"problem": p["problem"], "answer": "0", "solution": s} for p, s in zip(TOY_PROBLEMS, SOLUTIONS)]
    bench = write_jsonl(tmp_path / "sol.jsonl", rows)
    assert eval_cli.main(["--model", random_model_dir, "--benchmarks", bench, "--n", "1",
                          "--max-new-tokens", "64", "--dtype", "float32", "--topk-coverage",
                          "--out", str(tmp_path / "out")]) == 0
    cov = json.loads((tmp_path / "out" / "results.json").read_text())["topk_coverage"]
    assert 0 <= cov["top1"] <= cov["top4"] <= cov["top8"] <= cov["top16"] <= 1

    model, tokenizer = loading.load_model_and_tokenizer(random_model_dir, dtype="float32")
    slow = [slow_coverage_hits(model, tokenizer, r["problem"], r["solution"]) for r in rows]
    tokens = sum(t for _, t in slow)
    assert cov["tokens"] == tokens
    for i, K in enumerate(eval_cli.COVERAGE_KS):
        assert round(cov[f"top{K}"] * tokens) == sum(h[i] for h, _ in slow)


# ---------------------------------------------------------------------------- hostile input

def one_error_line(capsys):
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1
    assert not any("Traceback" in line for line in lines)
    return lines[-1]


@pytest.mark.parametrize("flag", ["--temperature", "--top-p"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_float_flag_exits_2_with_one_line(flag, value, random_model_dir, toy_problems_file,
                                                       tmp_path, capsys):
    assert eval_cli.main(["--model", random_model_dir, "--benchmarks", toy_problems_file, flag, value,
                          "--out", str(tmp_path)]) == 2
    assert "must be a finite number" in one_error_line(capsys)


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_out_that_is_a_file_or_below_one_exits_2(where, random_model_dir, toy_problems_file, tmp_path,
                                                     capsys):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "a file" else tmp_path / "f" / "eval"
    assert eval_cli.main(["--model", random_model_dir, "--benchmarks", toy_problems_file, "--n", "1",
                          "--out", str(out)]) == 2
    assert where in one_error_line(capsys)


def test_a_benchmark_file_named_with_latex_is_drawn_as_text(random_model_dir, tmp_path):
    bench = write_jsonl(tmp_path / "frac$\\frac{1}{2$_test.jsonl", TOY_PROBLEMS[:1])
    assert eval_cli.main(["--model", random_model_dir, "--benchmarks", bench, "--n", "1",
                          "--max-new-tokens", "2", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "pass_at_k.png").read_bytes()[:4] == b"\x89PNG"


def test_two_files_with_one_name_keep_their_own_results(random_model_dir, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files = [write_jsonl(tmp_path / d / "test.jsonl", TOY_PROBLEMS[i:i + 1]) for i, d in enumerate("ab")]
    assert eval_cli.main(["--model", random_model_dir, "--benchmarks", ",".join(files), "--n", "1",
                          "--max-new-tokens", "2", "--out", str(tmp_path / "out")]) == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())["benchmarks"]
    assert sorted(results) == sorted(files)  # named by path: "test" twice would overwrite the first
    with pytest.raises(eval_cli.UsageError, match="twice"):
        eval_cli.benchmark_names([files[0], files[0]])


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_model_safetensors_exits_2_with_one_line(damage, random_model_dir, toy_problems_file,
                                                           tmp_path, capsys):
    """Needs loading.load_model_and_tokenizer to turn every from_pretrained failure into ModelLoadError."""
    bad = tmp_path / "model"
    shutil.copytree(random_model_dir, bad)
    weights = bad / "model.safetensors"
    if damage == "truncated":
        os.truncate(weights, os.path.getsize(weights) // 2)
    else:
        weights.write_bytes(b"not a safetensors file" * 10)
    assert eval_cli.main(["--model", str(bad), "--benchmarks", toy_problems_file, "--n", "1",
                          "--out", str(tmp_path / "out")]) == 2
    assert "could not load" in one_error_line(capsys)


# ------------------------------------------------------------- --compare on hostile files

@pytest.mark.parametrize("value", ['"0.5"', "null", "[0.5]", '{"a": 1}', "true", "NaN"])
def test_compare_refuses_results_whose_pass_at_k_is_not_a_number(value, tmp_path, capsys):
    good = {"model": "m", "benchmarks": {"b": {"pass@1": 0.5, "pass@2": 0.7, "n": 2, "problems": 3}}}
    bad = json.loads(json.dumps(good).replace("0.7", value))
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps(bad).replace("NaN", "NaN"))
    code = eval_cli.main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out",
                          str(tmp_path / "cmp")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "b.json" in err[0]



@pytest.mark.parametrize("key", ["pass@01", "pass@\u00b2", "pass@\u0663", "pass@0", "pass@"])
def test_compare_refuses_a_pass_at_k_key_it_cannot_plot(key, tmp_path, capsys):
    res = {"model": "m", "benchmarks": {"b": {"pass@1": 0.5, key: 0.7}}}
    (tmp_path / "b.json").write_text(json.dumps(res))
    code = eval_cli.main(["--compare", str(tmp_path / "b.json"), "--out", str(tmp_path / "cmp")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "whole K" in err[0]


def test_compare_never_blocks_on_a_pipe(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.json")
    result = {}
    worker = threading.Thread(target=lambda: result.update(code=eval_cli.main(
        ["--compare", str(tmp_path / "fifo.json"), "--out", str(tmp_path / "cmp")])), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive() and result["code"] == 2
