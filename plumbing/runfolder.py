"""A run's folder (`--out`): what train.py may write into, and what `--overwrite` may delete.

Plumbing for train.py and checkpoints.py; nothing about the method lives here. The rules (README
"Reliability", tests/test_runfolder.py):
1. A run writes only into a new or empty folder, or into a folder that carries the run mark
   (MARK_FILE, written when a run claims a new or empty folder). A folder that holds anything
   else is refused before a byte is written in it.
2. `--out` may not be, contain, or lie inside the model folder or the data; and it may not be or
   lie inside any model folder (a checkpoint, a final/ model, a downloaded model). Paths are
   compared after resolving symbolic links, so a link cannot get around it.
3. A fresh run writes only where no run has written: a marked folder that already holds a run's
   outputs (checkpoints, final/, metrics.jsonl, ...) needs --resume or --overwrite.
4. `--overwrite` deletes only what a run writes (RUN_OUTPUTS and checkpoint-STEP folders, with
   their .tmp, .old and .incomplete forms), only in a marked folder, and never through a link:
   a run output that is a symbolic link stops every mode with one sentence.
5. One run at a time: an exclusive lock on OUT/.lock (flock), released when the process ends.
Every refusal is a RunError whose message is one sentence naming the folder.
"""

import json
import os
import re
import shutil
import stat
import time

try:  # Unix; elsewhere a run folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

PROJECT = "APO reference implementation (train.py)"
MARK_FILE = "apo_run.json"  # {"project": PROJECT, "run": folder name, "created": time}
LOCK_FILE = ".lock"
FINAL = "final"
CHECKPOINT_NAME = re.compile(r"checkpoint-(\d+)")  # the whole name: checkpoint-30-backup is not step 30
# A run output's name: a checkpoint or final/, as written or in one of its transient forms.
RUN_OUTPUT_NAME = re.compile(r"(checkpoint-\d+|final)(\.tmp|\.old|\.incomplete(-\d+)?)?"
                             r"|metrics\.jsonl(\.tmp)?|config\.json|curves\.png(\.tmp)?")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "trainer_state.pt")  # beside config.json, any of these makes a folder a model folder


class RunError(RuntimeError):
    """A run folder or checkpoint that cannot be used; the message is one sentence saying what to do."""


def check_out_dir(out, flag="--out"):
    """Create folder `out` (and its parents) or say in one sentence why it cannot be used."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"{flag} {out!r} is a file, not a folder; give a folder path")
    try:
        os.makedirs(out, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{flag} {out!r} lies below a file, not a folder; give another path") from None
    except OSError as e:
        raise RunError(f"cannot create {flag} {out!r} ({e.strerror}); give a writable folder") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise RunError(f"{flag} {out!r} is not writable; give a writable folder")


# ------------------------------------------------------------------------- what a folder is

def is_model_folder(path):
    """A saved model: config.json beside weights or a trainer state.

    >>> import tempfile; d = tempfile.mkdtemp(); is_model_folder(d)
    False
    >>> for name in ("config.json", "model.safetensors"): open(os.path.join(d, name), "w").close()
    >>> is_model_folder(d)
    True
    """
    return (os.path.isfile(os.path.join(path, "config.json"))
            and any(os.path.exists(os.path.join(path, w)) for w in WEIGHT_FILES))


def regular_size(path):
    """The size of `path` when it is a regular file (os.lstat: not a link, a pipe or a device, so
    opening it cannot block or write elsewhere), else None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def is_marked(folder):
    """Does `folder` carry a run mark of this project (a regular file that says so)?"""
    path = os.path.join(folder, MARK_FILE)
    size = regular_size(path)
    if size is None or size > 1 << 16:
        return False
    try:
        with open(path) as f:
            return json.load(f).get("project") == PROJECT
    except (OSError, ValueError, AttributeError):
        return False


def run_outputs(folder):
    """The entries of `folder` that a run writes (checkpoints, final/, metrics, ...), sorted."""
    return sorted(name for name in os.listdir(folder) if RUN_OUTPUT_NAME.fullmatch(name))


def checkpoint_folders(out):
    """{step: folder name} of the checkpoint-STEP folders in `out` (links and other names ignored);
    RunError when two folders name the same step (checkpoint-2 and checkpoint-002).

    >>> import tempfile; d = tempfile.mkdtemp()
    >>> for name in ("checkpoint-30", "checkpoint-004", "checkpoint-30-backup", "checkpoint-5.tmp"):
    ...     os.mkdir(os.path.join(d, name))
    >>> checkpoint_folders(d)
    {4: 'checkpoint-004', 30: 'checkpoint-30'}
    """
    found = {}
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        m = CHECKPOINT_NAME.fullmatch(name)
        path = os.path.join(out, name)
        if not m or os.path.islink(path) or not os.path.isdir(path):
            continue
        step = int(m.group(1))
        if step in found:
            raise RunError(f"{out!r} holds {found[step]} and {name} for the same step {step}; keep one "
                           "(move the other out of the folder) and run again")
        found[step] = name
    return dict(sorted(found.items()))


def free_name(path):
    """`path`, or path-2, path-3, ...: the first name not taken."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


# ---------------------------------------------------------------------------- claiming it

def _inside(path, folder):
    """Is `path` the folder `folder` or below it (both resolved)?"""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_not_protected(out, protected):
    """RunError when `out` is, contains or lies inside a `protected` path (the model, the data),
    or is or lies inside any model folder. Resolved paths: links do not get around it."""
    real = os.path.realpath(out)
    for what, path in protected:
        if path and (os.path.exists(path) or os.path.isabs(path)):
            p = os.path.realpath(path)
            if _inside(real, p) or _inside(p, real):
                where = "is" if real == p else "lies inside" if _inside(real, p) else "contains"
                raise RunError(f"--out {out!r} {where} the {what} {path!r}; a run would write into or "
                               "delete it: give another --out")
    folder = real
    while True:
        if os.path.isdir(folder) and (is_model_folder(folder) or (
                CHECKPOINT_NAME.fullmatch(os.path.basename(folder)) or os.path.basename(folder) == FINAL)
                and is_marked(os.path.dirname(folder))):
            raise RunError(f"--out {out!r} {'is' if folder == real else 'lies inside'} the model folder "
                           f"{folder!r}; a run would overwrite its files: give another --out")
        parent = os.path.dirname(folder)
        if parent == folder:
            return
        folder = parent


def _folder_state(out):
    """"new" (missing or empty but for a lock file), "marked", or the names that make it foreign."""
    if not os.path.isdir(out):
        return "new"
    try:
        names = [n for n in os.listdir(out) if n != LOCK_FILE or regular_size(os.path.join(out, n)) is None]
    except OSError as e:
        raise RunError(f"--out {out!r} cannot be read ({e.strerror}); give a folder you can read") from None
    if not names:
        return "new"
    return "marked" if is_marked(out) else sorted(names)


def claim_out(out, *, resume=False, overwrite=False, protected=()):
    """Check `out` (rules 1-4 of the module docstring), create and lock it, mark a new one, and
    with --overwrite delete the earlier run's outputs; returns the open lock file.

    Keep the returned file open for the run's lifetime (`with runfolder.claim_out(...):`);
    closing it, or the process ending in any way, releases the lock. `protected`: (what, path)
    pairs such as ("model", "runs/apo/final"); a relative path that does not exist is taken for a
    hub id and skipped. Every refusal comes before anything is written.
    """
    if resume and overwrite:
        raise RunError("give --resume (continue the run in --out) or --overwrite (start it again), not both")
    if os.path.exists(out) and not os.path.isdir(out):
        raise RunError(f"--out {out!r} is a file, not a folder; give a folder path")
    check_not_protected(out, protected)
    parent = os.path.dirname(os.path.abspath(out))
    if RUN_OUTPUT_NAME.fullmatch(os.path.basename(os.path.abspath(out))) and is_marked(parent):
        raise RunError(f"--out {out!r} is named like an output of the run in {parent!r}, which would move "
                       "or delete it; give another --out")
    state = _folder_state(out)
    if isinstance(state, list):
        raise RunError(f"--out {out!r} holds files no run of this project wrote ({', '.join(state[:3])}"
                       f"{', ...' if len(state) > 3 else ''}) and no {MARK_FILE}; a run writes only into a "
                       f"new or empty folder or its own (a run folder from before {MARK_FILE} existed: "
                       f"`python -m plumbing.runfolder --mark {out}`): give another --out")
    if state == "marked":
        _check_outputs(out, resume, overwrite)  # refuse before the lock file is touched
    check_out_dir(out)
    lock = _lock(out)
    try:
        if state == "new":
            _write_mark(out)
        _check_outputs(out, resume, overwrite, delete=overwrite)  # again, now that no one else writes
    except BaseException:
        lock.close()
        raise
    return lock


def _is_folder_output(name):
    """Does a run write `name` as a folder (a checkpoint, final/) rather than a file?"""
    return name.startswith(("checkpoint-", FINAL))


def _lock(out):
    """OUT/.lock opened without following a link and locked; RunError when another run holds it."""
    path = os.path.join(out, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as e:
        raise RunError(f"{path!r} cannot be opened as the run's lock file ({e.strerror}); remove it or give "
                       "another --out") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise RunError(f"{path!r} is not a plain file of its own (a pipe, a device or a hard link); remove "
                       "it or give another --out")
    lock = os.fdopen(fd, "r+")
    if fcntl is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = lock.read(64).strip() or "?"
            lock.close()
            raise RunError(f"another run (pid {holder}) is writing to {out!r}; wait for it to finish "
                           "or give another --out") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def _write_mark(out):
    with open(os.path.join(out, MARK_FILE), "x") as f:
        json.dump({"project": PROJECT, "run": os.path.basename(os.path.abspath(out)),
                   "created": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        f.write("\n")


def _check_outputs(out, resume, overwrite, delete=False):
    """Rules 3 and 4: what the earlier run left is what a run writes (a real folder or a regular
    file, never a link, never another run's folder), and a fresh run finds none; with `delete`,
    --overwrite's deletions."""
    outputs = run_outputs(out)
    for name in outputs:
        path = os.path.join(out, name)
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            raise RunError(f"{path!r} is a symbolic link, which no run writes; move it out of the folder or "
                           "give another --out")
        if not (stat.S_ISDIR(mode) if _is_folder_output(name) else stat.S_ISREG(mode)):
            raise RunError(f"{path!r} is not the {'folder' if _is_folder_output(name) else 'plain file'} a "
                           "run writes there; move it out of the folder or give another --out")
        if stat.S_ISDIR(mode) and os.path.lexists(os.path.join(path, MARK_FILE)):
            raise RunError(f"{path!r} holds another run ({MARK_FILE}); move it out of the folder or give "
                           "another --out")
    if outputs and not (resume or overwrite):
        raise RunError(f"--out {out!r} already holds {', '.join(outputs[:3])}; pass --resume to continue "
                       "that run, --overwrite to delete it and start again, or another --out")
    for name in outputs if delete else []:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def mark_legacy(out):
    """Mark a run folder written before MARK_FILE existed: only when everything in it is a run output."""
    names = [n for n in os.listdir(out) if n != LOCK_FILE]
    foreign = [n for n in names if not RUN_OUTPUT_NAME.fullmatch(n)]
    if foreign or not names:
        held = ", ".join(sorted(foreign)[:3]) or "nothing"
        raise RunError(f"{out!r} is not a run folder: it holds {held}, which no run writes")
    _check_outputs(out, resume=True, overwrite=False)
    if not is_marked(out):
        _write_mark(out)


if __name__ == "__main__":
    import sys
    if len(sys.argv) != 3 or sys.argv[1] != "--mark":
        sys.exit("usage: python -m plumbing.runfolder --mark RUN  (a run folder from before apo_run.json)")
    try:
        mark_legacy(sys.argv[2])
    except (RunError, OSError) as e:
        sys.exit(f"error: {e}")
    print(f"marked {sys.argv[2]} as a run folder")
