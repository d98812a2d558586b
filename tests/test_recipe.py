"""The README's one-GPU recipe runs as written: its commands, in order, on the random Qwen2 with small
sizes. Only the model name and the sizes are substituted, plus local files for the hub's MATH train set
and benchmarks (no hub here); every output folder is the one the commands choose themselves."""

import re
import shlex
from pathlib import Path

import eval as eval_cli
import train

README = Path(__file__).resolve().parent.parent / "README.md"
SIZES = {"train.py": {"--steps": "1", "--prompts-per-step": "2", "--group-size": "2", "--max-new-tokens": "4",
                      "--gen-batch-size": "4"},
         "eval.py": {"--n": "2", "--max-new-tokens": "4", "--batch-size": "4"}}


def recipe():
    """The commands of the README's block under "Train a real model on one GPU", comments dropped."""
    section = README.read_text().split("## Train a real model on one GPU", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.split("#")[0].strip()]


def substituted(cmd, model_dir, data_file):
    """`cmd` without `python`, the model name replaced, the sizes set, the hub data replaced."""
    script, args = cmd[1], cmd[2:]
    args = [model_dir if a == "Qwen2.5-Math-1.5B" else a for a in args]
    if "--compare" in args:
        return script, args
    data_flag = "--dataset" if script == "train.py" else "--benchmarks"
    sizes = SIZES[script] | {data_flag: data_file}
    for flag, value in sizes.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    return script, args


def test_the_readme_recipe_runs_command_for_command(random_model_dir, toy_problems_file, tmp_path,
                                                    monkeypatch):
    commands = recipe()
    assert [c[:2] for c in commands] == [["python", "train.py"], ["python", "eval.py"]] * 2 + [
        ["python", "eval.py"]]  # what this test knows how to substitute
    monkeypatch.chdir(tmp_path)
    for cmd in commands:
        script, args = substituted(cmd, random_model_dir, toy_problems_file)
        if script == "train.py":
            train.main(args)
        else:
            assert eval_cli.main(args) == 0, " ".join(cmd)
    for path in ("runs/apo/final/config.json", "runs/grpo/final/config.json", "runs/apo/eval/results.json",
                 "runs/grpo/eval/results.json", "runs/compare/compare.png"):
        assert (tmp_path / path).is_file(), path


def test_default_eval_folders_follow_the_model(tmp_path):
    from types import SimpleNamespace as Args
    (tmp_path / "run" / "final").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-40").mkdir()
    assert eval_cli.default_out(Args(compare=None, model=str(tmp_path / "run" / "final"))) \
        == str(tmp_path / "run" / "eval")
    assert eval_cli.default_out(Args(compare=None, model=str(tmp_path / "run" / "checkpoint-40"))) \
        == str(tmp_path / "run" / "eval-checkpoint-40")
    assert eval_cli.default_out(Args(compare=None, model="Qwen/Qwen2.5-Math-1.5B")) \
        == "runs/eval-Qwen2.5-Math-1.5B"
    assert eval_cli.default_out(Args(compare=["a.json", "b.json"], model=None)) == "runs/compare"
    assert train.parse_config(["--loss", "grpo"]).out == "runs/grpo"
