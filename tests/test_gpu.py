"""Checks that need a CUDA GPU (run by gpu_check.sh); skipped on CPU-only machines. The sampler's
greedy equality with `generate` on the CUDA-graph path is in tests/test_fast_sampler.py."""

import json

import pytest
import torch

import apo
import rollout
import train
from plumbing import fast_sampler, loading, prompts

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_graph_sampler_token_statistics(random_model_dir):
    model, tok = loading.load_model_and_tokenizer(random_model_dir, dtype="float32")
    enc = tok([prompts.format_prompt(tok, "What is 2 + 3?")] * 4000, return_tensors="pt",
              add_special_tokens=False).to("cuda")
    cfg = rollout.sampling_config(model, tok, max_new_tokens=2)
    got = fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"], cfg, use_graph=True)
    probs = torch.softmax(model(**{k: v[:1] for k, v in enc.items()}).logits[0, -1].float(), -1)
    freq = torch.bincount(got[:, 0], minlength=probs.numel()).float() / got.shape[0]
    order = probs.argsort(descending=True)
    tv = 0.5 * (freq[order].view(8, -1).sum(1) - probs[order].detach().view(8, -1).sum(1)).abs().sum()
    assert tv < 0.06


def test_cuda_graph_sampler_under_bf16_autocast_with_float32_weights(random_model_dir):
    """train.py's real GPU configuration: float32 master weights, bf16 autocast, CUDA graph. The first
    sampled token's frequencies match the policy's own (autocast) distribution."""
    model, tok = loading.load_model_and_tokenizer(random_model_dir, dtype="float32")
    enc = tok([prompts.format_prompt(tok, "What is 2 + 3?")] * 4000, return_tensors="pt",
              add_special_tokens=False).to("cuda")
    cfg = rollout.sampling_config(model, tok, max_new_tokens=3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"], cfg,
                                           use_graph=True)
        logits = model(**{k: v[:1] for k, v in enc.items()}).logits[0, -1]
    assert got.shape == (4000, 3) and next(model.parameters()).dtype == torch.float32
    probs = torch.softmax(logits.float(), -1)
    freq = torch.bincount(got[:, 0], minlength=probs.numel()).float() / got.shape[0]
    order = probs.argsort(descending=True)
    tv = 0.5 * (freq[order].view(8, -1).sum(1) - probs[order].detach().view(8, -1).sum(1)).abs().sum()
    assert tv < 0.06


def test_bf16_training_steps_on_gpu(random_model_dir, toy_problems_file, tmp_path):
    out = tmp_path / "run"
    train.main(["--model", random_model_dir, "--dataset", toy_problems_file, "--out", str(out),
                "--steps", "2",
                "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "16", "--lr", "1e-4"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["peak_mb"] > 0 and r["entropy"] == r["entropy"] for r in rows)  # entropy not nan
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["device"].startswith("cuda") and cfg["compute_dtype"] == "torch.bfloat16"


def test_lean_logp_on_gpu_bf16_matches_naive():
    x = torch.randn(4, 64, 151_936, device="cuda").bfloat16().requires_grad_(True)
    ids = torch.randint(151_936, (4, 64, 9), device="cuda")
    lean = apo.gather_logp(x, ids)
    lean.sum().backward()
    g_lean, x.grad = x.grad, None
    naive = torch.log_softmax(x.float(), -1).gather(-1, ids)
    naive.sum().backward()
    assert torch.allclose(lean, naive, atol=1e-3)
    assert torch.allclose(g_lean.float(), x.grad.float(), atol=1e-2)
