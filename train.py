"""RLVR on a Hugging Face causal LM with GRPO, the KL baselines or APO, on one device.

Run (one GPU, hub access):   python train.py --model Qwen2.5-Math-1.5B --loss apo
Run (CPU, any local model):  python train.py --model path/to/model --dataset problems.jsonl \
                                 --steps 2 --prompts-per-step 2 --max-new-tokens 32
Then: python eval.py --model runs/apo/final

Each step (APO_SPEC §1, §3, §4):
  1. sample B prompts; G completions each from the current policy     (rollout.sample)
  2. rewards 1/0 from the final answer                                  (verify.reward)
  3. group advantages, broadcast to every completion token              (apo.group_advantages)
  4. reference log-probs and top-K ids, no grad                         (rollout.reference_pass)
  5. the loss over micro-batches, each divided by the full step's
     divisor so accumulation gives exactly the full-batch gradient      (apo.policy_loss)
  6. clip the gradient norm, one AdamW step
Metrics go to OUT/metrics.jsonl (keys defined in README.md), checkpoints to
OUT/checkpoint-STEP/ and OUT/final/ in save_pretrained format.

Departures and choices, with reasons:
1. One optimizer step per batch of rollouts, so pi_old = pi_theta at the time of the loss:
   old_logp is logp.detach() (ratio exactly 1, no extra forward pass), as in TRL when it
   does one iteration per generation. The clip then acts only through APO's r~.
2. The policy's weights are float32 ("master weights") and forward passes run under bf16
   autocast on a GPU: pure bf16 weights cannot represent an lr = 1e-6 update (bf16 keeps 8
   mantissa bits, so w += 1e-6 * g rounds back to w). The frozen reference is kept in bf16.
3. The policy samples with plain `generate` (see rollout.py for why every sampling knob but
   temperature and top-p is pinned off).
4. Default data: MATH train, levels 3-5; prompts longer than --max-prompt-tokens are dropped
   so that prompt + completion fits Qwen2.5-Math's 4k context.
"""

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

import apo
import data
import rollout
import verify


def _f(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    model: str = _f("Qwen/Qwen2.5-Math-1.5B", "local folder or hub id; a bare Qwen name gets Qwen/")
    dataset: str = _f(data.MATH_TRAIN, "hub id or local .jsonl/.json/.parquet with problem+answer")
    split: str = _f("train", "dataset split (hub datasets)")
    levels: str = _f("3,4,5", "keep these MATH levels when the data has a `level` field; '' keeps all")
    loss: str = _f("apo", "policy loss: grpo, grpo_kl, kl_on_wrong or apo")
    beta: float = _f(0.1, "APO pull onto the reference top-K (paper: 0.1)")
    lam: float = _f(1.05, "APO push on tokens of wrong completions (paper: 1.05)")
    top_k: int = _f(8, "K: size of the reference top-K safe manifold (paper: 8)")
    kl_coef: float = _f(1e-3, "k3 KL weight for grpo_kl and kl_on_wrong")
    clip_low: float = _f(0.2, "PPO clip: lower bound 1 - clip_low")
    clip_high: float = _f(0.2, "PPO clip: upper bound 1 + clip_high")
    agg: str = _f("token_mean", "loss aggregation: token_mean, seq_mean or constant")
    no_std: bool = _f(False, "advantages without std normalisation (Dr. GRPO)")
    group_size: int = _f(8, "G: completions per prompt")
    prompts_per_step: int = _f(16, "B: prompts per step (N = B*G completions)")
    max_new_tokens: int = _f(3000, "completion budget in tokens")
    max_prompt_tokens: int = _f(1024, "drop longer prompts (with the budget: fits a 4k context)")
    temperature: float = _f(1.0, "sampling temperature; log-probs use the same scaling")
    top_p: float = _f(1.0, "nucleus sampling; 1.0 samples from the full policy")
    lr: float = _f(1e-6, "AdamW learning rate")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    max_grad_norm: float = _f(1.0, "clip the global gradient norm to this")
    steps: int = _f(200, "total optimizer steps (with --resume: the total, not additional)")
    micro_batch_size: int = _f(4, "completions per forward/backward; bounds activation memory")
    gen_batch_size: int = _f(128, "completions per generate call")
    sampler: str = _f("auto", "auto (static cache + CUDA graph on GPU), hf (plain generate) or static")
    ref_chunk_size: int = _f(8, "completions per reference forward pass")
    gradient_checkpointing: bool = _f(False, "recompute activations in backward to save memory")
    dtype: str = _f("auto", "compute dtype: auto (bf16 on GPU, float32 on CPU), bfloat16, float32")
    seed: int = _f(0, "seed for data order and sampling")
    out: str = _f("runs/apo", "output folder: metrics.jsonl, checkpoints, final model")
    save_every: int = _f(50, "checkpoint every N steps and at the last step (0: never, for benchmarks)")
    keep_checkpoints: int = _f(2, "keep only the newest N checkpoint-STEP folders (0: keep all)")
    eval_every: int = _f(0, "every N steps, held-out pass@1 on --eval-dataset (0: never)")
    eval_dataset: str = _f("math500", "held-out problems for --eval-every")
    eval_limit: int = _f(64, "held-out problems used by --eval-every")
    sample_every: int = _f(5, "print and log one sampled completion every N steps")
    resume: bool = _f(False, "continue from the latest checkpoint in --out")
    track_safe_mass: bool = _f(False, "log safe_mass for every loss (loads the reference for grpo too)")


class ConfigError(ValueError):
    pass


def parse_config(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool or f.type == "bool":
            ap.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default, help=f.metadata["help"])
    cfg = Config(**vars(ap.parse_args(argv)))
    checks = [
        (cfg.loss in apo.KINDS, f"--loss must be one of {', '.join(apo.KINDS)}"),
        (cfg.agg in apo.AGGS, f"--agg must be one of {', '.join(apo.AGGS)}"),
        (cfg.group_size >= 2,
         "--group-size must be at least 2: advantages compare the G samples of a prompt"),
        (cfg.top_k >= 1, "--top-k must be at least 1: the safe manifold needs one reference token"),
        (cfg.prompts_per_step >= 1, "--prompts-per-step must be at least 1"),
        (cfg.steps >= 1, "--steps must be at least 1"),
        (cfg.micro_batch_size >= 1 and cfg.gen_batch_size >= 1 and cfg.ref_chunk_size >= 1,
         "--micro-batch-size, --gen-batch-size and --ref-chunk-size must be at least 1"),
        (cfg.max_new_tokens >= 1 and cfg.max_prompt_tokens >= 1, "token budgets must be at least 1"),
        (cfg.temperature > 0, "--temperature must be positive"),
        (cfg.sampler in ("auto", "hf", "static"), "--sampler must be auto, hf or static"),
        (0 < cfg.top_p <= 1, "--top-p must be in (0, 1]"),
        (cfg.lr > 0, "--lr must be positive"),
        (cfg.beta >= 0 and cfg.lam > 0 and cfg.kl_coef >= 0, "--beta and --kl-coef must be >= 0, --lam > 0"),
        (0 <= cfg.clip_low < 1 and cfg.clip_high >= 0, "--clip-low must be in [0, 1), --clip-high >= 0"),
        (cfg.save_every >= 0 and cfg.sample_every >= 1 and cfg.eval_every >= 0 and cfg.keep_checkpoints >= 0,
         "--sample-every must be >= 1; --save-every, --eval-every and --keep-checkpoints >= 0"),
        (cfg.dtype in ("auto", "float32", "bfloat16", "float16"),
         "--dtype must be auto, float32, bfloat16 or float16"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    try:
        cfg.level_set = {int(x) for x in cfg.levels.split(",") if x.strip()}
    except ValueError:
        raise ConfigError(f"--levels must be a comma list of integers, got {cfg.levels!r}") from None
    return cfg


# ------------------------------------------------------------------------ checkpoints

def checkpoint_steps(out):
    """Steps of the complete checkpoint-STEP folders in `out`, oldest first."""
    if not os.path.isdir(out):
        return []
    return sorted(int(d.split("-")[1]) for d in os.listdir(out)
                  if d.startswith("checkpoint-") and d.split("-")[1].isdigit())


def latest_checkpoint(out):
    steps = checkpoint_steps(out)
    return (os.path.join(out, f"checkpoint-{steps[-1]}"), steps[-1]) if steps else (None, 0)


def save_atomic(path, model, tokenizer, state=None):
    """Write to path.tmp, then rename: a crash mid-save never leaves a half checkpoint."""
    tmp = path + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if state is not None:
        torch.save(state, os.path.join(tmp, "trainer_state.pt"))
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def rng_state():
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state):
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------ a step

def batch_for_step(problems, step, cfg):
    """The prompts of step `step` (1-based): a fresh seeded permutation every epoch, so a
    resumed run sees exactly the prompts the uninterrupted run would have seen."""
    B, n = cfg.prompts_per_step, len(problems)
    out = []
    for j in range((step - 1) * B, step * B):
        epoch, pos = divmod(j, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        out.append(problems[perm[pos].item()])
    return out


def loss_and_backward(model, roll, adv, ref_out, cfg, autocast):
    """Micro-batched policy loss; gradients accumulate in model's .grad. Returns metrics."""
    kind = cfg.loss
    ref_logp, topk_ids, topk_logp = ref_out if ref_out is not None else (None, None, None)
    denom = apo.loss_denom(roll.completion_mask, cfg.agg, cfg.max_new_tokens)  # full-step divisor
    sums, weights, total_loss = {}, {}, 0.0
    N = roll.input_ids.shape[0]
    for start in range(0, N, cfg.micro_batch_size):
        rows = slice(start, start + cfg.micro_batch_size)
        y, mask = roll.completion_ids[rows], roll.completion_mask[rows]  # (n, T) each
        with autocast():
            logp, anchor_logp, entropy = rollout.policy_logps(
                model, roll.input_ids[rows], roll.attention_mask[rows], y,
                temperature=cfg.temperature, anchor_ids=topk_ids[rows] if topk_ids is not None else None)
        loss, m = apo.policy_loss(
            logp, logp.detach(), adv[rows], mask, kind=kind,  # departure 1: pi_old = pi_theta
            ref_logp=ref_logp[rows] if ref_logp is not None else None, anchor_logp=anchor_logp,
            ref_topk_logp=topk_logp[rows] if topk_logp is not None else None,
            anchor_is_sampled=(topk_ids[rows] == y[..., None]) if topk_ids is not None else None,
            beta=cfg.beta, lam=cfg.lam, kl_coef=cfg.kl_coef, clip_low=cfg.clip_low,
            clip_high=cfg.clip_high, agg=cfg.agg, max_len=cfg.max_new_tokens, denom=denom)
        loss.backward()
        total_loss += loss.item()
        m["entropy"] = ((entropy * mask).sum() / mask.sum().clamp_min(1)).item()
        if "safe_mass" not in m and anchor_logp is not None:  # --track-safe-mass for the baselines
            mass = anchor_logp.detach().exp().sum(-1)  # (n, T) pi_theta on the reference top-K
            m["safe_mass"] = ((mass * mask).sum() / mask.sum().clamp_min(1)).item()
        neg_tokens = (mask * (adv[rows] < 0)[:, None]).sum().item()
        for key, value in m.items():  # token-weighted means over micro-batches
            w = neg_tokens if key == "r_anchor" else m["tokens"]
            if key != "tokens" and w > 0 and not math.isnan(value):
                sums[key] = sums.get(key, 0.0) + value * w
                weights[key] = weights.get(key, 0.0) + w
    metrics = {k: sums[k] / weights[k] for k in sums}
    metrics["loss"] = total_loss
    return metrics


def _clock(device):
    """Wall time after the device has finished its queued work, so phases are timed honestly."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.time()


def train_step(step, model, ref_model, tokenizer, optimizer, problems, cfg, autocast):
    device = next(model.parameters()).device
    t0 = _clock(device)
    batch = batch_for_step(problems, step, cfg)
    model.eval()  # sampling: no dropout, KV cache on
    with autocast():
        roll = rollout.sample(model, tokenizer, [p["problem"] for p in batch], cfg.group_size,
                              temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, batch_size=cfg.gen_batch_size,
                              sampler=cfg.sampler)
    t_gen = _clock(device)
    lengths = roll.completion_mask.sum(1)  # (N,) completion tokens, EOS included
    rewards = torch.tensor([verify.reward(text, batch[i]["answer"]) for text, i in
                            zip(roll.texts, roll.prompt_index.tolist())])  # (N,) 1.0 / 0.0
    rewards = rewards.view(-1, cfg.group_size)  # (B, G)
    adv = apo.group_advantages(rewards, std_normalize=not cfg.no_std).view(-1)  # (N,)
    adv = adv.to(roll.input_ids.device)
    t_reward = _clock(device)
    ref_out = None
    if ref_model is not None:
        with autocast():
            ref_out = rollout.reference_pass(ref_model, roll, top_k=cfg.top_k,
                                             temperature=cfg.temperature, chunk_size=cfg.ref_chunk_size)
    t_ref = _clock(device)
    model.train()
    optimizer.zero_grad(set_to_none=True)
    metrics = loss_and_backward(model, roll, adv, ref_out, cfg, autocast)
    t_loss = _clock(device)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm).item()
    optimizer.step()
    t_end = _clock(device)
    metrics.update({
        "step": step, "reward_mean": rewards.mean().item(),
        "pass@1": rewards.mean().item(),  # mean over groups of c/G: the unbiased pass@1
        f"pass@{cfg.group_size}": (rewards.max(1).values > 0).float().mean().item(),
        "zero_std_frac": (rewards.std(1) == 0).float().mean().item(),
        "response_len": lengths.mean().item(), "truncated_frac": roll.truncated.float().mean().item(),
        "grad_norm": grad_norm, "gen_seconds": t_gen - t0, "reward_seconds": t_reward - t_gen,
        "ref_seconds": t_ref - t_reward, "loss_seconds": t_loss - t_ref, "opt_seconds": t_end - t_loss,
        "seconds": t_end - t0, "gen_tokens_per_s": lengths.sum().item() / max(t_gen - t0, 1e-9),
        "peak_mb": rollout.peak_memory_mb(device)})
    if step % cfg.sample_every == 0 or step == 1:
        i = 0  # first completion of the first prompt: no cherry-picking
        metrics["sample"] = {"problem": batch[0]["problem"], "answer": batch[0]["answer"],
                             "completion": roll.texts[i], "reward": rewards.view(-1)[i].item()}
    return metrics


def format_line(m, cfg):
    nan = float("nan")
    extra = {"apo": f"safe {m.get('safe_mass', nan):.3f} r_anc {m.get('r_anchor', nan):.3f}",
             "grpo_kl": f"kl {m.get('kl', nan):.4f}", "kl_on_wrong": f"kl {m.get('kl', nan):.4f}",
             }.get(cfg.loss, "-")
    return (f"step {m['step']:>4}/{cfg.steps} | reward {m['reward_mean']:.3f} | pass@{cfg.group_size} "
            f"{m[f'pass@{cfg.group_size}']:.2f} | zero_std {m['zero_std_frac']:.2f} | len "
            f"{m['response_len']:6.1f} | trunc {m['truncated_frac']:.2f} | ent {m['entropy']:.3f} | "
            f"clip {m['clip_frac']:.3f} | {extra} | loss {m['loss']:+.4f} | {m['seconds']:.1f}s")


@torch.no_grad()
def heldout_pass1(model, tokenizer, problems, cfg, autocast):
    """pass@1 on held-out problems: the mean reward of 4 samples each (unbiased estimate)."""
    model.eval()
    with autocast():
        roll = rollout.sample(model, tokenizer, [p["problem"] for p in problems], 4,
                              temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, batch_size=cfg.gen_batch_size,
                              sampler=cfg.sampler)
    return sum(verify.reward(t, problems[i]["answer"]) for t, i in
               zip(roll.texts, roll.prompt_index.tolist())) / len(roll.texts)


# --------------------------------------------------------------------------------- main

def run(cfg):
    device, compute_dtype = rollout.pick_device_dtype(cfg.dtype)
    use_autocast = device.type == "cuda" and compute_dtype != torch.float32

    def autocast():
        return torch.autocast(device.type, dtype=compute_dtype, enabled=use_autocast)

    torch.manual_seed(cfg.seed)
    os.makedirs(cfg.out, exist_ok=True)
    ckpt, start = latest_checkpoint(cfg.out) if cfg.resume else (None, 0)
    if cfg.resume and ckpt is None:
        print(f"note: --resume found no checkpoint in {cfg.out}; starting from step 0")
    if start >= cfg.steps:
        print(f"nothing to do: {ckpt} is at step {start} and --steps is {cfg.steps}")
        return
    problems = data.load_problems(cfg.dataset, cfg.split, levels=cfg.level_set or None)
    model, tokenizer = rollout.load_model_and_tokenizer(ckpt or cfg.model, dtype="float32", device=device)
    ref_model = None
    if cfg.loss != "grpo" or cfg.track_safe_mass:  # the frozen initial policy, compute dtype
        ref_model, _ = rollout.load_model_and_tokenizer(cfg.model, dtype=str(compute_dtype).split(".")[1],
                                                        device=device)
        ref_model.requires_grad_(False)
    n_before = len(problems)
    problems = [p for p in problems if len(tokenizer(rollout.format_prompt(tokenizer, p["problem"]))
                                           ["input_ids"]) <= cfg.max_prompt_tokens]
    if not problems:
        raise data.DataError(f"every prompt is longer than --max-prompt-tokens {cfg.max_prompt_tokens}")
    heldout = data.load_problems(cfg.eval_dataset, limit=cfg.eval_limit) if cfg.eval_every else None
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if ckpt:
        state = torch.load(os.path.join(ckpt, "trainer_state.pt"), weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
    resolved = dataclasses.asdict(cfg) | {
        "device": str(device), "compute_dtype": str(compute_dtype), "problems": len(problems),
        "problems_dropped_long": n_before - len(problems), "completions_per_step": cfg.prompts_per_step *
        cfg.group_size, "start_step": start, "params": sum(p.numel() for p in model.parameters())}
    print("config: " + json.dumps(resolved))
    with open(os.path.join(cfg.out, "config.json"), "w") as f:
        json.dump(resolved, f, indent=2)

    log = open(os.path.join(cfg.out, "metrics.jsonl"), "a" if ckpt else "w")
    bar = tqdm(range(start + 1, cfg.steps + 1), initial=start, total=cfg.steps, desc=cfg.loss)
    for step in bar:
        m = train_step(step, model, ref_model, tokenizer, optimizer, problems, cfg, autocast)
        if cfg.eval_every and step % cfg.eval_every == 0:
            m["heldout_pass@1"] = heldout_pass1(model, tokenizer, heldout, cfg, autocast)
        bar.write(format_line(m, cfg))
        if "sample" in m:
            s = m["sample"]
            bar.write(f"  sample (reward {s['reward']:.0f}, gold {s['answer']!r}): "
                      f"{s['completion'][-300:]!r}")
        log.write(json.dumps(m) + "\n")
        log.flush()
        if cfg.save_every and (step % cfg.save_every == 0 or step == cfg.steps):
            save_atomic(os.path.join(cfg.out, f"checkpoint-{step}"), model, tokenizer,
                        {"optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(),
                         "config": dataclasses.asdict(cfg)})
            old_steps = checkpoint_steps(cfg.out)[:-cfg.keep_checkpoints] if cfg.keep_checkpoints else []
            for old in old_steps:  # deleted only once the new checkpoint is safely in place
                shutil.rmtree(os.path.join(cfg.out, f"checkpoint-{old}"))
    log.close()
    if cfg.save_every:
        save_atomic(os.path.join(cfg.out, "final"), model, tokenizer)
        print(f"saved {os.path.join(cfg.out, 'final')}")


def main(argv=None):
    try:
        run(parse_config(argv))
    except (ConfigError, data.DataError, rollout.ModelLoadError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
