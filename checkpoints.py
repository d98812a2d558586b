"""A training run's folder: atomic checkpoints, the newest complete one, RNG state for resume.

Used by train.py only. Layout of `--out`:
    config.json            the resolved config of the run
    metrics.jsonl          one JSON object per step (keys in README "Metrics")
    checkpoint-STEP/       save_pretrained model + tokenizer, and trainer_state.pt
    final/                 save_pretrained model + tokenizer after the last step

Guarantees: a checkpoint is written under `NAME.tmp` and renamed into place, so a crash never
leaves a half-written checkpoint; old checkpoints are deleted only after the new one is in
place. Resuming from checkpoint-STEP gives the same weights as a run that never stopped
(tests/test_train.py): the optimizer state, the step and every RNG state are saved.

Departures: none (the paper does not describe its checkpointing).
"""

import os
import shutil

import torch

STATE_FILE = "trainer_state.pt"  # optimizer, step, RNG states and config, beside the weights


def checkpoint_steps(out):
    """Steps of the checkpoint-STEP folders in `out`, oldest first."""
    if not os.path.isdir(out):
        return []
    return sorted(int(d.split("-")[1]) for d in os.listdir(out)
                  if d.startswith("checkpoint-") and d.split("-")[1].isdigit())


def latest_checkpoint(out):
    """(path, step) of the newest checkpoint in `out`, or (None, 0)."""
    steps = checkpoint_steps(out)
    return (os.path.join(out, f"checkpoint-{steps[-1]}"), steps[-1]) if steps else (None, 0)


def save_atomic(path, model, tokenizer, state=None):
    """Write to path.tmp, then rename: a crash mid-save never leaves a half checkpoint."""
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if state is not None:
        torch.save(state, os.path.join(tmp, STATE_FILE))
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def rng_state():
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out, step, model, tokenizer, optimizer, config, keep):
    """checkpoint-STEP with everything --resume needs; then keep only the newest `keep` (0: all)."""
    save_atomic(os.path.join(out, f"checkpoint-{step}"), model, tokenizer,
                {"optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(), "config": config})
    for old in checkpoint_steps(out)[:-keep] if keep else []:  # only once the new one is in place
        shutil.rmtree(os.path.join(out, f"checkpoint-{old}"))


def load_state(checkpoint):
    """trainer_state.pt of a checkpoint folder."""
    return torch.load(os.path.join(checkpoint, STATE_FILE), weights_only=False)
