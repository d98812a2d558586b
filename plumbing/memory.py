"""What one train.py step costs: its peak memory, estimated before the first step from a measured
probe, and the wall time of each of its phases (PhaseClock).

    python -m plumbing.memory                      # the default train.py command at Qwen2.5-Math-1.5B's shape
    python -m plumbing.memory --device-gb 80 --micro-batch-tokens 65536 --gradient-checkpointing off

train.py prints one line with this estimate and stops, with one sentence naming the flag to
change, when it cannot fit the device. The parts of a step's peak (METHOD.md has no memory
section: this is engineering, not the method):

- static, alive the whole run: the policy's float32 weights, their gradients, AdamW's two
  float32 moments, and the frozen reference (float32 too: the same precision path as the
  policy, so that at step 0 it *is* the policy);
- then the largest of three phases, which never overlap:
  sampling (the KV cache of --gen-batch-size rows of prompt + completion, in the compute dtype),
  the reference pass (the logits of --ref-chunk-size completions), and
  the loss (the activations saved for backward by the largest micro-batch, plus the gradient
  of its logits in backward).

The activation cost per token is *measured*, not guessed: `probe` runs the training forward
(`rollout.policy_logps`, the same autocast) on one short sequence at two lengths inside
`torch.autograd.graph.saved_tensors_hooks`, sums the bytes of every tensor saved for backward
(each storage once), and takes the slope, so that costs that do not grow with length (bf16
copies of the weights under autocast) drop out. With gradient checkpointing the forward saves
only each layer's input (kept alive by the checkpoint itself, so counted from the config) and
backward recomputes one layer at a time: one layer's share of the no-checkpointing slope.

Departures / simplifications, each conservative (the estimate errs high):
1. The logits term counts every token of a micro-batch, though only completion tokens get
   logits (`logits_to_keep`).
2. Gradients, AdamW state and the reference are counted in every phase, though gradients are
   freed (set to None) while sampling.
3. The allocator's fragmentation and CUDA's own context (~0.5-1 GB) are not modelled: keep a
   margin (train.py refuses above FIT_FRACTION of the device).
"""

import argparse
import time
from dataclasses import dataclass

import torch

import rollout

PROBE_LENGTHS = (32, 64)  # two sequence lengths: the slope between them is the per-token cost
FIT_FRACTION = 0.92  # refuse to start above this share of the device's memory (allocator margin)
GB = 1e9


class PhaseClock:
    """Wall time of each phase of a step, after the device has finished its queued work."""

    def __init__(self, device):
        self.device = device
        self.marks = [("start", self._now())]

    def _now(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # CUDA runs asynchronously: time the work, not the launch
        return time.time()

    def mark(self, phase):
        self.marks.append((phase, self._now()))

    def seconds(self):
        """{phase}_seconds for each phase and `seconds` for the whole step."""
        out = {f"{name}_seconds": t - prev for (_, prev), (name, t) in zip(self.marks, self.marks[1:])}
        return out | {"seconds": self.marks[-1][1] - self.marks[0][1]}


def saved_bytes(fn):
    """Run fn() and return the bytes of the tensors autograd saved for backward (each storage once)."""
    storages = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):  # weights are counted as weights, not activations
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


@dataclass
class Probe:
    """Measured bytes saved for backward per token of a micro-batch."""
    per_token: float  # without gradient checkpointing
    per_token_checkpointed: float  # forward-saved bytes per token with gradient checkpointing


def _policy_forward(model, length, autocast):
    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (1, length), device=device)
    mask = torch.ones_like(ids)
    with autocast():  # prompt of one token, then length - 1 completion tokens (memory.py departure 1)
        logp, _, _ = rollout.policy_logps(model, ids, mask, ids[:, 1:])
    return logp


def _set_checkpointing(model, on):
    (model.activation_checkpointing_enable if on else model.activation_checkpointing_disable)()


def probe(model, autocast):
    """Per-token activation bytes of `model` in train mode under `autocast`, with and without
    gradient checkpointing (the model's own setting is restored)."""
    was_training, was_checkpointing = model.training, model.is_activation_checkpointing
    model.train()
    slopes = []
    try:
        for checkpointing in (False, True):
            _set_checkpointing(model, checkpointing)
            a, b = (saved_bytes(lambda n=n: _policy_forward(model, n, autocast)) for n in PROBE_LENGTHS)
            slopes.append(max(b - a, 0) / (PROBE_LENGTHS[1] - PROBE_LENGTHS[0]))
    finally:
        _set_checkpointing(model, was_checkpointing)
        model.train(was_training)
    return Probe(*slopes)


def activation_bytes(probe, config, tokens, checkpointing, logits_bytes):
    """Peak activation bytes of the loss phase for a micro-batch of `tokens` tokens."""
    layers, hidden = config.num_hidden_layers, config.hidden_size
    if checkpointing:  # checkpoints (float32 residual stream), forward-saved rest, one recomputed layer
        one_layer = max(probe.per_token - probe.per_token_checkpointed, 0) / layers
        per_token = probe.per_token_checkpointed + layers * hidden * 4 + one_layer
    else:
        per_token = probe.per_token
    return tokens * (per_token + config.vocab_size * logits_bytes)  # + the logits' gradient in backward


def estimate(config, probe, *, n_params, compute_bytes, gen_batch, ref_chunk, micro_tokens, max_prompt,
             max_new, checkpointing, train_reference=True):
    """The parts of a step's peak memory in bytes (see the module docstring); 'peak' is their sum."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    context = max_prompt + max_new
    parts = {"weights": 4 * n_params, "grads": 4 * n_params, "adamw": 8 * n_params,
             "reference": 4 * n_params if train_reference else 0}
    phases = {
        "sampler": gen_batch * context * config.num_hidden_layers * 2 * kv_heads * head_dim * compute_bytes
        + gen_batch * config.vocab_size * 4 * 3,  # KV cache, and a few float32 (rows, V) score tensors
        "reference_pass": ref_chunk * max_new * config.vocab_size * compute_bytes if train_reference else 0,
        "activations": activation_bytes(probe, config, micro_tokens, checkpointing, compute_bytes),
    }
    largest = max(phases, key=phases.get)
    return parts | phases | {"largest_phase": largest,
                             "peak": sum(parts.values()) + phases[largest]}


def device_bytes(device):
    """(total bytes, name) of the device train.py will use."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, torch.cuda.get_device_name(device)
    with open("/proc/meminfo") as f:  # Linux: what the process can still get
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
    return info.get("MemAvailable", info.get("MemTotal", 0)), "CPU RAM (available)"


def describe(parts, total, name, micro_tokens, checkpointing):
    """The one line train.py prints."""
    gb = {k: v / GB for k, v in parts.items() if isinstance(v, (int, float))}
    return (f"memory estimate: weights {gb['weights']:.1f} + grads {gb['grads']:.1f} + AdamW "
            f"{gb['adamw']:.1f} + reference {gb['reference']:.1f} GB, then the largest phase of "
            f"sampler KV cache "
            f"{gb['sampler']:.1f} / reference logits {gb['reference_pass']:.1f} / activations of a "
            f"{micro_tokens}-token micro-batch {gb['activations']:.1f} GB (checkpointing "
            f"{'on' if checkpointing else 'off'}) = peak {gb['peak']:.1f} GB of {total / GB:.1f} GB ({name})")


def refusal(parts, total, cfg):
    """None when the estimate fits; else one sentence naming the flag to change."""
    if parts["peak"] <= FIT_FRACTION * total:
        return None
    fix = {"activations": "lower --micro-batch-tokens" + (
               "" if cfg.gradient_checkpointing != "off" else " or turn --gradient-checkpointing on"),
           "sampler": "lower --gen-batch-size (or --max-new-tokens)",
           "reference_pass": "lower --ref-chunk-size"}[parts["largest_phase"]]
    return (f"the estimated peak memory {parts['peak'] / GB:.1f} GB exceeds {FIT_FRACTION:.0%} of the "
            f"{total / GB:.1f} GB available, mostly {parts['largest_phase']}; {fix}")


def check(model, cfg, device, autocast, compute_bytes, with_reference):
    """train.py's check before the first step: (the line to print, a refusal sentence or None).

    `cfg` is train.py's Config; the probe runs on `model` itself (RNG state untouched).
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the probe must not shift the run's random stream
        p = probe(model, autocast)
    on = model.is_activation_checkpointing
    rows = cfg.micro_batch_size or cfg.micro_batch_tokens  # 0: no cap on rows
    context = cfg.max_prompt_tokens + cfg.max_new_tokens
    tokens = max(context, min(cfg.micro_batch_tokens, rows * context))  # one row at least
    parts = estimate(model.config, p, n_params=sum(t.numel() for t in model.parameters()),
                     compute_bytes=compute_bytes, gen_batch=cfg.gen_batch_size, ref_chunk=cfg.ref_chunk_size,
                     micro_tokens=tokens, max_prompt=cfg.max_prompt_tokens, max_new=cfg.max_new_tokens,
                     checkpointing=on, train_reference=with_reference)
    total, name = device_bytes(device)
    return describe(parts, total, name, tokens, on), refusal(parts, total, cfg)


def _main():
    ap = argparse.ArgumentParser(prog="python -m plumbing.memory",
                                 description="train.py's peak memory at Qwen2.5-Math-1.5B's shape.")
    ap.add_argument("--device-gb", type=float, default=80.0, help="device memory to compare with")
    ap.add_argument("--micro-batch-tokens", type=int, default=16384, help="as train.py")
    ap.add_argument("--gen-batch-size", type=int, default=128, help="as train.py")
    ap.add_argument("--ref-chunk-size", type=int, default=8, help="as train.py")
    ap.add_argument("--max-prompt-tokens", type=int, default=1024, help="as train.py")
    ap.add_argument("--max-new-tokens", type=int, default=3000, help="as train.py")
    ap.add_argument("--gradient-checkpointing", default="on", choices=["on", "off"], help="as train.py")
    args = ap.parse_args()
    from transformers import Qwen2Config, Qwen2ForCausalLM
    shape = dict(hidden_size=1536, intermediate_size=8960, num_attention_heads=12, num_key_value_heads=2,
                 vocab_size=151_936, tie_word_embeddings=True)  # Qwen2.5-Math-1.5B's config.json
    config = Qwen2Config(num_hidden_layers=28, **shape)
    small = Qwen2Config(num_hidden_layers=2, **shape)  # probe 2 layers, scale to 28
    model = Qwen2ForCausalLM(small)
    p = probe(model, lambda: torch.autocast("cpu", dtype=torch.bfloat16))  # CPU autocast stands in for GPU
    head = small.vocab_size * 2  # saved bf16 logits per token, which do not scale with depth
    layer = (p.per_token - head) / small.num_hidden_layers
    scaled = Probe(head + layer * config.num_hidden_layers,
                   p.per_token_checkpointed)  # forward-saved with checkpointing: the head only
    print(f"probe (CPU bf16 autocast): {layer / 1e3:.0f} KB per token per decoder layer saved for backward")
    with torch.device("meta"):  # the full shape without allocating it
        n_params = sum(t.numel() for t in Qwen2ForCausalLM(config).parameters())  # 1,543,714,304
    parts = estimate(config, scaled, n_params=n_params, compute_bytes=2, gen_batch=args.gen_batch_size,
                     ref_chunk=args.ref_chunk_size, micro_tokens=args.micro_batch_tokens,
                     max_prompt=args.max_prompt_tokens, max_new=args.max_new_tokens,
                     checkpointing=args.gradient_checkpointing == "on")
    print(describe(parts, args.device_gb * GB, f"{args.device_gb:g} GB card", args.micro_batch_tokens,
                   args.gradient_checkpointing == "on"))


if __name__ == "__main__":
    _main()
