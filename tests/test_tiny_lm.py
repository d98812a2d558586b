"""The tiny math LM: its task generator is right by verify.py, its splits are disjoint, a much
smaller build trains through train.py end to end, and lm_demo's --quick run keeps its JSON contract."""

import json
import math
import random
import time

import pytest

import train
import verify
from toy import lm_coverage, lm_demo, tasks, tiny_lm


def test_every_worked_solution_is_correct_by_verify():
    for p in tasks.arith_problems("test", 50) + tasks.arith_problems("train", 50):
        terms = tasks.parse_problem(p["problem"])
        a, b, c = terms
        assert int(p["answer"]) == a - b + c >= 0
        solutions = tasks.all_solutions(terms)
        assert len(solutions) == (2 if tasks.category_of(terms) == "both" else 1)  # no negative intermediate
        for s in solutions:  # every valid strategy reaches the gold answer
            assert verify.reward(s, p["answer"]) == 1.0
        wrong = solutions[0].rsplit("\\boxed", 1)[0] + f"\\boxed{{{int(p['answer']) + 1}}}"
        assert verify.reward(wrong, p["answer"]) == 0.0


def test_only_the_rare_strategy_solves_a_hard_problem():
    terms = (37, 52, 28)  # a < b: left to right would go negative
    assert tasks.category_of(terms) == "hard"
    assert [tasks.strategy_of(" " + s, terms) for s in tasks.all_solutions(terms)] == ["add_first"]
    assert tasks.strategy_of(" 37 - 52 = 15.", terms) == "left" and tasks.strategy_of(" 1", terms) == "other"
    assert [tasks.strategy_of(s, (52, 37, 58)) for s in tasks.all_solutions((52, 37, 58))] == ["left"]  # 110


def test_splits_are_disjoint_even_when_a_and_c_swap():
    def key(p):
        a, b, c = tasks.parse_problem(p["problem"])
        return b, min(a, c), max(a, c)  # "a - b + c" and "c - b + a" are the same problem
    keys = {s: {key(p) for p in tasks.arith_problems(s)} for s in tasks.SPLIT_SIZE}
    assert all(keys.values())
    assert not (keys["train"] & keys["test"] or keys["train"] & keys["val"] or keys["val"] & keys["test"])


def test_category_shares_are_as_designed_and_pretraining_never_shows_hard():
    problems = tasks.arith_problems("test")
    for category, share in tasks.CATEGORY_SHARE.items():  # 500 problems: within ~3 standard errors
        got = sum(tasks.category_of(tasks.parse_problem(p["problem"])) == category
                  for p in problems) / len(problems)
        assert abs(got - share) < 0.065
    rng = random.Random(0)
    examples = [tasks.sft_example(rng, 0.5) for _ in range(300)]
    categories = [tasks.category_of(tasks.parse_problem(p)) for p, _ in examples]
    assert set(categories) == {"both", "left_only"}
    for (p, solution), category in zip(examples, categories):  # "add first" only where it works
        strategy = tasks.strategy_of(solution, tasks.parse_problem(p))
        assert strategy == "left" or (strategy == "add_first" and category == "both")
    assert any(tasks.strategy_of(s, tasks.parse_problem(p)) == "add_first" for p, s in examples)
    with pytest.raises(ValueError, match="hard"):
        tasks.sft_example(rng, 0.5, categories=("both", "hard"))


def test_careless_sft_solutions_are_wrong_only_in_their_last_step():
    rng = random.Random(0)
    for error_share, expect in ((0.0, 1.0), (1.0, 0.0)):
        for _ in range(100):
            problem, solution = tasks.sft_example(rng, 0.5, error_share=error_share)
            a, b, c = tasks.parse_problem(problem)
            assert verify.reward(solution, str(a - b + c)) == expect
            x, op, y, _, z = solution.split(". ")[0].split()  # the first step is always right
            assert int(z) == (int(x) + int(y) if op == "+" else int(x) - int(y)), solution


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory):
    return tiny_lm.build(tmp_path_factory.mktemp("tiny_lm") / "m", tiny_lm.QUICK, progress=False)


def test_quick_build_trains_two_steps_through_train_py(quick_model, tmp_path):
    out = tmp_path / "run"
    train.main(["--model", quick_model, "--dataset", "arith", "--loss", "apo", "--steps", "2",
                "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "16", "--out", str(out)])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and (out / "final" / "config.json").exists()


def test_a_build_is_reused_only_for_the_same_recipe(quick_model):
    assert tiny_lm.is_built(quick_model, tiny_lm.QUICK)
    assert not tiny_lm.is_built(quick_model, tiny_lm.Recipe())


def test_k_star_interpolates_where_grpo_falls_below_base():
    base = {k: 0.5 for k in lm_demo.KS}
    grpo = {k: 0.5 + (0.1 if k <= 4 else -0.1) for k in lm_demo.KS}  # above up to 4, below from 8
    assert lm_demo.k_star(base, grpo) == pytest.approx(2 ** 2.5, abs=0.1)
    assert lm_demo.k_star(base, base) is None


def test_quick_lm_demo_runs_end_to_end_and_writes_the_json_contract(tmp_path):
    path = tmp_path / "demo.json"
    lm_demo.main(["--quick", "--methods", "grpo,apo", "--out", str(tmp_path / "out"), "--json", str(path),
                  "--no-plot"])  # two methods: --methods reaches every stage, and CI stays short
    result = json.loads(path.read_text())
    assert {"config", "seconds", "methods"} <= set(result)
    assert set(result["methods"]) == {"base", "grpo", "apo"} and set(result["curves"]) == {"grpo", "apo"}
    assert set(result["derived"]["paired"]) == {"apo - grpo"}
    for r in result["methods"].values():
        for key in ("pass@1", "pass@64"):
            assert 0.0 <= r[key] <= 1.0 and math.isnan(r[key + "_se"])  # one seed: no spread to measure
        assert [int(k) for k in r["curve"]] == list(lm_demo.KS)
        assert r["curve"]["1"] == pytest.approx(r["pass@1"])


@pytest.mark.parametrize("argv, message", [(["--sft-categories", "both,hard"], "--sft-categories takes"),
                                           (["--error-share", "1.5"], "--error-share must lie in"),
                                           (["--rare-share", "-0.1"], "--rare-share must lie in")])
def test_bad_recipe_overrides_stop_with_one_sentence(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        tiny_lm.main([*argv, "--quick", "--out", str(tmp_path / "m")])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # nothing was built


def _evals(c_by_seed, n=64):
    """Evaluation results as read_eval returns them, from each seed's c per problem."""
    return [{"n": n, "c": list(c), "pass@1": sum(c) / (n * len(c)),
             "pass@64": sum(lm_demo.pass_at_k(n, x, 64) for x in c) / len(c)} for c in c_by_seed]


def test_forgotten_problems_are_selected_on_the_other_seeds_and_measured_on_the_held_out_one():
    # problem 0: base solves it on seed 0 only, GRPO on seed 2 only; problem 1: GRPO never, base
    # on seeds 0 and 1; problem 2: base never. Selected and measured on the same seeds, GRPO keeps
    # 0 of the set by construction; held out, its replicate on seed 2 solves problem 0.
    per_seed = {"base": _evals([(3, 2, 0), (0, 1, 0), (0, 0, 0)]),
                "grpo": _evals([(0, 0, 0), (0, 0, 0), (5, 0, 0)]),
                "apo": _evals([(0, 0, 0), (0, 4, 0), (0, 0, 0)])}
    f = lm_demo.forgotten(per_seed, ["hard"] * 3)
    assert f["held_out"] and f["sizes"] == [1, 1, 2]  # folds 0 and 1: {1}; fold 2: {0, 1}
    assert f["kept"] == {"base": 2, "grpo": 1, "apo": 1}  # base on seeds 0, 1; grpo 0 on 2; apo 1 on 1
    assert f["kept_share"]["grpo"][0] == pytest.approx((0 + 0 + 0.5) / 3)
    assert sorted(f["index"]) == [0, 1]
    assert f["held_out_rate"]["grpo"][0] == pytest.approx(5 / 64)  # only fold 2 selected problem 0
    one = lm_demo.forgotten({m: runs[:1] for m, runs in per_seed.items()}, ["hard"] * 3)
    assert not one["held_out"] and one["kept"]["grpo"] == 0  # one seed: the biased view, said so


def test_paired_differences_are_taken_seed_by_seed():
    of = ["hard", "both"]
    per_seed = {"grpo": _evals([(0, 10), (2, 10), (4, 10)]), "apo": _evals([(1, 10), (3, 10), (5, 10)]),
                "grpo_kl": _evals([(1, 10), (3, 11), (0, 10)])}
    d = lm_demo.paired(per_seed, of)
    assert set(d) == {"apo - grpo_kl", "apo - grpo", "grpo_kl - grpo"}  # only the pairs whose methods ran
    m, se, holds = d["apo - grpo"]["pass@1"]
    assert m == pytest.approx(1 / 128) and se == pytest.approx(0.0) and holds  # the same gain on every seed
    m, se, holds = d["apo - grpo_kl"]["hard pass@64"]
    diffs = [0.0, 0.0, lm_demo.pass_at_k(64, 5, 64) - 0.0]
    assert m == pytest.approx(sum(diffs) / 3) and se == pytest.approx(lm_demo.mean_se(diffs)[1]) and not holds


def test_methods_flag_takes_known_names_and_needs_grpo(capsys):
    assert lm_demo.parse_args(["--methods", "nsr,grpo"]).methods == ("grpo", "nsr")
    for bad in ("grpo,ppo", "apo"):
        with pytest.raises(SystemExit) as stop:
            lm_demo.parse_args(["--methods", bad])
        assert stop.value.code == 2 and "--methods takes names from" in capsys.readouterr().err


def test_coverage_solutions_are_correct_and_hard_ones_add_first():
    rows = lm_coverage.solution_rows(64)
    assert len(rows["all"]) == 64 and 0 < len(rows["hard"]) < 64
    for r in rows["all"]:
        terms = tasks.parse_problem(r["problem"])
        assert r["solution"].startswith(" ") and r["solution"].endswith(f"\\boxed{{{r['answer']}}}")
        assert tasks.strategy_of(r["solution"], terms) == ("add_first" if r in rows["hard"] else "left")


def test_coverage_runs_eval_py_on_a_model(quick_model, tmp_path):
    result = lm_coverage.main(["--model", quick_model, "--problems", "8", "--out", str(tmp_path)])
    for cov in result.values():
        values = [cov[f"top{k}"] for k in lm_coverage.PAPER]
        assert cov["tokens"] > 0 and values == sorted(values) and 0 <= values[0] <= values[-1] <= 1


def test_a_failed_job_stops_the_demo_and_the_jobs_still_running(tmp_path):
    slow, fail, marker = tmp_path / "slow.py", tmp_path / "fail.py", tmp_path / "slow_finished"
    slow.write_text(f"import time\ntime.sleep(2)\nopen({str(marker)!r}, 'w').close()\n")
    fail.write_text("raise SystemExit(1)\n")
    args = lm_demo.parse_args(["--jobs", "2", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="fail failed"):
        lm_demo.run_all([("slow", str(slow), []), ("fail", str(fail), [])], args)
    time.sleep(3)
    assert not marker.exists()  # killed, not left to write on after the demo stopped


def test_one_seed_gives_no_standard_error_and_no_claim():
    per_seed = {"grpo": _evals([(0, 10)]), "apo": _evals([(5, 10)])}
    m, se, holds = lm_demo.paired(per_seed, ["hard", "both"])["apo - grpo"]["pass@1"]
    assert m > 0 and math.isnan(se) and not holds
