"""memory.py: the activation estimate against bytes saved for backward, and train.py's refusal."""

import pytest
import torch

import rollout
import train
from plumbing import loading, memory
from toy.random_qwen2 import build_random_qwen2


def measured_saved_bytes(fn):
    """An independent count: every tensor autograd saves, parameters excluded, each storage once."""
    seen = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = build_random_qwen2(tmp_path_factory.mktemp("m"), hidden=64, layers=3, heads=4)
    return loading.load_model_and_tokenizer(path)[0].train()


@pytest.mark.parametrize("rows,prompt,completion", [(3, 20, 40), (1, 10, 200), (6, 30, 30)])
def test_activation_estimate_is_within_20_percent_of_the_saved_bytes(model, rows, prompt, completion):
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731  (GPU autocast stand-in)
    p = memory.probe(model, autocast)
    ids = torch.randint(0, model.config.vocab_size, (rows, prompt + completion))
    mask = torch.ones_like(ids)

    def forward():
        with autocast():
            return rollout.policy_logps(model, ids, mask, ids[:, prompt:])

    got = measured_saved_bytes(forward)
    estimate = p.per_token * ids.numel()
    assert abs(estimate - got) <= 0.2 * got, (estimate, got)


def test_checkpointing_saves_less_and_the_estimate_counts_what_it_keeps(model):
    p = memory.probe(model, lambda: torch.autocast("cpu", enabled=False))
    assert p.per_token_checkpointed < p.per_token
    cfg = model.config
    on = memory.activation_bytes(p, cfg, 1000, True, 4)
    off = memory.activation_bytes(p, cfg, 1000, False, 4)
    assert on < off and on >= 1000 * (p.per_token_checkpointed + cfg.num_hidden_layers * cfg.hidden_size * 4)
    assert not model.is_activation_checkpointing  # the probe restored the model's own setting


def test_the_check_does_not_move_the_random_stream(model):
    """train.py's check runs forward passes on random ids: the run's own random stream must not see it."""
    cfg = train.parse_config(["--max-new-tokens", "8"])
    torch.manual_seed(0)
    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    line, refusal = memory.check(model, cfg, torch.device("cpu"), no_autocast, 4, True)
    assert line.startswith("memory estimate:") and refusal is None
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), after)


def test_train_refuses_a_run_that_cannot_fit_with_one_sentence(random_model_dir, toy_problems_file, tmp_path,
                                                               monkeypatch, capsys):
    monkeypatch.setattr(memory, "device_bytes", lambda device: (10_000_000, "a 10 MB test device"))
    with pytest.raises(SystemExit) as e:
        train.main(["--model", random_model_dir, "--dataset", toy_problems_file, "--out", str(tmp_path / "o"),
                    "--steps", "1", "--max-new-tokens", "8"])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars of model loading
    assert e.value.code == 2 and err.startswith("error: the estimated peak memory")
    assert "--" in err  # names the flag to change
    assert not (tmp_path / "o" / "metrics.jsonl").exists()  # stopped before the first step
