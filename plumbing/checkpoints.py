"""A training run's folder: one run at a time, atomic checkpoints, a safe and exact resume.

Used by train.py; runfolder.py decides what a run may write into and delete. Layout of `--out`:
    apo_run.json           the run mark: this folder is a run's (runfolder.MARK_FILE)
    .lock                  held (flock) by the run writing here; holds its pid
    config.json            the resolved config of the run
    metrics.jsonl          one JSON object per step (keys in README "Metrics")
    curves.png             the metrics drawn by curves.py, refreshed at every checkpoint
    checkpoint-STEP/       save_pretrained model + tokenizer, and trainer_state.pt
    final/                 save_pretrained model + tokenizer after the last step

Guarantees (tests/test_checkpoints.py, tests/test_robustness.py):
1. One run per folder, and only its own folder: runfolder.claim_out (its docstring has the rules).
2. A checkpoint is written under NAME.tmp and renamed into place, so a crash (kill -9, a full
   disk) never leaves a half-written checkpoint and never touches the previous one; old
   checkpoints are deleted only after the new one is in place, and only older ones.
3. Nothing non-finite is saved: `require_finite` stops a step whose loss or gradient norm is
   NaN/inf before the optimizer step, and every save first checks that the weights are finite.
4. trainer_state.pt is read with `torch.load(weights_only=True)`: tensors and plain containers
   only, so a planted pickle cannot run code.
5. Resume picks the newest checkpoint that loads completely: its files are regular files (never a
   link, a pipe or a device: nothing can hang), config.json is a model config, the weights cover
   their headers, trainer_state.pt has a plausible size and holds a checkpoint's state. A newer
   one that does not is renamed checkpoint-STEP.incomplete (kept for a person to look at,
   invisible to rotation) and the run says so (also one whose model or tokenizer does not load:
   train.py); when none is left, one sentence refuses the resume. A checkpoint's step comes from
   its folder's name, used as is to load, rename and delete it. metrics.jsonl loses its lines
   past the checkpoint's step.
   Settings that define the run cannot change on --resume (RESUME_FIXED, check_resume_config);
   lr and weight decay can, and are written into the optimizer (apply_optimizer_settings).
Resuming from checkpoint-STEP gives the same weights as a run that never stopped
(tests/test_train.py): the optimizer state, the step and every RNG state are saved.

Departures: none (the paper, METHOD.md, does not describe checkpointing).
"""

import json
import math
import os
import pickle
import shutil
import stat
import zipfile

import torch

from plumbing.runfolder import (  # noqa: F401 - also checkpoints' API
    CHECKPOINT_NAME,
    FINAL,
    RunError,
    check_out_dir,
    checkpoint_folders,
    claim_out,
    free_name,
    regular_size,
)

STATE_FILE = "trainer_state.pt"  # optimizer, step, RNG states and config, beside the weights
JSON_MAX_BYTES = 16 << 20  # a checkpoint's config.json or weight index: a few kB in practice
STATE_BYTES_PER_WEIGHT_BYTE = 4  # AdamW's two float32 moments are twice the float32 weights: 4x is ample
# Settings that define the run: its objective, data, data order and sampling. A resumed run that
# changed one would be a different experiment under the old run's name.
RESUME_FIXED = ("model", "dataset", "split", "levels", "max_prompt_tokens", "loss", "beta", "lam", "top_k",
                "kl_coef", "clip_low", "clip_high", "agg", "no_std", "group_size", "prompts_per_step",
                "max_new_tokens", "temperature", "top_p", "seed", "dtype")
RESUME_APPLIED = ("lr", "weight_decay")  # AdamW hyper-parameters, set in the loaded param groups
# Everything else (steps, save/eval/sample cadence, memory and speed knobs, max_grad_norm, read at
# every step) may change; a change of gen_batch_size or sampler changes the random draws, so the
# resumed run is then no longer bit-equal to one that never stopped.


class SaveError(RunError):
    """A save failed (full disk, read-only folder); the previous checkpoints are untouched."""


class NonFiniteError(RunError):
    """A loss, gradient norm or weight is NaN or inf; nothing was stepped or saved."""


class UnsafeCheckpoint(RunError):
    """trainer_state.pt holds Python objects that could run code when loaded."""


class IncompleteCheckpoint(RunError):
    """A checkpoint folder whose weights or trainer_state.pt are missing or truncated."""


def checkpoint_steps(out):
    """Steps of the checkpoint-STEP folders in `out`, oldest first (runfolder.checkpoint_folders)."""
    return list(checkpoint_folders(out))


# --------------------------------------------------------------------------------- saving

def require_finite(step, **values):
    """Stop (NonFiniteError) when any named value, such as the loss or grad_norm, is NaN or inf."""
    bad = [f"{name} is {value}" for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise NonFiniteError(f"step {step}: {' and '.join(bad)}, so training stopped before the optimizer "
                             "step and nothing was saved; lower --lr or --max-grad-norm and --resume")


def require_finite_weights(model, what):
    """NonFiniteError when a parameter of `model` holds NaN or inf; `what` names the save refused."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise NonFiniteError(f"the weights hold NaN or inf, so {what} was not saved and no checkpoint "
                             "was deleted; lower --lr or --max-grad-norm and --resume")


def save_atomic(path, model, tokenizer, state=None):
    """Write to path.tmp, then rename: a crash mid-save never leaves a half checkpoint, and a
    failed save (SaveError) leaves no .tmp and every existing folder as it was."""
    require_finite_weights(model, os.path.basename(path))
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if state is not None:
            torch.save(state, os.path.join(tmp, STATE_FILE))
    except Exception as e:  # a full disk raises OSError, or SafetensorError from the Rust writer
        shutil.rmtree(tmp, ignore_errors=True)
        raise SaveError(f"could not write {path} ({type(e).__name__}: {str(e)[:120]}); the earlier "
                        "checkpoints are intact: free space and rerun with --resume") from None
    _move_into_place(tmp, path)


def _move_into_place(tmp, path):
    """Rename tmp to path; an existing path is moved aside first and deleted only afterwards."""
    old = path + ".old"
    try:
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as e:
        raise SaveError(f"could not move {tmp} into place ({e.strerror}); the earlier checkpoints are "
                        "intact: rerun with --resume") from None
    shutil.rmtree(old, ignore_errors=True)


def rng_state():
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out, step, model, tokenizer, optimizer, config, keep):
    """checkpoint-STEP with everything --resume needs; then keep only the newest `keep` (0: all).

    Only checkpoints older than `step` are deleted, and only once the new one is in place.
    """
    save_atomic(os.path.join(out, f"checkpoint-{step}"), model, tokenizer,
                {"optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(), "config": config})
    older = [name for s, name in checkpoint_folders(out).items() if s < step]  # exact names, no links
    for name in older[:len(older) - (keep - 1)] if keep else []:
        shutil.rmtree(os.path.join(out, name))


def write_final_from(checkpoint, out):
    """OUT/final/ as a copy of a checkpoint's model and tokenizer (for a run killed while saving final/)."""
    final, tmp = os.path.join(out, FINAL), os.path.join(out, FINAL + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(checkpoint, tmp, ignore=shutil.ignore_patterns(STATE_FILE))
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SaveError(f"could not write {final} from {checkpoint} ({e}); free space and rerun") from None
    _move_into_place(tmp, final)
    print(f"wrote the missing {final} from {checkpoint}")


# -------------------------------------------------------------------------------- resuming

def _regular_file(path, what):
    """The size of `path`, a regular file (runfolder.regular_size); IncompleteCheckpoint otherwise."""
    size = regular_size(path)
    if size is None:
        why = "not a regular file" if os.path.lexists(path) else "missing"
        raise IncompleteCheckpoint(f"{what} is {why}")
    return size


def load_state(checkpoint, max_bytes=None):
    """trainer_state.pt of a checkpoint folder, read with weights_only=True (no code can run).

    UnsafeCheckpoint when the file holds other Python objects; IncompleteCheckpoint when it is
    missing, not a regular file, empty or larger than `max_bytes`, unreadable, or not a state.
    """
    path = os.path.join(checkpoint, STATE_FILE)
    size = _regular_file(path, STATE_FILE)
    if size == 0 or (max_bytes and size > max_bytes):
        raise IncompleteCheckpoint(f"{STATE_FILE} has an implausible size ({size} bytes)")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: anything else is not our state
        raise IncompleteCheckpoint(f"{STATE_FILE} is not a torch.save archive")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise UnsafeCheckpoint(f"{path} holds Python objects other than tensors and plain data, which "
                               "could run code, so it was not loaded; delete that checkpoint if you did "
                               "not write it") from None
    except Exception as e:  # noqa: BLE001 - a text file, a zip of something else: each fails its own way
        raise IncompleteCheckpoint(f"{STATE_FILE} is unreadable ({type(e).__name__})") from None
    if not _is_state(state):
        raise IncompleteCheckpoint(f"{STATE_FILE} does not hold an optimizer, step and RNG state")
    return state


def _is_state(state):
    """Has `state` the shape save_checkpoint gives it (what train.py's restore will read)?"""
    if not (isinstance(state, dict) and type(state.get("step")) is int and isinstance(state.get("rng"), dict)
            and isinstance(state.get("config", {}), dict) and isinstance(state.get("optimizer"), dict)):
        return False
    opt, cpu = state["optimizer"], state["rng"].get("cpu")
    groups = opt.get("param_groups")
    return (isinstance(cpu, torch.Tensor) and cpu.dtype == torch.uint8 and isinstance(opt.get("state"), dict)
            and isinstance(groups, list) and bool(groups)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups))


def _only_files(folder, prefix=""):
    """IncompleteCheckpoint unless everything below `folder` is a regular file or a real folder
    (save_pretrained writes additional_chat_templates/): nothing else is ever opened."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            _only_files(path, prefix + name + "/")
        else:
            _regular_file(path, prefix + name)


def _read_json(path, name):
    """A small JSON file of a checkpoint (at most JSON_MAX_BYTES), or IncompleteCheckpoint."""
    if _regular_file(path, name) > JSON_MAX_BYTES:
        raise IncompleteCheckpoint(f"{name} is larger than {JSON_MAX_BYTES >> 20} MB")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError):
        raise IncompleteCheckpoint(f"{name} is not readable JSON") from None


def check_weights(checkpoint):
    """IncompleteCheckpoint unless every file is a regular file, config.json is a model config and
    every safetensors file covers its header; returns the weights' size in bytes."""
    from safetensors import SafetensorError, safe_open  # a dependency of transformers
    _only_files(checkpoint)
    config = _read_json(os.path.join(checkpoint, "config.json"), "config.json")
    if not (isinstance(config, dict) and isinstance(config.get("model_type"), str)):
        raise IncompleteCheckpoint("config.json is not a model config (no model_type)")
    index = os.path.join(checkpoint, "model.safetensors.index.json")
    if os.path.lexists(index):
        weight_map = _read_json(index, "model.safetensors.index.json")
        weight_map = weight_map.get("weight_map") if isinstance(weight_map, dict) else None
        if not (isinstance(weight_map, dict) and weight_map
                and all(isinstance(v, str) for v in weight_map.values())):
            raise IncompleteCheckpoint("model.safetensors.index.json has no weight map")
        files = sorted(set(weight_map.values()))
    else:
        files = ["model.safetensors"]
    for name in files:
        if os.path.basename(name) != name:
            raise IncompleteCheckpoint(f"the weight index names {name!r}, outside the checkpoint")
        _regular_file(os.path.join(checkpoint, name), name)
        try:
            with safe_open(os.path.join(checkpoint, name), "pt"):  # checks the file covers its header
                pass
        except (OSError, SafetensorError) as e:
            raise IncompleteCheckpoint(f"{name} is missing or truncated ({type(e).__name__})") from None
    return sum(os.path.getsize(os.path.join(checkpoint, name)) for name in files)


def find_resume_point(out, say=print):
    """(path, step, state) of the newest checkpoint that loads completely, or (None, 0, None) when
    `out` holds no checkpoint; RunError when it holds some and none loads.

    A checkpoint that does not load completely is renamed checkpoint-STEP.incomplete (a free
    name: nothing is deleted), so rotation never keeps it in place of a good one, and `say`
    reports it. UnsafeCheckpoint propagates: a state that would run code stops the run rather
    than being skipped quietly.
    """
    folders = checkpoint_folders(out)
    for step, name in reversed(folders.items()):
        path = os.path.join(out, name)
        try:
            weight_bytes = check_weights(path)
            state = load_state(path, max_bytes=STATE_BYTES_PER_WEIGHT_BYTE * weight_bytes + (64 << 20))
            if state["step"] != step:
                raise IncompleteCheckpoint(f"{STATE_FILE} says step {state['step']}")
            return path, step, state
        except IncompleteCheckpoint as e:
            set_aside(path, str(e), say)
    if folders:
        raise RunError(f"no checkpoint in {out!r} loads completely (each was moved to *.incomplete); "
                       "start again with --overwrite, or give another --out")
    return None, 0, None


def set_aside(checkpoint, why, say=print):
    """Rename a checkpoint that does not load to checkpoint-STEP.incomplete (a free name: nothing
    is deleted), so that resume and rotation pass it by, and say so."""
    aside = free_name(checkpoint.rstrip(os.sep) + ".incomplete")
    os.replace(checkpoint, aside)
    say(f"note: {os.path.basename(checkpoint)} is incomplete ({why}); moved it to {os.path.basename(aside)} "
        "and looking at the one before")


def resume_point(out, config, say=print):
    """(checkpoint, step, state) for --resume, or (None, 0, None) when `out` holds none; RunError
    when `config` (this command line, a dict) changes a RESUME_FIXED setting of the checkpoint's."""
    ckpt, step, state = find_resume_point(out, say)
    if ckpt is None:
        say(f"note: --resume found no checkpoint in {out}; starting from step 0")
        return None, 0, None
    changes = check_resume_config(state.get("config", {}), config)
    say(f"resuming from {ckpt}" + (f"; changed {', '.join(changes)}" if changes else ""))
    return ckpt, step, state


def trim_metrics(path, step):
    """Keep the lines of metrics.jsonl up to `step` (a crash after logging, before saving, left
    later ones that the resumed run writes again) and drop unreadable lines; returns how many went."""
    if not os.path.isfile(path):
        return 0
    with open(path, errors="replace") as f:
        lines = f.read().splitlines()
    kept = [line + "\n" for line in lines if (s := _step_of(line)) is not None and s <= step]
    if len(kept) < len(lines):
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
    return len(lines) - len(kept)


def _step_of(line):
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row.get("step") if isinstance(row, dict) and isinstance(row.get("step"), int) else None


def resume_conflicts(saved, new):
    """The RESUME_FIXED settings that differ between a checkpoint's config and this run's, as
    "--flag old -> new" strings (keys either config lacks are skipped).

    >>> resume_conflicts({"loss": "apo", "lr": 1e-6, "seed": 0}, {"loss": "grpo", "lr": 0.5, "seed": 0})
    ['--loss apo -> grpo']
    """
    return [f"--{k.replace('_', '-')} {saved[k]} -> {new[k]}" for k in RESUME_FIXED
            if k in saved and k in new and saved[k] != new[k]]


def check_resume_config(saved, new):
    """The changes a resumed run makes to its checkpoint's settings, as "--flag old -> new" strings
    for one printed line; RunError naming every RESUME_FIXED flag among them.

    >>> check_resume_config({"steps": 100, "lr": 1e-6}, {"steps": 200, "lr": 1e-6, "resume": True})
    ['--steps 100 -> 200']
    """
    conflicts = resume_conflicts(saved, new)
    if conflicts:
        raise RunError(f"--resume cannot change {', '.join(conflicts)}: they define the run; pass the "
                       "checkpoint's values, or start a new run in another --out")
    return [f"--{k.replace('_', '-')} {saved[k]} -> {new[k]}" for k in new
            if k in saved and saved[k] != new[k] and k not in ("resume", "overwrite")]


def restore(optimizer, state, config, checkpoint):
    """Load a resumed run's optimizer and RNG states and apply this command line's lr and weight
    decay; RunError (one sentence) when the state does not fit this model."""
    try:
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as e:
        raise RunError(f"the optimizer or RNG state in {checkpoint!r} does not fit this model "
                       f"({type(e).__name__}); move that checkpoint out of the folder to resume from the one "
                       "before") from None
    apply_optimizer_settings(optimizer, config)


def apply_optimizer_settings(optimizer, new):
    """Write this command line's RESUME_APPLIED values (lr, weight decay) into the param groups,
    which optimizer.load_state_dict has just set back to the checkpoint's."""
    for group in optimizer.param_groups:
        group.update({k: new[k] for k in RESUME_APPLIED if k in new})
