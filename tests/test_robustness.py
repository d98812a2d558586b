"""Hostile input to train.py, curves.py and the TRL example: one `error: ...` line and exit 2, or the
right result; never a traceback, lost checkpoint, NaN weights or code run from a checkpoint.

    HF_HUB_OFFLINE=1 python -m pytest -q tests/test_robustness.py

Each test is one item of the reliability list in README.md, on the tiny random Qwen2 (a few
seconds). checkpoints.py's own guarantees are tested in tests/test_checkpoints.py.
"""

import errno
import importlib.util
import json
import os
import shutil

import pytest
import torch
from run_helpers import args, exits_2, steps_logged
from transformers import AutoModelForCausalLM, PreTrainedModel

import train
from plumbing import checkpoints, curves

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def weights(folder):
    return AutoModelForCausalLM.from_pretrained(str(folder)).state_dict()


# ----------------------------------------------------------------------------------- flags

@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--beta", "inf"), ("--lam", "inf"),
                                         ("--weight-decay", "inf"), ("--max-grad-norm", "nan"),
                                         ("--kl-coef", "inf"), ("--temperature", "inf"), ("--top-p", "nan"),
                                         ("--clip-low", "nan"), ("--lr", "nan")])
def test_a_non_finite_float_flag_is_refused(flag, value, random_model_dir, toy_problems_file, tmp_path,
                                            capsys):
    err = exits_2(args(random_model_dir, toy_problems_file, tmp_path, flag, value), capsys)
    assert f"{flag} must be a finite number" in err
    assert not os.path.exists(tmp_path / "checkpoint-1")


@pytest.mark.parametrize("flag, value", [("--max-grad-norm", "-1"), ("--max-grad-norm", "0"),
                                         ("--weight-decay", "-0.1"), ("--eval-limit", "-1")])
def test_a_flag_that_would_reverse_or_freeze_training_is_refused(flag, value, random_model_dir,
                                                                toy_problems_file, tmp_path, capsys):
    assert flag in exits_2(args(random_model_dir, toy_problems_file, tmp_path, flag, value), capsys)


# ------------------------------------------------------------------------------ the folder

def test_a_fresh_run_refuses_an_out_with_checkpoints_and_overwrite_starts_again(
        random_model_dir, toy_problems_file, tmp_path, capsys):
    checkpoints.claim_out(str(tmp_path)).close()  # an older, longer run, whose folder this is
    (tmp_path / "checkpoint-40").mkdir()  # rotation would keep it and delete ours
    assert "pass --resume" in exits_2(args(random_model_dir, toy_problems_file, tmp_path), capsys)
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--overwrite"))
    assert checkpoints.checkpoint_steps(str(tmp_path)) == [1, 2]


def test_a_second_run_on_the_same_out_is_refused(random_model_dir, toy_problems_file, tmp_path, capsys):
    with checkpoints.claim_out(str(tmp_path)):  # a first run, still going
        assert "another run" in exits_2(args(random_model_dir, toy_problems_file, tmp_path), capsys)
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_an_out_that_is_a_file_or_below_one_is_refused(where, random_model_dir, toy_problems_file, tmp_path,
                                                       capsys):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "a file" else tmp_path / "f" / "run"
    assert where in exits_2(args(random_model_dir, toy_problems_file, out), capsys)


def test_a_corrupt_model_safetensors_is_one_error_line(random_model_dir, toy_problems_file, tmp_path, capsys):
    """Needs loading.load_model_and_tokenizer to turn every from_pretrained failure into ModelLoadError."""
    bad = tmp_path / "model"
    shutil.copytree(random_model_dir, bad)
    os.truncate(bad / "model.safetensors", os.path.getsize(bad / "model.safetensors") // 2)
    assert "could not load" in exits_2(args(str(bad), toy_problems_file, tmp_path / "o"), capsys)


# ------------------------------------------------------------------------------- resuming

def test_a_planted_pickle_stops_the_resume_and_never_runs(random_model_dir, toy_problems_file, tmp_path,
                                                          capsys):
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--steps", "1"))
    marker = tmp_path / "code-ran"
    torch.save({"optimizer": PlantedCode(str(marker)), "step": 1, "rng": {}},
               tmp_path / "checkpoint-1" / checkpoints.STATE_FILE)
    err = exits_2(args(random_model_dir, toy_problems_file, tmp_path, "--resume", "--steps", "2"), capsys)
    assert "could run code" in err
    assert not marker.exists()


class PlantedCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_resume_after_a_crash_between_log_and_save_logs_each_step_once(random_model_dir, toy_problems_file,
                                                                        tmp_path):
    train.main(args(random_model_dir, toy_problems_file, tmp_path))
    shutil.rmtree(tmp_path / "checkpoint-2")  # step 2 was logged, then the run died before saving it
    shutil.rmtree(tmp_path / "final")
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--steps", "3", "--resume"))
    assert steps_logged(tmp_path) == [1, 2, 3]


def test_a_kill_during_the_final_save_is_repaired_by_resume(random_model_dir, toy_problems_file, tmp_path,
                                                           capsys):
    train.main(args(random_model_dir, toy_problems_file, tmp_path))
    shutil.rmtree(tmp_path / "final")
    (tmp_path / "final.tmp").mkdir()  # what the kill left
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--resume"))
    assert "wrote the missing" in capsys.readouterr().out
    a, b = weights(tmp_path / "final"), weights(tmp_path / "checkpoint-2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "final.tmp").exists()


def test_a_truncated_trainer_state_falls_back_to_the_previous_checkpoint(random_model_dir, toy_problems_file,
                                                                         tmp_path, capsys):
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--keep-checkpoints", "0"))
    state = tmp_path / "checkpoint-2" / checkpoints.STATE_FILE
    os.truncate(state, os.path.getsize(state) // 2)
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--steps", "3", "--resume"))
    assert "checkpoint-2 is incomplete" in capsys.readouterr().out
    assert steps_logged(tmp_path) == [1, 2, 3]
    assert checkpoints.load_state(str(tmp_path / "checkpoint-3"))["step"] == 3


def test_resume_refuses_a_changed_objective(random_model_dir, toy_problems_file, tmp_path, capsys):
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--steps", "1"))
    err = exits_2(args(random_model_dir, toy_problems_file, tmp_path, "--resume", "--loss", "grpo"), capsys)
    assert "cannot change --loss apo -> grpo" in err


def test_resume_applies_and_reports_a_new_lr(random_model_dir, toy_problems_file, tmp_path, capsys):
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--steps", "1"))
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--resume", "--lr", "0.5"))
    assert "--lr 0.001 -> 0.5" in capsys.readouterr().out
    groups = checkpoints.load_state(str(tmp_path / "checkpoint-2"))["optimizer"]["param_groups"]
    assert all(g["lr"] == 0.5 for g in groups)


# ------------------------------------------------------------------------ a step that breaks

@pytest.mark.parametrize("what", ["loss", "grad_norm"])
def test_a_nan_step_stops_before_the_update_and_keeps_the_last_checkpoint(what, random_model_dir,
                                                                          toy_problems_file, tmp_path,
                                                                          monkeypatch, capsys):
    calls = []
    policy_loss, clip = train.apo.policy_loss, torch.nn.utils.clip_grad_norm_

    def nan_loss_on_step_2(*a, **k):
        loss, m = policy_loss(*a, **k)
        calls.append(1)
        return (loss * float("nan") if len(calls) > 1 else loss), m

    def nan_norm_on_step_2(*a, **k):
        calls.append(1)
        norm = clip(*a, **k)
        return norm * float("nan") if len(calls) > 1 else norm

    if what == "loss":
        monkeypatch.setattr(train.apo, "policy_loss", nan_loss_on_step_2)
    else:
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", nan_norm_on_step_2)
    err = exits_2(args(random_model_dir, toy_problems_file, tmp_path, "--keep-checkpoints", "1"), capsys)
    assert f"step 2: {what} is nan" in err
    assert checkpoints.checkpoint_steps(str(tmp_path)) == [1] and not (tmp_path / "final").exists()
    assert steps_logged(tmp_path) == [1]
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "checkpoint-1").values())


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one(random_model_dir, toy_problems_file, tmp_path,
                                                            monkeypatch, capsys):
    save = PreTrainedModel.save_pretrained
    calls = []

    def full_on_second_save(self, path, *a, **k):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(self, path, *a, **k)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full_on_second_save)
    assert "No space left" in exits_2(args(random_model_dir, toy_problems_file, tmp_path,
                                           "--keep-checkpoints", "1"), capsys)
    assert sorted(os.listdir(tmp_path)) == sorted([".lock", "apo_run.json", "checkpoint-1", "config.json",
                                                   "metrics.jsonl", "curves.png"])
    checkpoints.check_weights(str(tmp_path / "checkpoint-1"))


def test_a_huge_problem_is_dropped_before_it_is_tokenized(random_model_dir, tmp_path, monkeypatch):
    problems = tmp_path / "p.jsonl"
    rows = [{"problem": "What is 2 + 3?", "answer": "5"}, {"problem": "1 + " * 200_000, "answer": "1"}]
    problems.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen, format_prompt = [], train.prompts.format_prompt

    def recording(tokenizer, problem):
        seen.append(len(problem))
        return format_prompt(tokenizer, problem)

    monkeypatch.setattr(train.prompts, "format_prompt", recording)
    train.main(args(random_model_dir, str(problems), tmp_path / "o", "--steps", "1"))
    assert max(seen) < 1000  # the 800k-character problem never reached the tokenizer


# ---------------------------------------------------------------------------------- curves

def test_curves_png_follows_the_run(random_model_dir, toy_problems_file, tmp_path):
    train.main(args(random_model_dir, toy_problems_file, tmp_path, "--steps", "1"))
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_curves_read_a_running_run_and_overlay_several(tmp_path, capsys):
    runs = []
    for name, n in (("apo", 30), ("grpo", 5)):
        run = tmp_path / name
        run.mkdir()
        rows = [{"step": s, "reward_mean": s / n, "pass@8": 0.5, "entropy": 1.0, "sample": {"x": 1}}
                for s in range(1, n + 1)]
        rows.append(dict(rows[-1], reward_mean=-1.0))  # a step logged twice: the later line wins
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 9')
        runs.append(str(run))
    assert [r["reward_mean"] for r in curves.read_metrics(runs[1])] == [0.2, 0.4, 0.6, 0.8, -1.0]
    assert curves.main([*runs, "-o", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"
    assert curves.main([str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# ----------------------------------------------------------------------------- TRL example

@pytest.fixture(scope="module")
def trl_example():
    pytest.importorskip("trl", reason="TRL is not installed: pip install -r requirements-trl.txt")
    path = os.path.join(ROOT, "multi_gpu_and_dev", "trl_apo_cpu.py")
    spec = importlib.util.spec_from_file_location("trl_apo_cpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", ["reward", "apo_beta inf", "learning_rate nan", "limit -1", "dataset folder",
                                  "output_dir a file", "corrupt weights"])
def test_the_trl_example_exits_2_with_one_line_on_bad_input(case, trl_example, random_model_dir, tmp_path,
                                                            capsys):
    (tmp_path / "file").write_text("x")
    bad = tmp_path / "model"
    shutil.copytree(random_model_dir, bad)
    os.truncate(bad / "model.safetensors", 100)
    extra = {"reward": ["--reward", "nope"], "apo_beta inf": ["--apo_beta", "inf"],
             "learning_rate nan": ["--learning_rate", "nan"], "limit -1": ["--limit", "-1"],
             "dataset folder": ["--dataset", str(tmp_path)], "output_dir a file": [],
             "corrupt weights": ["--model", str(bad)]}[case]
    out = tmp_path / ("file" if case == "output_dir a file" else "out")
    with pytest.raises(SystemExit) as e:
        trl_example.main(["--output_dir", str(out), "--use_cpu", "true", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("error: ") and not any("Traceback" in x for x in err)
