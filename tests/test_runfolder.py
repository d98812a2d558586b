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

import train
from plumbing import checkpoints, runfolder


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
    assert "the model " in line and snapshot(tmp_path) == before  # the model rule, not the foreign one


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
    assert "a run writes there" in exits_2(args(random_model_dir, toy_problems_file, run, *mode), capsys)
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


# ----------------------------------------------------------- more forms of the same kinds (a review)

@pytest.mark.parametrize("marked", [False, True])
def test_a_linked_lock_file_is_never_written_through(marked, finished_run, random_model_dir,
                                                     toy_problems_file, tmp_path, capsys):
    out = copy_run(finished_run, tmp_path) if marked else tmp_path / "run"
    out.mkdir(exist_ok=True)
    (out / ".lock").unlink(missing_ok=True)
    (tmp_path / "notes.txt").write_text("precious")
    (out / ".lock").symlink_to(tmp_path / "notes.txt")
    before = snapshot(tmp_path)
    exits_2(args(random_model_dir, toy_problems_file, out, *(["--resume"] if marked else [])), capsys)
    assert snapshot(tmp_path) == before


def test_the_tiny_lm_folder_is_protected_before_it_exists(random_model_dir, toy_problems_file, tmp_path,
                                                          monkeypatch, capsys):
    from toy import tiny_lm
    monkeypatch.setenv("APO_CACHE", str(tmp_path / "cache"))
    built = []
    monkeypatch.setattr(tiny_lm, "build", lambda *a, **k: built.append(1))
    for out in (tmp_path / "cache" / "tiny_lm", tmp_path / "cache" / "tiny_lm.tmp", tmp_path / "cache"):
        argv = args("tiny", toy_problems_file, out)
        assert "the model" in exits_2(argv, capsys)
    assert not built and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "curves.png"])
def test_a_pipe_among_the_run_files_is_refused_not_opened(name, finished_run, random_model_dir,
                                                          toy_problems_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (run / name).unlink()
    _make_fifo(run / name)
    result = {}
    worker = threading.Thread(target=lambda: result.update(line=exits_2(args(
        random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"), capsys)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the run hung on a pipe"
    assert "plain file" in result["line"]


def test_a_linked_curves_tmp_is_refused(finished_run, random_model_dir, toy_problems_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (tmp_path / "victim.txt").write_text("the user's own")
    (run / "curves.png.tmp").symlink_to(tmp_path / "victim.txt")
    before = snapshot(tmp_path)
    assert "symbolic link" in exits_2(args(random_model_dir, toy_problems_file, run, "--resume"), capsys)
    assert snapshot(tmp_path) == before


def test_a_run_inside_another_runs_output_names_is_refused(finished_run, random_model_dir,
                                                           toy_problems_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    for name in ("checkpoint-3", "final.tmp", "checkpoint-1.incomplete"):
        before = snapshot(tmp_path)
        line = exits_2(args(random_model_dir, toy_problems_file, run / name), capsys)
        assert "named like an output" in line
        assert snapshot(tmp_path) == before
    other = run / "checkpoint-9"  # another run's folder, with its mark, where this run's outputs go
    other.mkdir()
    (other / runfolder.MARK_FILE).write_text(json.dumps({"project": runfolder.PROJECT}))
    before = snapshot(tmp_path)
    assert "holds another run" in exits_2(args(random_model_dir, toy_problems_file, run, "--overwrite"),
                                          capsys)
    assert snapshot(tmp_path) == before


def test_a_protected_model_is_refused_by_its_own_rule(finished_run, random_model_dir, toy_problems_file,
                                                      tmp_path, capsys):
    """The run folder is marked, so only the model rule can refuse: training from its own final/."""
    run = copy_run(finished_run, tmp_path)
    before = snapshot(tmp_path)
    line = exits_2(args(str(run / "final"), toy_problems_file, run, "--overwrite"), capsys)
    assert "contains the model" in line and snapshot(tmp_path) == before


def test_a_checkpoint_with_a_template_folder_resumes(finished_run, random_model_dir, toy_problems_file,
                                                     tmp_path, capsys):
    """save_pretrained writes additional_chat_templates/ for a tokenizer with named templates."""
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "final")
    (run / "checkpoint-2" / "additional_chat_templates").mkdir()
    (run / "checkpoint-2" / "additional_chat_templates" / "tool_use.jinja").write_text("{{ messages }}")
    train.main(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"))
    assert "resuming from" in capsys.readouterr().out and steps_logged(run) == [1, 2, 3]


@pytest.mark.parametrize("damage", ["sparse config.json", "garbage tokenizer.json",
                                    "config of another shape"])
def test_a_checkpoint_whose_model_does_not_load_is_set_aside(damage, finished_run, random_model_dir,
                                                             toy_problems_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    shutil.rmtree(run / "final")
    ckpt = run / "checkpoint-2"
    if damage == "sparse config.json":
        with open(ckpt / "config.json", "r+b") as f:
            f.truncate(1 << 40)
    elif damage == "garbage tokenizer.json":
        (ckpt / "tokenizer.json").write_text("{garbage")
    else:
        config = json.loads((ckpt / "config.json").read_text())
        (ckpt / "config.json").write_text(json.dumps(config | {"hidden_size": 2 * config["hidden_size"]}))
    train.main(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"))
    out = capsys.readouterr().out
    assert "checkpoint-2 is incomplete" in out and "resuming from" in out and "checkpoint-1" in out
    assert steps_logged(run) == [1, 2, 3] and (run / "checkpoint-2.incomplete").is_dir()


def test_a_folder_from_before_the_mark_can_be_marked_and_resumed(finished_run, random_model_dir,
                                                                 toy_problems_file, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (run / runfolder.MARK_FILE).unlink()
    mark = f"python -m plumbing.runfolder --mark {run}"
    assert mark in exits_2(args(random_model_dir, toy_problems_file, run, "--resume"), capsys)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(runfolder.RunError, match="not a run folder"):
        runfolder.mark_legacy(str(tmp_path / "mine"))
    runfolder.mark_legacy(str(run))
    train.main(args(random_model_dir, toy_problems_file, run, "--resume", "--steps", "3"))
    assert steps_logged(run) == [1, 2, 3]
