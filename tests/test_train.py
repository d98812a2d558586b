"""train.py end to end on a tiny model: every loss, checkpoints, resume, micro-batching, errors."""

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

import apo
import rollout
import train
from plumbing import batching, loading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fake_reward(text, gold):
    """A random tiny model never solves a problem; reward a property its samples vary in, so
    groups have mixed rewards and the losses have something to learn."""
    return float(len(text) % 2 == 0)


def base_args(model_dir, problems_file, out, *extra):
    return ["--model", model_dir, "--dataset", problems_file, "--out", str(out), "--steps", "2",
            "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "12", "--lr", "1e-3",
            "--micro-batch-size", "3", "--save-every", "1", *extra]


@pytest.mark.parametrize("loss", apo.KINDS)
def test_every_loss_trains_and_writes_metrics_and_a_loadable_checkpoint(
        loss, random_model_dir, toy_problems_file, tmp_path, monkeypatch):
    monkeypatch.setattr(train.verify, "reward", fake_reward)
    out = tmp_path / loss
    train.main(base_args(random_model_dir, toy_problems_file, out, "--loss", loss))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward_mean", "loss", "pass@1", "zero_std_frac", "response_len", "truncated_frac",
                "entropy", "clip_frac", "ratio_mean", "seconds"):
        assert all(key in r for r in rows), key
    expected = {"apo": ("r_anchor", "safe_mass"), "grpo_kl": ("kl",), "kl_on_wrong": ("kl",)}
    for key in expected.get(loss, ()):
        assert key in rows[0], key
    assert rows[0]["grad_norm"] > 0  # mixed rewards: a real gradient
    before = AutoModelForCausalLM.from_pretrained(random_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(str(out / "final")).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the weights moved
    assert os.path.isfile(out / "checkpoint-2" / "trainer_state.pt")
    assert not any(p.endswith(".tmp") for p in os.listdir(out))


def test_resume_continues_at_the_right_step_and_matches_an_uninterrupted_run(
        random_model_dir, toy_problems_file, tmp_path, monkeypatch):
    monkeypatch.setattr(train.verify, "reward", fake_reward)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train.main(base_args(random_model_dir, toy_problems_file, straight, "--steps", "3"))
    train.main(base_args(random_model_dir, toy_problems_file, resumed, "--steps", "2"))
    train.main(base_args(random_model_dir, toy_problems_file, resumed, "--steps", "3", "--resume"))
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # exactly one more step, appended
    state = torch.load(resumed / "checkpoint-3" / "trainer_state.pt", weights_only=False)
    assert state["step"] == 3
    assert all(s["step"] == 3 for s in state["optimizer"]["state"].values())  # Adam state carried over
    a = AutoModelForCausalLM.from_pretrained(str(straight / "final")).state_dict()
    b = AutoModelForCausalLM.from_pretrained(str(resumed / "final")).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_only_the_newest_checkpoints_are_kept(random_model_dir, toy_problems_file, tmp_path):
    train.main(base_args(random_model_dir, toy_problems_file, tmp_path, "--steps", "3",
                         "--keep-checkpoints", "1"))
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith("checkpoint")) == ["checkpoint-3"]


@pytest.mark.parametrize("agg", apo.AGGS)
def test_micro_batching_leaves_the_gradient_unchanged(agg, random_model_dir):
    model, tok = loading.load_model_and_tokenizer(random_model_dir)
    ref, _ = loading.load_model_and_tokenizer(random_model_dir)
    torch.manual_seed(0)
    roll = rollout.sample(model, tok, ["What is 2 + 3?", "What is 7 - 4?"], 4, max_new_tokens=10)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 0.0, 0.0, 2.0, -2.0])
    ref_out = rollout.reference_pass(ref, roll, top_k=4)
    grads = []
    width = roll.input_ids.shape[1]  # one row's padded tokens
    for flags in (["--micro-batch-size", "8"], ["--micro-batch-size", "3"], ["--micro-batch-size", "1"],
                  ["--micro-batch-tokens", str(3 * width)], ["--micro-batch-tokens", "1"]):  # token budgets
        cfg = train.parse_config(["--loss", "apo", "--agg", agg, *flags, "--max-new-tokens", "10",
                                  "--top-k", "4"])
        model.zero_grad()
        train.loss_and_backward(model, roll, adv, ref_out, cfg, _no_autocast)
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert grads[0].abs().sum() > 0
    for g in grads[1:]:
        assert torch.allclose(grads[0], g, atol=1e-6)


def test_token_budget_micro_batches_cover_every_row_once_within_the_budget(random_model_dir):
    model, tok = loading.load_model_and_tokenizer(random_model_dir)
    torch.manual_seed(1)
    roll = rollout.sample(model, tok, ["What is 2 + 3?", "Solve for x: 2x = 14."], 6, max_new_tokens=16)
    lengths = roll.completion_mask.sum(1)
    for budget, cap in ((10**6, 0), (120, 0), (120, 2), (1, 0)):
        groups = batching.micro_batches(roll, budget, cap)
        assert sorted(torch.cat(groups).tolist()) == list(range(12))  # every row exactly once
        for g in groups:
            mb = batching.trimmed(roll.rows(g))
            assert len(g) == 1 or mb.input_ids.numel() <= budget  # padded size within the budget
            assert cap == 0 or len(g) <= cap
            assert mb.completion_mask.sum() == lengths[g].sum()  # trimming dropped only padding
    assert len(batching.micro_batches(roll, 10**6)) == 1 and len(batching.micro_batches(roll, 1)) == 12


def _no_autocast():
    return torch.autocast("cpu", enabled=False)


@pytest.mark.parametrize("argv,message", [
    (["--group-size", "1"], "--group-size must be at least 2"),
    (["--top-k", "0"], "--top-k must be at least 1"),
    (["--loss", "ppo"], "--loss must be one of"),
    (["--model", "/no/such/folder"], "does not exist"),
    (["--dataset", "/no/such/file.jsonl"], "does not exist"),
])
def test_bad_input_exits_2_with_one_clear_sentence(argv, message, random_model_dir, toy_problems_file,
                                                    tmp_path, capsys):
    args = base_args(random_model_dir, toy_problems_file, tmp_path / "o") + argv
    with pytest.raises(SystemExit) as e:
        train.main(args)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_dataset_without_the_needed_fields_is_a_clear_error(random_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hello", "label": 1}\n')
    with pytest.raises(SystemExit):
        train.main(base_args(random_model_dir, str(bad), tmp_path / "o"))
    assert "needs a problem field" in capsys.readouterr().err


def test_cli_offline_hub_model_fails_fast_without_traceback(toy_problems_file, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    p = subprocess.run([sys.executable, "train.py", "--model", "Qwen2.5-Math-1.5B", "--dataset",
                        toy_problems_file, "--out", str(tmp_path / "o")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "error: could not load hub model 'Qwen/Qwen2.5-Math-1.5B'" in p.stderr
