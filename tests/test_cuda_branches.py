"""Every branch that only runs on CUDA, run on CPU with the device-specific part forced or faked.

What each test stands in for (the rest is only checkable on a GPU, multi_gpu_and_dev/gpu_check.sh):
- the CUDA-graph sampler's call sequence: tests/test_fast_sampler.py (use_graph="emulate"), and here
  rollout.sample's static branch through that emulation, against `generate`;
- train.py's device plan on CUDA (bf16 autocast over float32 weights, gradient checkpointing), run
  whole on a CPU under CPU bf16 autocast;
- gradient checkpointing: the same gradient as without it;
- the memory check against the device's size, the CUDA peak-memory metric, the phase clock's
  synchronisation and the CUDA RNG state in checkpoints, each with torch.cuda faked.
"""

import functools
import json
import time
from types import SimpleNamespace

import pytest
import torch

import rollout
import train
import verify
from plumbing import checkpoints, fast_sampler, loading, memory
from toy.random_qwen2 import TOY_PROBLEMS

CUDA = torch.device("cuda")  # a device object needs no GPU; nothing is allocated on it here


@pytest.fixture(scope="module")
def model_tok(random_model_dir):
    return loading.load_model_and_tokenizer(random_model_dir, dtype="float32", device="cpu")


def test_auto_picks_the_static_sampler_on_cuda_only():
    assert fast_sampler.wanted("auto", CUDA) and fast_sampler.wanted("static", torch.device("cpu"))
    assert not fast_sampler.wanted("auto", torch.device("cpu")) and not fast_sampler.wanted("hf", CUDA)
    with pytest.raises(ValueError, match="sampler must be"):
        fast_sampler.wanted("vllm", CUDA)


def test_rollout_sample_through_the_emulated_graph_equals_generate(model_tok, monkeypatch):
    """rollout.sample's static branch, with the CUDA path's calls (warm-ups, replays): the same tokens
    as `generate` from the same seed, over two generate batches and prompts of different lengths."""
    model, tok = model_tok
    problems = [p["problem"] for p in TOY_PROBLEMS[:3]]
    kw = dict(temperature=0.8, max_new_tokens=24, batch_size=4)
    torch.manual_seed(5)
    expect = rollout.sample(model, tok, problems, 3, sampler="hf", **kw)
    calls = []
    real = fast_sampler.static_generate

    def emulated(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs, use_graph="emulate")
    monkeypatch.setattr(fast_sampler, "static_generate", emulated)
    torch.manual_seed(5)
    got = rollout.sample(model, tok, problems, 3, sampler="static", **kw)
    assert len(calls) == 3  # 9 rows in batches of 4
    assert torch.equal(got.completion_ids, expect.completion_ids) and got.texts == expect.texts
    assert torch.equal(got.completion_mask, expect.completion_mask)


def test_the_device_plan_on_cuda_and_on_cpu(monkeypatch):
    cfg = train.parse_config([])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.device_plan(cfg) == (CUDA, torch.bfloat16, True, True)
    assert train.device_plan(train.parse_config(["--gradient-checkpointing", "off"]))[3] is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.device_plan(cfg) == (torch.device("cpu"), torch.float32, False, False)
    assert train.device_plan(train.parse_config(["--gradient-checkpointing", "on"]))[3] is True


def test_train_runs_the_cuda_plan_on_a_cpu(random_model_dir, toy_problems_file, tmp_path, monkeypatch):
    """Two APO steps with the CUDA answers forced: float32 weights under (CPU) bf16 autocast, gradient
    checkpointing on, the memory check, checkpoints. At step 1 the reference is the policy bit for bit."""
    monkeypatch.setattr(train, "device_plan", lambda cfg: (torch.device("cpu"), torch.bfloat16, True, True))
    monkeypatch.setattr(verify, "reward", lambda text, gold: float("e" in text))  # mixed groups, any model
    loaded, load_models = [], train.load_models
    monkeypatch.setattr(train, "load_models", lambda *a: loaded.append(load_models(*a)) or loaded[-1])
    out = tmp_path / "run"
    train.main(["--model", random_model_dir, "--dataset", toy_problems_file, "--out", str(out),
                "--steps", "2", "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "12",
                "--lr", "1e-3", "--save-every", "1"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    policy, _, reference = loaded[0]
    assert policy.is_activation_checkpointing and not reference.is_activation_checkpointing
    assert [r["step"] for r in rows] == [1, 2] and rows[0]["zero_std_frac"] < 1
    assert rows[0]["r_anchor"] == 1.0 and all(r["loss"] == r["loss"] for r in rows)  # not nan
    assert json.loads((out / "config.json").read_text())["compute_dtype"] == "torch.bfloat16"
    assert (out / "final" / "config.json").is_file()


def test_gradient_checkpointing_gives_the_same_gradient(model_tok):
    model, tok = model_tok
    torch.manual_seed(0)
    r = rollout.sample(model, tok, [p["problem"] for p in TOY_PROBLEMS[:2]], 2, max_new_tokens=10)
    grads = []
    model.train()
    try:
        for on in (False, True):
            (model.activation_checkpointing_enable if on else model.activation_checkpointing_disable)()
            model.zero_grad()
            logp, _, _ = rollout.policy_logps(model, r.input_ids, r.attention_mask, r.completion_ids)
            (logp * r.completion_mask).sum().backward()
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    finally:
        model.activation_checkpointing_disable()
        model.eval()
        model.zero_grad()
    assert grads[0].abs().max() > 0 and (grads[0] - grads[1]).abs().max() < 1e-6


def test_the_device_size_comes_from_cuda_and_the_refusal_names_the_flag(model_tok, monkeypatch):
    model, _ = model_tok
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda d: SimpleNamespace(total_memory=30_000_000))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "a faked 30 MB GPU")
    assert memory.device_bytes(CUDA) == (30_000_000, "a faked 30 MB GPU")
    monkeypatch.setattr(memory, "device_bytes", lambda device, real=memory.device_bytes: real(CUDA))
    cfg = train.parse_config(["--max-new-tokens", "3000", "--gradient-checkpointing", "off"])
    no_autocast = functools.partial(torch.autocast, "cpu", enabled=False)
    line, refusal = memory.check(model, cfg, torch.device("cpu"), no_autocast, 2, True)
    assert "of 0.0 GB (a faked 30 MB GPU)" in line
    assert refusal.startswith("the estimated peak memory") and ("--micro-batch-tokens" in refusal
                                                                or "--gen-batch-size" in refusal)


def test_peak_memory_reads_the_cuda_allocator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2**20)
    assert loading.peak_memory_mb(CUDA) == 3.0
    assert loading.peak_memory_mb(torch.device("cpu")) > 0  # the process's peak resident set


def test_the_phase_clock_waits_for_queued_cuda_work(monkeypatch):
    """A phase lasts until the device has finished the work queued in it: the clock synchronises before
    it reads the time. The fake synchronize sleeps for the work 'queued' since the last one."""
    queued, syncs = [0.0], []

    def synchronize(device=None):
        syncs.append(device)
        time.sleep(queued[0])
        queued[0] = 0.0
    monkeypatch.setattr(torch.cuda, "synchronize", synchronize)
    clock = memory.PhaseClock(CUDA)
    queued[0] = 0.2  # a generation launched asynchronously: the Python call returned at once
    clock.mark("gen")
    clock.mark("loss")
    t = clock.seconds()
    assert syncs == [CUDA] * 3 and t["gen_seconds"] >= 0.2 and t["loss_seconds"] < 0.1


def test_the_cuda_rng_state_is_saved_and_restored(monkeypatch):
    state, restored = [torch.tensor([1, 2, 3], dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: state)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    saved = checkpoints.rng_state()
    assert saved["cuda"] is state
    checkpoints.set_rng_state(saved)
    assert restored == [state]
