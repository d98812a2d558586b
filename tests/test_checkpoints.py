"""checkpoints.py: the run folder's lock, atomic saves, a safe resume. One property per test, CPU, fast.

    HF_HUB_OFFLINE=1 python -m pytest -q tests/test_checkpoints.py

The tests save the tiny random Qwen2 (tests/conftest.py) with a real AdamW state, and then damage
the folder the way a crash, a full disk or a hostile file would.
"""

import errno
import hashlib
import json
import os

import pytest
import torch

from plumbing import checkpoints, loading

CONFIG = {"loss": "apo", "lr": 1e-3, "seed": 0, "steps": 3, "resume": False}


@pytest.fixture
def trained(random_model_dir):
    """(model, tokenizer, optimizer) after one AdamW step, so the optimizer has per-parameter state."""
    model, tokenizer = loading.load_model_and_tokenizer(random_model_dir, dtype="float32", device="cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()
    return model, tokenizer, optimizer


def save(out, step, trained, keep=0, config=CONFIG):
    model, tokenizer, optimizer = trained
    checkpoints.save_checkpoint(str(out), step, model, tokenizer, optimizer, config, keep)
    return out / f"checkpoint-{step}"


def folder_digest(path):
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in sorted(os.listdir(path))}


class PlantedCode:
    """A pickle that makes a folder when loaded with weights_only=False: stands for any code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


# ---------------------------------------------------------------------------- trainer_state.pt

def test_planted_pickle_in_trainer_state_is_refused_and_never_runs(trained, tmp_path):
    ckpt = save(tmp_path, 1, trained)
    marker = str(tmp_path / "code-ran")
    torch.save({"optimizer": PlantedCode(marker), "step": 1, "rng": {}}, ckpt / checkpoints.STATE_FILE)
    with pytest.raises(checkpoints.UnsafeCheckpoint, match="could run code"):
        checkpoints.load_state(str(ckpt))
    with pytest.raises(checkpoints.UnsafeCheckpoint):  # resume stops; it does not skip to an older one
        checkpoints.find_resume_point(str(tmp_path), say=lambda line: None)
    assert not os.path.exists(marker)
    torch.load(ckpt / checkpoints.STATE_FILE, weights_only=False)  # the plant is real: the old load ran it
    assert os.path.isdir(marker)


def test_real_state_loads_with_weights_only_optimizer_and_rng_included(trained, tmp_path):
    ckpt = save(tmp_path, 1, trained)
    expected = torch.rand(5)  # the draw right after the save
    state = checkpoints.load_state(str(ckpt))
    assert state["step"] == 1 and state["config"] == CONFIG
    _, _, optimizer = trained
    before = optimizer.state_dict()
    optimizer.load_state_dict(state["optimizer"])
    for k, v in before["state"].items():
        assert torch.equal(optimizer.state_dict()["state"][k]["exp_avg"], v["exp_avg"])
    checkpoints.set_rng_state(state["rng"])
    assert torch.equal(torch.rand(5), expected)


def test_a_suffixed_folder_is_not_read_as_a_step(trained, tmp_path):
    save(tmp_path, 3, trained)
    for name in ("checkpoint-30-backup", "checkpoint-40.tmp", "checkpoint-50.incomplete", "checkpoint-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "checkpoint-60").write_text("a file, not a folder")
    assert checkpoints.checkpoint_steps(str(tmp_path)) == [3]
    assert checkpoints.find_resume_point(str(tmp_path))[1] == 3


# ------------------------------------------------------------------------------------- saving

def test_rotation_deletes_only_checkpoints_older_than_the_new_one(trained, tmp_path):
    for step in (1, 2):
        save(tmp_path, step, trained)
    (tmp_path / "checkpoint-50").mkdir()  # newer by number (another run's): never counted as newest
    save(tmp_path, 3, trained, keep=2)
    assert checkpoints.checkpoint_steps(str(tmp_path)) == [2, 3, 50]


def test_a_full_disk_during_a_save_leaves_the_last_checkpoint_intact_and_no_tmp(trained, tmp_path,
                                                                                 monkeypatch):
    good = save(tmp_path, 1, trained)
    digest = folder_digest(good)
    model = trained[0]

    def disk_full(path, *args, **kwargs):
        os.makedirs(path, exist_ok=True)
        (open(os.path.join(path, "model.safetensors"), "wb")).write(b"\0" * 100)  # a partial write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save_pretrained", disk_full)
    for step in (2, 1):  # a new step, and the same step saved again
        with pytest.raises(checkpoints.SaveError, match="No space left"):
            save(tmp_path, step, trained, keep=1)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"]
    assert folder_digest(good) == digest
    checkpoints.check_weights(str(good))


def test_non_finite_weights_are_never_saved_and_nothing_is_rotated(trained, tmp_path):
    save(tmp_path, 1, trained)
    with torch.no_grad():
        next(trained[0].parameters())[0, 0] = float("nan")
    with pytest.raises(checkpoints.NonFiniteError, match="NaN or inf"):
        save(tmp_path, 2, trained, keep=1)
    with pytest.raises(checkpoints.NonFiniteError):
        checkpoints.save_atomic(str(tmp_path / "final"), trained[0], trained[1])
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-1"]


@pytest.mark.parametrize("values", [{"loss": float("nan"), "grad_norm": 1.0},
                                    {"loss": 0.5, "grad_norm": float("inf")}])
def test_require_finite_stops_on_a_nan_loss_or_an_inf_gradient_norm(values):
    with pytest.raises(checkpoints.NonFiniteError, match="step 7: .* is (nan|inf)"):
        checkpoints.require_finite(7, **values)
    checkpoints.require_finite(7, loss=0.5, grad_norm=1.0)  # finite: no error


def test_final_is_written_from_a_checkpoint_without_its_trainer_state(trained, tmp_path):
    ckpt = save(tmp_path, 2, trained)
    (tmp_path / "final.tmp").mkdir()  # what a kill during the final save leaves
    checkpoints.write_final_from(str(ckpt), str(tmp_path))
    final = tmp_path / "final"
    assert sorted(os.listdir(final)) == sorted(set(os.listdir(ckpt)) - {checkpoints.STATE_FILE})
    assert (final / "model.safetensors").read_bytes() == (ckpt / "model.safetensors").read_bytes()
    assert not (tmp_path / "final.tmp").exists()


# ----------------------------------------------------------------------------------- resuming

@pytest.mark.parametrize("damage", ["truncated state", "missing state", "truncated weights"])
def test_resume_falls_back_from_an_incomplete_checkpoint_and_says_so(damage, trained, tmp_path):
    for step in (1, 2):
        newest = save(tmp_path, step, trained)
    name = "model.safetensors" if damage == "truncated weights" else checkpoints.STATE_FILE
    if damage == "missing state":
        os.remove(newest / name)
    else:
        os.truncate(newest / name, os.path.getsize(newest / name) // 2)
    said = []
    path, step, state = checkpoints.find_resume_point(str(tmp_path), say=said.append)
    assert (step, state["step"], path) == (1, 1, str(tmp_path / "checkpoint-1"))
    assert len(said) == 1 and "checkpoint-2 is incomplete" in said[0]
    assert (tmp_path / "checkpoint-2.incomplete").is_dir()  # kept for a person, invisible to rotation
    assert checkpoints.checkpoint_steps(str(tmp_path)) == [1]


def test_metrics_past_the_checkpoint_and_half_lines_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 0.1}) + "\n" for s in (1, 2, 3, 4)]
    path.write_text("".join(lines) + '{"step": 5, "lo')  # a line cut by a crash
    assert checkpoints.trim_metrics(str(path), 2) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


def test_resume_refuses_a_changed_objective_and_applies_a_changed_lr(trained):
    with pytest.raises(checkpoints.RunError, match=r"cannot change --loss apo -> grpo, --seed 0 -> 1"):
        checkpoints.check_resume_config(CONFIG, CONFIG | {"loss": "grpo", "seed": 1})
    new = CONFIG | {"lr": 0.5, "steps": 9, "resume": True}
    assert checkpoints.check_resume_config(CONFIG, new) == ["--lr 0.001 -> 0.5", "--steps 3 -> 9"]
    optimizer = trained[2]
    checkpoints.apply_optimizer_settings(optimizer, new | {"weight_decay": 0.1})
    assert all(g["lr"] == 0.5 and g["weight_decay"] == 0.1 for g in optimizer.param_groups)


# --------------------------------------------------------------------------------- the folder

def test_a_second_run_cannot_claim_a_folder_in_use(tmp_path):
    with checkpoints.claim_out(str(tmp_path)):
        with pytest.raises(checkpoints.RunError, match=rf"another run \(pid {os.getpid()}\) is writing"):
            checkpoints.claim_out(str(tmp_path))
    checkpoints.claim_out(str(tmp_path)).close()  # released with the first run


def test_a_fresh_run_refuses_a_folder_with_checkpoints_unless_told_to_overwrite(tmp_path):
    checkpoints.claim_out(str(tmp_path)).close()  # an earlier run marked the folder as its own
    for name in ("checkpoint-40", "final", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(checkpoints.RunError, match="already holds checkpoint-40, final, metrics.jsonl; pass"):
        checkpoints.claim_out(str(tmp_path))
    checkpoints.claim_out(str(tmp_path), resume=True).close()
    checkpoints.claim_out(str(tmp_path), overwrite=True).close()
    assert sorted(os.listdir(tmp_path)) == [".lock", "apo_run.json", "notes"]  # the run's outputs only


@pytest.mark.parametrize("case", ["a file", "below a file", "not writable"])
def test_an_unusable_out_is_one_sentence(case, tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    out = {"a file": tmp_path / "f", "below a file": tmp_path / "f" / "run",
           "not writable": tmp_path / "ro"}[case]
    if case == "not writable":  # root writes anywhere, so the permission is faked
        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(checkpoints.RunError, match=case.split()[-1]) as e:
        checkpoints.claim_out(str(out))
    assert "\n" not in str(e.value)
