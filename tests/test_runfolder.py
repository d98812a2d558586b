"""A run never writes into or deletes what is not its own (runfolder.py, checkpoints.py): each case is a
clean refusal (one `error:` line, exit 2, every file on disk byte for byte as before) or the right result.

    HF_HUB_OFFLINE=1 python -m pytest -q tests/test_runfolder.py
"""

import json
import os
import shutil
import threading

import pytest
from run_helpers import args, exits_2, snapshot, steps_logged

import checkpoints
import data
import eval as eval_cli
import runfolder
import train


@pytest.fixture(scope="module")
def finished_run(random_model_dir, toy_problems_file, tmp_path_factory):
    """A 2-step run with checkpoint-1, checkpoint-2 and final/: copied by each test that needs one."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train.main(args(random_model_dir, toy_problems_file, out, "--keep-checkpoints", "0"))
    return out


def copy_run(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run", symlinks=True)


# ------------------------------------------------------- writing into a folder that is not a run's

@pytest.mark.parametrize("mode", [[], ["--overwrite"], ["--resume"]])
@pytest.mark.parametrize("where", ["the model", "inside the model", "above the model", "a link to the model"])
def test_out_is_never_the_model_folder_or_near_it(where, mode, random_model_dir, toy_problems_file, tmp_path,
                                                  capsys):
    model = shutil.copytree(random_model_dir, tmp_path / "models" / "m")
    out = {"the model": model, "inside the model": model / "run", "above the model": tmp_path / "models",
           "a link to the model": tmp_path / "link"}[where]
    if where == "a link to the model":
        out.symlink_to(model, target_is_directory=True)
    before = snapshot(tmp_path)
    line = exits_2(args(str(model), toy_problems_file, out, *mode), capsys)
    assert "model" in line and snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["checkpoint-1", "checkpoint-1/sub", "final", "final/deeper/still"])
def test_out_is_never_inside_a_checkpoint(where, finished_run, random_model_dir, toy_problems_file, tmp_path,
                                          capsys):
    run = copy_run(finished_run, tmp_path)
    before = snapshot(tmp_path)
    line = exits_2(args(random_model_dir, toy_problems_file, run / where), capsys)
    assert "model folder" in line and snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["the data folder", "a folder above the data"])
def test_out_never_holds_the_data(where, random_model_dir, toy_problems_file, tmp_path, capsys):
    data_file = tmp_path / "d" / "sets" / "problems.jsonl"
    data_file.parent.mkdir(parents=True)
    shutil.copy(toy_problems_file, data_file)
    out = data_file.parent if where == "the data folder" else tmp_path / "d"
    before = snapshot(tmp_path)
    assert "dataset" in exits_2(args(random_model_dir, str(data_file), out, "--overwrite"), capsys)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("mode", [[], ["--overwrite"], ["--resume"]])
@pytest.mark.parametrize("through_link", [False, True])
def test_a_folder_that_was_never_a_run_is_left_alone(mode, through_link, random_model_dir, toy_problems_file,
                                                     tmp_path, capsys):
    """The user's own final/, checkpoint-7/ and config.json: refused in every mode, nothing deleted."""
    mine = tmp_path / "mine"
    for name in ("final", "checkpoint-7"):
        (mine / name).mkdir(parents=True)
        (mine / name / "notes.txt").write_text("my work")
    (mine / "config.json").write_text('{"something": "else"}')
    out = mine
    if through_link:
        out = tmp_path / "link"
        out.symlink_to(mine, target_is_directory=True)
    before = snapshot(tmp_path)
    assert "no run of this project wrote" in exits_2(args(random_model_dir, toy_problems_file, out, *mode),
                                                     capsys)
    assert snapshot(tmp_path) == before  # not even a .lock


def test_a_fresh_run_never_truncates_an_earlier_runs_metrics(random_model_dir, toy_problems_file, tmp_path,
                                                            capsys):
    out = tmp_path / "run"
    train.main(args(random_model_dir, toy_problems_file, out, "--save-every", "0"))  # metrics, no checkpoint
    before = snapshot(tmp_path)
    assert "already holds" in exits_2(args(random_model_dir, toy_problems_file, out), capsys)
    assert snapshot(tmp_path) == before
    train.main(args(random_model_dir, toy_problems_file, out, "--overwrite"))
    assert steps_logged(out) == [1, 2]


def test_an_empty_folder_and_a_marked_one_are_accepted(random_model_dir, toy_problems_file, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    train.main(args(random_model_dir, toy_problems_file, out))
    assert runfolder.is_marked(str(out)) and (out / "final").is_dir()
    (out / "my_notes.txt").write_text("kept")
    train.main(args(random_model_dir, toy_problems_file, out, "--overwrite"))
    assert (out / "my_notes.txt").read_text() == "kept" and (out / "final").is_dir()


def test_a_mark_of_another_kind_is_not_a_mark(random_model_dir, toy_problems_file, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / runfolder.MARK_FILE).write_text('{"project": "someone else"}')
    before = snapshot(tmp_path)
    assert "no run of this project wrote" in exits_2(args(random_model_dir, toy_problems_file, out,
                                                          "--overwrite"), capsys)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------- links inside a run folder

@pytest.mark.parametrize("mode", [[], ["--overwrite"], ["--resume"]])
@pytest.mark.parametrize("name", ["checkpoint-1", "final"])
def test_a_linked_checkpoint_or_final_is_never_followed(name, mode, finished_run, random_model_dir,
                                                        toy_problems_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    elsewhere = shutil.move(str(run / name), str(tmp_path / "elsewhere"))
    (run / name).symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(tmp_path)
    assert "symbolic link" in exits_2(args(random_model_dir, toy_problems_file, run, *mode), capsys)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------ resuming

def test_a_step_written_with_zeros_is_found_and_used_by_its_own_name(finished_run, random_model_dir,
                                                                     toy_problems_file, tmp_path):
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "final")
    shutil.rmtree(run / "checkpoint-2")
    os.rename(run / "checkpoint-1", run / "checkpoint-001")
    train.main(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3",
                    "--keep-checkpoints", "1"))
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint")) == ["checkpoint-3"]
    assert steps_logged(run) == [1, 2, 3] and (run / "final").is_dir()


@pytest.mark.parametrize("names", [("checkpoint-1", "checkpoint-01"), ("checkpoint-2", "checkpoint-002")])
def test_two_folders_for_one_step_stop_the_resume(names, finished_run, random_model_dir, toy_problems_file,
                                                  tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    shutil.copytree(run / names[0], run / names[1])
    before = snapshot(tmp_path)
    line = exits_2(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"), capsys)
    assert "for the same step" in line and names[1] in line and snapshot(tmp_path) == before


def _make_fifo(path):
    os.mkfifo(path)


@pytest.mark.parametrize("damage", ["a link to a text file", "a pipe", "a folder", "empty", "text",
                                    "a tensor", "too large", "rng of floats", "config.json broken",
                                    "config.json a list",
                                    "config.json a pipe", "weights a link"])
def test_a_checkpoint_that_is_not_one_is_set_aside_and_the_run_falls_back(damage, finished_run,
                                                                          random_model_dir, toy_problems_file,
                                                                          tmp_path, capsys):
    """Each way a file can fail to be a checkpoint is one kind of failure: no traceback, no hang."""
    import torch
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "final")
    ckpt = run / "checkpoint-2"
    state = ckpt / checkpoints.STATE_FILE
    if damage.startswith("config.json"):
        target = ckpt / "config.json"
        target.unlink()
        if damage == "config.json broken":
            target.write_text('{"model_type": "qwen2", ')
        elif damage == "config.json a list":
            target.write_text("[1, 2]")
        else:
            _make_fifo(target)
    elif damage == "weights a link":
        shutil.move(str(ckpt / "model.safetensors"), str(tmp_path / "w.safetensors"))
        (ckpt / "model.safetensors").symlink_to(tmp_path / "w.safetensors")
    else:
        state.unlink()
        if damage == "a link to a text file":
            (tmp_path / "notes.txt").write_text("not a checkpoint\n" * 100)
            state.symlink_to(tmp_path / "notes.txt")
        elif damage == "a pipe":
            _make_fifo(state)
        elif damage == "a folder":
            state.mkdir()
        elif damage == "empty":
            state.write_bytes(b"")
        elif damage == "text":
            state.write_text("not a checkpoint\n" * 100)
        elif damage == "a tensor":
            torch.save(torch.zeros(3), state)
        elif damage == "rng of floats":
            torch.save({"optimizer": {"state": {}, "param_groups": [{"params": [0]}]}, "step": 2,
                        "rng": {"cpu": torch.zeros(3)}}, state)
        else:
            with open(state, "wb") as f:
                f.truncate(1 << 40)  # sparse: a terabyte that takes no disk
    result = {}
    worker = threading.Thread(target=lambda: result.update(code=_run(
        args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"))), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the resume hung"
    out = capsys.readouterr().out
    assert result["code"] == 0 and "checkpoint-2 is incomplete" in out and "resuming from" in out
    assert (run / "checkpoint-2.incomplete").is_dir() and steps_logged(run) == [1, 2, 3]


def test_an_optimizer_state_of_another_shape_is_one_sentence(finished_run, random_model_dir,
                                                            toy_problems_file, tmp_path, capsys):
    import torch
    run = copy_run(finished_run, tmp_path)
    state = torch.load(run / "checkpoint-2" / checkpoints.STATE_FILE, weights_only=True)
    state["optimizer"]["param_groups"][0]["params"] = [0]  # one parameter, where the model has many
    torch.save(state, run / "checkpoint-2" / checkpoints.STATE_FILE)
    line = exits_2(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"), capsys)
    assert "does not fit this model" in line and "checkpoint-2" in line


@pytest.mark.parametrize("mode", [[], ["--overwrite"], ["--resume"]])
@pytest.mark.parametrize("name, kind", [("checkpoint-3", "file"), ("final", "file"),
                                        ("metrics.jsonl", "folder")])
def test_a_run_output_name_of_the_other_kind_is_not_the_runs(name, kind, mode, finished_run, random_model_dir,
                                                             toy_problems_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    target = run / name
    shutil.rmtree(target) if target.is_dir() else target.unlink() if target.exists() else None
    target.mkdir() if kind == "folder" else target.write_text("the user's own")
    before = snapshot(tmp_path)
    assert "where a run writes the other kind" in exits_2(args(random_model_dir, toy_problems_file, run,
                                                                *mode), capsys)
    assert snapshot(tmp_path) == before


def _run(argv):
    try:
        train.main(argv)
    except SystemExit as e:
        return e.code
    return 0


def test_no_loadable_checkpoint_left_is_one_sentence(finished_run, random_model_dir, toy_problems_file,
                                                     tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    for step in (1, 2):
        (run / f"checkpoint-{step}" / checkpoints.STATE_FILE).write_text("garbage")
    line = exits_2(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"), capsys)
    assert "no checkpoint" in line and "loads completely" in line
    assert (run / "final").is_dir()  # the finished model was not touched


def test_an_earlier_incomplete_name_is_never_deleted(finished_run, random_model_dir, toy_problems_file,
                                                     tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (run / "checkpoint-2.incomplete").mkdir()
    (run / "checkpoint-2.incomplete" / "kept.txt").write_text("kept")
    (run / "checkpoint-2" / checkpoints.STATE_FILE).write_text("garbage")
    train.main(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"))
    assert (run / "checkpoint-2.incomplete" / "kept.txt").read_text() == "kept"
    assert (run / "checkpoint-2.incomplete-2").is_dir()


# ------------------------------------------------------------------------------ smaller cases

@pytest.mark.parametrize("value", ['"0.5"', "null", "[0.5]", '{"a": 1}', "true", "NaN"])
def test_compare_refuses_results_whose_pass_at_k_is_not_a_number(value, tmp_path, capsys):
    good = {"model": "m", "benchmarks": {"b": {"pass@1": 0.5, "pass@2": 0.7, "n": 2, "problems": 3}}}
    bad = json.loads(json.dumps(good).replace("0.7", value))
    (tmp_path / "a.json").write_text(json.dumps(good))
    (tmp_path / "b.json").write_text(json.dumps(bad).replace("NaN", "NaN"))
    code = eval_cli.main(["--compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out",
                          str(tmp_path / "cmp")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "b.json" in err[0]


def test_data_rows_empty_boxed_answer_lists_and_bad_lines(tmp_path, capsys):
    lines = [json.dumps({"problem": "p1", "answer": "\\boxed{}"}),
             json.dumps({"problem": "p2", "answer": [None, "5"]}),
             "{this is not json",
             json.dumps({"problem": "p3", "answer": "$\\boxed{7}$"}),
             "[1, 2]",
             json.dumps({"problem": "p4", "answer": ["", "  ", "x"]})]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = data.load_problems(str(path))
    assert rows == [{"problem": "p2", "answer": "5"}, {"problem": "p3", "answer": "7"},
                    {"problem": "p4", "answer": "x"}]
    out = capsys.readouterr().out
    assert "dropped 2 lines that are not JSON objects (line 3, 5)" in out
    assert "1 with an empty answer" in out


def test_a_file_with_no_good_line_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("{oops\nnot json either\n")
    with pytest.raises(data.DataError, match="no line of .* is a JSON object"):
        data.load_problems(str(path))
