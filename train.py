"""RLVR on a Hugging Face causal LM with GRPO, the KL baselines or APO, on one device.

Run (one GPU, hub access):   python train.py --model Qwen2.5-Math-1.5B --loss apo
Run (CPU, the tiny math LM): python train.py --model tiny --dataset arith --lr 1e-4 --max-new-tokens 48
Run (CPU, any local model):  python train.py --model path/to/model --dataset problems.jsonl \
                                 --steps 2 --prompts-per-step 2 --max-new-tokens 32
Then: python eval.py --model runs/apo/final      (train.py wrote runs/LOSS; this writes runs/apo/eval)

Each step (METHOD.md §1, §3, §4), numbered as in `train_step`:
  1. sample B prompts; G completions each from the current policy     (rollout.sample)
  2. rewards 1/0 from the final answer                                  (verify.reward)
  3. group advantages, broadcast to every completion token              (apo.group_advantages)
  4. reference log-probs and top-K ids, no grad                         (rollout.reference_pass)
  5. the loss over micro-batches, each divided by the full step's
     divisor so accumulation gives exactly the full-batch gradient      (apo.policy_loss)
  6. clip the gradient norm, one AdamW step
Metrics go to OUT/metrics.jsonl (README.md "Metrics"), checkpoints to OUT/checkpoint-STEP/, OUT/final/.
Read `train_step` and the functions after it; the config, the setup and the loop come last.

Departures and choices, with reasons:
1. One optimizer step per batch of rollouts, so pi_old = pi_theta at the time of the loss:
   old_logp is logp.detach() (ratio exactly 1, no extra forward pass), as in TRL when it
   does one iteration per generation. The clip then acts only through APO's r~.
2. The policy's weights are float32 ("master weights") and forward passes run under bf16
   autocast on a GPU: pure bf16 weights cannot represent an lr = 1e-6 update (bf16 keeps 8
   mantissa bits, so w += 1e-6 * g rounds back to w). The frozen reference takes the same path
   (float32 weights, the same autocast; +3 GB at 1.5B): a bf16 copy would differ from the
   policy at step 0 (r_anchor spread over 0.88-1.06 instead of 1). Temperatures divide float32
   logits everywhere, as `generate` does (apo.gather_logp).
3. Sampling pins every knob but temperature and top-p off (rollout.py departure 1); on a GPU
   it uses the static-cache, CUDA-graph sampler of plumbing/fast_sampler.py, which draws the same
   distribution as `generate` and falls back to it when it cannot run (`--sampler`).
4. Default data: MATH train, levels 3-5; prompts longer than --max-prompt-tokens are dropped
   so that prompt + completion fits Qwen2.5-Math's 4k context.
"""

import dataclasses
import json
import math
import os
import sys
from collections import defaultdict
from dataclasses import dataclass

import torch
from tqdm import tqdm

import apo
import rollout
import verify
from plumbing import batching, checkpoints, cli, curves, data, loading, memory, prompts
from toy import tiny_lm

SEED_STRIDE = 100_003  # a prime: epoch e of seed s shuffles with s * SEED_STRIDE + e, distinct for all s, e
HELDOUT_SAMPLES = 4  # samples per held-out problem for --eval-every (pass@1 = their mean reward)
SAMPLE_TAIL_CHARS = 300  # the printed sample shows the completion's end, where the answer is


# ------------------------------------------------------------------- one step (read this first)

def train_step(step, model, ref_model, tokenizer, optimizer, problems, cfg, autocast):
    """One RLVR step, numbered as in the module docstring. Returns the step's metrics."""
    clock = memory.PhaseClock(next(model.parameters()).device)  # the wall time of each numbered phase
    # 1. B prompts, G completions each, sampled from the current policy
    batch = batch_for_step(problems, step, cfg)
    model.eval()  # sampling: no dropout, KV cache on
    with autocast():
        roll = rollout.sample(model, tokenizer, [p["problem"] for p in batch], cfg.group_size,
                              temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.gen_batch_size, sampler=cfg.sampler)
    clock.mark("gen")
    # 2. rewards from the final answers: (B, G), 1.0 when equivalent to the gold answer
    rewards = torch.tensor([verify.reward(text, batch[i]["answer"]) for text, i in
                            zip(roll.texts, roll.prompt_index.tolist())]).view(-1, cfg.group_size)
    # 3. group advantages, one per completion (N,)
    adv = apo.group_advantages(rewards, std_normalize=not cfg.no_std).view(-1).to(roll.input_ids.device)
    clock.mark("reward")
    # 4. the frozen reference: log pi_ref at the sampled tokens and its top-K (no grad)
    ref = None
    if ref_model is not None:
        with autocast():
            ref = rollout.reference_pass(ref_model, roll, top_k=cfg.top_k, temperature=cfg.temperature,
                                         chunk_size=cfg.ref_chunk_size)
    clock.mark("ref")
    # 5. the loss over micro-batches, gradients accumulated
    model.train()
    optimizer.zero_grad(set_to_none=True)
    metrics = loss_and_backward(model, roll, adv, ref, cfg, autocast)
    clock.mark("loss")
    # 6. clip the gradient norm, one AdamW step
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm).item()
    checkpoints.require_finite(step, loss=metrics["loss"], grad_norm=grad_norm)  # never step on a NaN
    optimizer.step()
    clock.mark("opt")
    out = {"step": step} | metrics | rollout_metrics(roll, rewards, cfg) | clock.seconds()
    out.update(grad_norm=grad_norm, peak_mb=loading.peak_memory_mb(clock.device),
               gen_tokens_per_s=out.pop("gen_tokens") / max(out["gen_seconds"], 1e-9))
    if step % cfg.sample_every == 0 or step == 1:  # first prompt, first completion: no cherry-picking
        out["sample"] = dict(batch[0], completion=roll.texts[0], reward=rewards[0, 0].item())
    return out


def batch_for_step(problems, step, cfg):
    """The prompts of step `step` (1-based): a fresh seeded permutation every epoch, so a
    resumed run sees exactly the prompts the uninterrupted run would have seen."""
    B, n = cfg.prompts_per_step, len(problems)
    out = []
    for j in range((step - 1) * B, step * B):
        epoch, pos = divmod(j, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * SEED_STRIDE + epoch))
        out.append(problems[perm[pos].item()])
    return out


def loss_and_backward(model, roll, adv, ref, cfg, autocast):
    """Step 5: the policy loss over micro-batches; gradients accumulate in model's .grad.

    Every micro-batch divides by the *whole step's* divisor (apo.loss_denom), so the summed
    gradient is the full-batch gradient whatever the micro-batching (tested); trimming a
    micro-batch to its own width drops only columns that are padding in all its rows.
    Returns the step's metrics: token-weighted means over micro-batches, and the loss.
    """
    denom = apo.loss_denom(roll.completion_mask, cfg.agg, cfg.max_new_tokens)  # full-step divisor
    sums, weights, total_loss = defaultdict(float), defaultdict(float), 0.0
    for rows in batching.micro_batches(roll, cfg.micro_batch_tokens, cfg.micro_batch_size):  # token budget
        mb = batching.trimmed(roll.rows(rows))  # only the columns some row of this micro-batch uses
        mb_ref = ref.rows(rows, mb.completion_ids.shape[1]) if ref is not None else None
        loss, m = micro_batch_loss(model, mb, adv[rows], mb_ref, cfg, denom, autocast)
        loss.backward()
        total_loss += loss.item()
        for key, value in m.items():  # a plain weighted sum; the weights are token counts
            w = m[apo.METRIC_WEIGHTS.get(key, "tokens")]
            if key not in ("tokens", "neg_tokens") and w > 0 and not math.isnan(value):
                sums[key] += value * w
                weights[key] += w
    return {k: sums[k] / weights[k] for k in sums} | {"loss": total_loss}


def micro_batch_loss(model, mb, adv, ref, cfg, denom, autocast):
    """The loss of one micro-batch (a Rollout of n rows) and its metrics; `ref` may be None."""
    y, mask = mb.completion_ids, mb.completion_mask  # (n, T) each
    refs = ref._asdict() if ref is not None else {}  # ref_logp (n, T), topk_ids, ref_topk_logp (n, T, K)
    topk_ids = refs.get("topk_ids")  # (n, T, K) or None
    with autocast():
        logp, topk_logp, entropy = rollout.policy_logps(  # (n, T), (n, T, K) or None, (n, T)
            model, mb.input_ids, mb.attention_mask, y, temperature=cfg.temperature, topk_ids=topk_ids)
    loss, m = apo.policy_loss(
        logp, logp.detach(), adv, mask, kind=cfg.loss,  # train.py departure 1: pi_old = pi_theta
        ref_logp=refs.get("ref_logp"), topk_logp=topk_logp, ref_topk_logp=refs.get("ref_topk_logp"),
        topk_is_sampled=(topk_ids == y[..., None]) if topk_ids is not None else None,  # (n, T, K)
        beta=cfg.beta, lam=cfg.lam, kl_coef=cfg.kl_coef, clip_low=cfg.clip_low, clip_high=cfg.clip_high,
        agg=cfg.agg, max_len=cfg.max_new_tokens, denom=denom)
    m["entropy"] = ((entropy * mask).sum() / mask.sum().clamp_min(1)).item()  # exact H, mean over tokens
    return loss, m


def rollout_metrics(roll, rewards, cfg):
    """What the samples themselves say: reward, pass@1, pass@G, lengths (README "Metrics")."""
    lengths = roll.completion_mask.sum(1)  # (N,) completion tokens, EOS included
    return {"reward_mean": rewards.mean().item(),
            "pass@1": rewards.mean().item(),  # mean over groups of c/G: the unbiased pass@1
            f"pass@{cfg.group_size}": (rewards.max(1).values > 0).float().mean().item(),
            "zero_std_frac": (rewards.std(1) == 0).float().mean().item(),
            "response_len": lengths.mean().item(), "truncated_frac": roll.truncated.float().mean().item(),
            "gen_tokens": lengths.sum().item()}


@torch.no_grad()
def heldout_pass1(model, tokenizer, problems, cfg, autocast):
    """pass@1 on held-out problems: the mean reward of HELDOUT_SAMPLES samples each (unbiased)."""
    model.eval()
    with autocast():
        roll = rollout.sample(model, tokenizer, [p["problem"] for p in problems], HELDOUT_SAMPLES,
                              temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens,
                              batch_size=cfg.gen_batch_size, sampler=cfg.sampler)
    return sum(verify.reward(t, problems[i]["answer"]) for t, i in
               zip(roll.texts, roll.prompt_index.tolist())) / len(roll.texts)


# ------------------------------------------------------------------------------ the config

@dataclass
class Config:
    """RLVR on a Hugging Face causal LM with GRPO, the KL baselines or APO, on one device."""
    # --- model and data
    model: str = cli.option("Qwen/Qwen2.5-Math-1.5B", "local folder, hub id (a bare Qwen name gets "
                            "Qwen/), or `tiny` for the CPU math LM of toy/tiny_lm.py")
    dataset: str = cli.option(data.MATH_TRAIN, "hub id, `arith`, or a local .jsonl/.json/.parquet "
                              "with problem+answer")
    split: str = cli.option("train", "dataset split (hub datasets)")
    levels: str = cli.option("3,4,5", "keep these MATH levels when rows have a `level` field; '' keeps all")
    max_prompt_tokens: int = cli.option(1024, "drop longer prompts (with the budget: fits a 4k context)")
    # --- the objective (METHOD.md §1-§4)
    loss: str = cli.option("apo", "policy loss: grpo, grpo_kl, kl_on_wrong, apo, or the ablations psr, nsr")
    beta: float = cli.option(0.1, "APO pull onto the reference top-K (paper: 0.1)")
    lam: float = cli.option(1.05, "APO push on tokens of wrong completions (paper: 1.05)")
    top_k: int = cli.option(8, "K: size of the reference top-K safe manifold (paper: 8)")
    kl_coef: float = cli.option(1e-3, "k3 KL weight for grpo_kl and kl_on_wrong")
    clip_low: float = cli.option(0.2, "PPO clip: lower bound 1 - clip_low")
    clip_high: float = cli.option(0.2, "PPO clip: upper bound 1 + clip_high")
    agg: str = cli.option("token_mean", "loss aggregation: token_mean, seq_mean or constant")
    no_std: bool = cli.option(False, "advantages without std normalisation (Dr. GRPO)")
    # --- sampling
    group_size: int = cli.option(8, "G: completions per prompt")
    prompts_per_step: int = cli.option(16, "B: prompts per step (N = B*G completions)")
    max_new_tokens: int = cli.option(3000, "completion budget in tokens")
    temperature: float = cli.option(1.0, "sampling temperature; log-probs use the same scaling")
    top_p: float = cli.option(1.0, "nucleus sampling; 1.0 samples from the full policy")
    gen_batch_size: int = cli.option(128, "completions per generate call")
    sampler: str = cli.option("auto", "auto (static cache + CUDA graph on GPU), hf (generate) or static")
    # --- optimisation
    lr: float = cli.option(1e-6, "AdamW learning rate")
    weight_decay: float = cli.option(0.0, "AdamW weight decay")
    max_grad_norm: float = cli.option(1.0, "clip the global gradient norm to this")
    steps: int = cli.option(200, "total optimizer steps (with --resume: the total, not additional)")
    seed: int = cli.option(0, "seed for data order and sampling")
    # --- memory
    micro_batch_tokens: int = cli.option(16384, "at most this many padded tokens per forward/backward: "
                                         "short completions share big micro-batches, long ones get small")
    micro_batch_size: int = cli.option(0, "also at most this many completions per micro-batch (0: no cap)")
    ref_chunk_size: int = cli.option(8, "completions per reference forward pass")
    gradient_checkpointing: str = cli.option("auto", "recompute activations in backward: auto (on CUDA), on, "
                                             "off", choices=("auto", "on", "off"))
    dtype: str = cli.option("auto", "compute dtype: auto (bf16 on GPU, float32 on CPU), bfloat16, float32")
    # --- outputs and checkpoints
    out: str = cli.option(None, "output folder: metrics.jsonl, checkpoints, final model (default: runs/LOSS)",
                          type=str)
    save_every: int = cli.option(50, "checkpoint every N steps and at the last (0: never, for benchmarks)")
    keep_checkpoints: int = cli.option(2, "keep only the newest N checkpoint-STEP folders (0: keep all)")
    resume: bool = cli.option(False, "continue from the latest checkpoint in --out")
    overwrite: bool = cli.option(False, "start again in an --out that holds a run (deletes its checkpoints)")
    # --- monitoring
    eval_every: int = cli.option(0, "every N steps, held-out pass@1 on --eval-dataset (0: never)")
    eval_dataset: str = cli.option("math500", "held-out problems for --eval-every")
    eval_limit: int = cli.option(64, "held-out problems used by --eval-every")
    sample_every: int = cli.option(5, "print and log one sampled completion every N steps")
    track_safe_mass: bool = cli.option(False, "log safe_mass for every loss (grpo then loads the reference)")


class ConfigError(ValueError):
    """A bad flag; the message names it and says what is allowed."""


def parse_config(argv=None):
    """The command line as a checked Config; ConfigError names the flag to fix."""
    cfg = cli.parse(Config, argv)
    cfg.out = cfg.out or f"runs/{cfg.loss}"  # one folder per method: `--loss grpo` writes runs/grpo
    if bad := cli.non_finite_floats(cfg):  # nan passes every comparison below; inf trains all-NaN weights
        raise ConfigError(f"--{bad[0].replace('_', '-')} must be a finite number, got {getattr(cfg, bad[0])}")
    checks = [
        (cfg.loss in apo.KINDS, f"--loss must be one of {', '.join(apo.KINDS)}"),
        (cfg.agg in apo.AGGS, f"--agg must be one of {', '.join(apo.AGGS)}"),
        (cfg.group_size >= 2,
         "--group-size must be at least 2: advantages compare the G samples of a prompt"),
        (cfg.top_k >= 1, "--top-k must be at least 1: the safe manifold needs one reference token"),
        (cfg.prompts_per_step >= 1, "--prompts-per-step must be at least 1"),
        (cfg.steps >= 1, "--steps must be at least 1"),
        (cfg.micro_batch_tokens >= 1 and cfg.gen_batch_size >= 1 and cfg.ref_chunk_size >= 1,
         "--micro-batch-tokens, --gen-batch-size and --ref-chunk-size must be at least 1"),
        (cfg.micro_batch_size >= 0, "--micro-batch-size must be >= 0 (0: no cap on rows)"),
        (cfg.max_new_tokens >= 1 and cfg.max_prompt_tokens >= 1, "token budgets must be at least 1"),
        (cfg.temperature > 0, "--temperature must be positive"),
        (cfg.sampler in ("auto", "hf", "static"), "--sampler must be auto, hf or static"),
        (0 < cfg.top_p <= 1, "--top-p must be in (0, 1]"),
        (cfg.lr > 0 and cfg.weight_decay >= 0, "--lr must be positive and --weight-decay >= 0"),
        (cfg.max_grad_norm > 0, "--max-grad-norm must be > 0 (< 0 reverses the update, 0 freezes it)"),
        (cfg.eval_limit >= 1, "--eval-limit must be at least 1"),
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


# --------------------------------------------------------------------------------- setup

def device_plan(cfg):
    """(device, compute dtype, autocast on, gradient checkpointing on): the one place where train.py
    asks which device it runs on. On CUDA: bf16 autocast over float32 weights and (with "auto")
    checkpointing; on a CPU: float32, neither. Tests force the CUDA answers on a CPU."""
    device, compute_dtype = loading.pick_device_dtype(cfg.dtype)
    use_autocast = device.type == "cuda" and compute_dtype != torch.float32
    on_cuda = cfg.gradient_checkpointing == "auto" and device.type == "cuda"
    return device, compute_dtype, use_autocast, cfg.gradient_checkpointing == "on" or on_cuda


def load_models(cfg, ckpt, device, checkpointing):
    """The policy (float32 master weights, from the checkpoint when resuming), its tokenizer, and
    the frozen reference (None when the loss needs none). The reference has float32 weights and
    runs under the same autocast as the policy: one precision path, so at step 0 its log-probs
    are the policy's to the last bit and r_anchor is exactly 1 (train.py departure 2)."""
    base = tiny_lm.resolve_model(cfg.model)  # --model tiny: the CPU math LM, built once
    model, tokenizer = loading.load_model_and_tokenizer(ckpt or base, dtype="float32", device=device)
    if checkpointing:
        model.activation_checkpointing_enable()  # TRL's GRPO default too: activations are the big term
    ref_model = None
    if cfg.loss in apo.NEEDS_REFERENCE or cfg.track_safe_mass:  # the initial policy, frozen, same precision
        ref_model, _ = loading.load_model_and_tokenizer(base, dtype="float32", device=device)
        ref_model.requires_grad_(False)
    return model, tokenizer, ref_model


def describe(cfg, device, compute_dtype, model, problems, dropped, start):
    """The derived sizes, as one line a person reads before the first step."""
    params = sum(p.numel() for p in model.parameters())
    return (f"run: {cfg.loss} on {device.type} ({str(compute_dtype).split('.')[1]}), {params:,} parameters | "
            f"{cfg.prompts_per_step} prompts x G={cfg.group_size} = {cfg.prompts_per_step * cfg.group_size} "
            f"completions a step, micro-batches of <= {cfg.micro_batch_tokens} tokens | up to "
            f"{cfg.max_new_tokens} new tokens | {len(problems)} problems ({dropped} dropped as longer than "
            f"{cfg.max_prompt_tokens} prompt tokens) | steps {start + 1}..{cfg.steps}")


# --------------------------------------------------------------------------------- main

def run(cfg):
    """Train, holding a lock on --out for the whole run (runfolder.claim_out: a run writes only
    into its own folder, never into the model or the data)."""
    tiny = os.path.abspath(tiny_lm.default_cache_dir())  # built later, into tiny + ".tmp" first
    paths = [tiny, tiny + ".tmp"] if cfg.model == tiny_lm.TINY_MODEL else [cfg.model]
    protected = [("model", p) for p in paths] + [("dataset", cfg.dataset), ("data", cfg.eval_dataset)]
    with checkpoints.claim_out(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite, protected=protected):
        train(cfg)


def train(cfg):
    device, compute_dtype, use_autocast, checkpointing = device_plan(cfg)

    def autocast():
        return torch.autocast(device.type, dtype=compute_dtype, enabled=use_autocast)
    torch.manual_seed(cfg.seed)
    cfg_dict = dataclasses.asdict(cfg)
    ckpt, start, state = checkpoints.resume_point(cfg.out, cfg_dict) if cfg.resume else (None, 0, None)
    if start >= cfg.steps:
        if cfg.save_every and not os.path.isdir(os.path.join(cfg.out, "final")):  # killed while saving it
            checkpoints.write_final_from(ckpt, cfg.out)
        return print(f"nothing to do: {ckpt} is at step {start} and --steps is {cfg.steps}")
    problems = data.load_problems(cfg.dataset, cfg.split, levels=cfg.level_set or None)
    while True:  # a checkpoint whose model or tokenizer does not load is set aside, as incomplete ones are
        try:
            model, tokenizer, ref_model = load_models(cfg, ckpt, device, checkpointing)
            break
        except loading.ModelLoadError as e:
            if ckpt is None:
                raise
            checkpoints.set_aside(ckpt, f"it does not load: {str(e).split(' (')[0]}")
            ckpt, start, state = checkpoints.resume_point(cfg.out, cfg_dict)
    problems, dropped = prompts.drop_long_prompts(problems, tokenizer, cfg.max_prompt_tokens)
    line, refusal = memory.check(model, cfg, device, autocast, compute_dtype.itemsize, ref_model is not None)
    print(line)
    if refusal:
        raise ConfigError(refusal)
    heldout = data.load_problems(cfg.eval_dataset, limit=cfg.eval_limit) if cfg.eval_every else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    metrics_path = os.path.join(cfg.out, "metrics.jsonl")
    if ckpt:  # the optimizer, this command line's lr and weight decay, the RNG, the log up to the checkpoint
        checkpoints.restore(optimizer, state, cfg_dict, ckpt)
        checkpoints.trim_metrics(metrics_path, start)
    print(describe(cfg, device, compute_dtype, model, problems, dropped, start))
    with open(os.path.join(cfg.out, "config.json"), "w") as f:
        json.dump(cfg_dict | {"device": str(device), "compute_dtype": str(compute_dtype),
                              "problems": len(problems), "start_step": start}, f, indent=2)
    with open(metrics_path, "a" if ckpt else "w") as log:
        for step in tqdm(range(start + 1, cfg.steps + 1), initial=start, total=cfg.steps, desc=cfg.loss):
            m = train_step(step, model, ref_model, tokenizer, optimizer, problems, cfg, autocast)
            if cfg.eval_every and step % cfg.eval_every == 0:
                m["heldout_pass@1"] = heldout_pass1(model, tokenizer, heldout, cfg, autocast)
            tqdm.write(curves.step_line(m, cfg.loss, cfg.steps, cfg.group_size, SAMPLE_TAIL_CHARS))
            log.write(json.dumps(m) + "\n")
            log.flush()
            if cfg.save_every and (step % cfg.save_every == 0 or step == cfg.steps):
                checkpoints.save_checkpoint(cfg.out, step, model, tokenizer, optimizer, cfg_dict,
                                            cfg.keep_checkpoints)
                curves.refresh(cfg.out)  # OUT/curves.png: a long run draws its own training curves
    if cfg.save_every:
        checkpoints.save_atomic(os.path.join(cfg.out, "final"), model, tokenizer)
        print(f"saved {os.path.join(cfg.out, 'final')}")
    curves.refresh(cfg.out)


def main(argv=None):
    try:
        run(parse_config(argv))
    except (ConfigError, data.DataError, loading.ModelLoadError, checkpoints.RunError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
