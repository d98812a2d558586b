"""Helpers of the tests that run train.py end to end (test_robustness.py, test_runfolder.py)."""

import json
import os

import pytest

import train


def args(model_dir, problems_file, out, *extra):
    """A 2-step run small enough for a second: 1 prompt x 2 completions of 4 tokens, saved every step."""
    return ["--model", model_dir, "--dataset", problems_file, "--out", str(out), "--steps", "2",
            "--prompts-per-step", "1", "--group-size", "2", "--max-new-tokens", "4", "--lr", "1e-3",
            "--micro-batch-size", "2", "--save-every", "1", *extra]


def exits_2(argv, capsys):
    """Run train.main(argv); assert exit code 2 and one `error:` line without a traceback; return it."""
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err and err[-1].startswith("error: "), err
    assert sum(line.startswith("error") for line in err) == 1 and not any("Traceback" in x for x in err)
    return err[-1]


def steps_logged(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def snapshot(root):
    """Every entry below `root`, links not followed: {relative path: file bytes, link target or "dir"}."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                found[rel] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                found[rel] = ("dir",)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    found[rel] = ("file", f.read())
            else:
                found[rel] = ("special",)
    return found
