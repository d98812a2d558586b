"""The tiny math LM: its task generator is right by verify.py, its splits are disjoint, and a
much smaller build trains through train.py end to end (`--model PATH --dataset arith`)."""

import json

import pytest

import tasks
import train
import verify
from toy import tiny_lm


def test_every_worked_solution_is_correct_by_verify():
    for p in tasks.arith_problems("test", 50) + tasks.arith_problems("train", 50):
        terms = tuple(int(t) for t in p["problem"][len("Compute "):-1].split(" + "))
        solutions = tasks.all_solutions(terms)
        assert len(solutions) == 6  # 3! addition orders: several valid paths per problem
        for s in solutions:  # every addition order reaches the gold answer
            assert verify.reward(s, p["answer"]) == 1.0
        assert verify.reward(solutions[0].replace(p["answer"], str(int(p["answer"]) + 1)), p["answer"]) == 0.0


def test_train_and_test_splits_are_disjoint_as_multisets():
    key = lambda p: tuple(sorted(p["problem"][len("Compute "):-1].split(" + ")))  # noqa: E731
    train_keys = {key(p) for p in tasks.arith_problems("train")}
    test_keys = {key(p) for p in tasks.arith_problems("test")}
    assert test_keys and not train_keys & test_keys  # "17 + 45 + 23" never leaks "23 + 45 + 17"


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
