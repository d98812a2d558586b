"""APO inside TRL's GRPOTrainer: the same `apo.policy_loss`, with TRL's multi-GPU machinery around it.

Our train.py runs on one device. TRL's `GRPOTrainer` brings Accelerate (DDP), DeepSpeed ZeRO-2/3, FSDP and
vLLM rollouts; `APOTrainer` below keeps all of that and swaps in this project's objective (METHOD.md §3-4),
for every kind (`apo`, `grpo`, `grpo_kl`, `kl_on_wrong`), so the baselines run in the same trainer.

Run it:   python multi_gpu_and_dev/trl_apo_cpu.py          (CPU, tiny random model)
          accelerate launch --config_file multi_gpu_and_dev/zero3.yaml \
              multi_gpu_and_dev/trl_apo_cpu.py --model ...
Tested with TRL 1.16.0 (requirements-trl.txt); it overrides private TRL methods, so other versions may break.

What TRL does, and what this subclass changes (each override says why at its definition):
1. `__init__`       builds, freezes and prepares the reference model (the frozen initial policy). TRL loads
                    one only for its own KL (`beta > 0`), which we keep at 0: our KL kinds use our k3 term.
2. `_generate_and_score_completions`  runs TRL's (generation by transformers, continuous batching or vLLM,
                    rewards, advantages), then adds the reference quantities for every completion token:
                    `ref_logp` (N, T), `topk_ids` (N, T, K), `ref_topk_logp` (N, T, K), computed here by
                    `rollout.reference_pass` on temperature-scaled logits, never taken from vLLM.
3. `_compute_loss`  replaces TRL's surrogate: one forward of the policy (`rollout.policy_logps`) gives log pi
                    at the sampled token and at the K anchor ids, then `apo.policy_loss` computes the loss.
Everything else (sampling, `num_iterations`, `steps_per_generation`, logging, checkpoints) is TRL's.

TRL's `loss_type` -> our aggregation (apo.aggregate); the divisor reproduces TRL's own normaliser:
| loss_type | agg          | divisor passed as `denom` (GA = gradient accumulation steps)              |
|-----------|--------------|---------------------------------------------------------------------------|
| dapo      | token_mean   | valid tokens of the whole step, all processes (TRL's default; our default) |
| bnpo      | token_mean   | valid tokens of this micro-batch * GA (depends on micro-batching, as TRL's) |
| grpo      | seq_mean     | completions in this micro-batch * GA                                        |
| dr_grpo   | constant     | completions in this micro-batch * max_completion_length * GA              |
cispo, sapo, luspo and vespo are other objectives, not aggregations: APOConfig rejects them.

Choices, with reasons:
1. Advantages are TRL's `inputs["advantages"]`, not apo.group_advantages: TRL computes them over the
   rewards gathered from all processes (a group can span processes), with its reward weights, unscorable
   rows and `scale_rewards` ("group" = our std-normalised, "none" = Dr. GRPO). Both use the unbiased std;
   TRL adds 1e-4 to it where apo.py adds 1e-6: with 0/1 rewards and G <= 8 a mixed group's std is >= 0.35,
   so A differs by < 0.03 %.
2. pi_old: with `num_iterations=1` and generation aligned to the optimizer step (TRL's default) TRL stores no
   old log-probs and we use logp.detach() (ratio exactly 1, as train.py). Otherwise we use TRL's
   `old_per_token_logps`, which TRL computes through `_get_per_token_logps_and_entropies`; APOTrainer
   overrides that method with `rollout.policy_logps`, so both sides of the ratio come from one function
   (position ids rebuilt from the mask, temperature divided in float32): under `bf16=True` the ratio of the
   first pass is exactly 1, where TRL's own forward (no position ids) left it anywhere in [0.98, 1.013].
3. vLLM importance-sampling correction: TRL's default sequence-level ratio w >= 0 (one per completion)
   multiplies the surrogate; since -min(r*A*w, clip(r)*A*w) = w * -min(r*A, clip(r)*A) it is folded into the
   advantage. Token-level modes would need a per-token weight that apo.policy_loss does not take: rejected.
4. TRL options that reweight tokens inside its own loss (top_entropy_quantile, off_policy_mask_threshold,
   delta, entropy bonus), sequence-level ratios (GSPO), PEFT, vision models and MoE aux losses are rejected
   with an error naming the setting, rather than silently ignored.
5. The reference has the policy's dtype, as TRL's own reference; under DeepSpeed it is wrapped by
   `prepare_deepspeed` (ZeRO-3: sharded like the policy; ZeRO-2: a full copy per GPU), under FSDP by
   `prepare_fsdp`, as TRL does for its reference.
6. The policy forward keeps (n, T, V) logits of one micro-batch (like train.py), where TRL's fused head keeps
   none: per_device_train_batch_size bounds that memory.
"""

import math
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import trl
from accelerate.utils import is_peft_model
from packaging.version import Version
from trl import GRPOConfig, GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.trainer.utils import create_model_from_path, disable_dropout_in_model, get_config_model_id

import apo
import rollout
import verify
from plumbing import prompts

TESTED_TRL = ("1.16.0", "1.17.0")  # [low, high): the private methods overridden below are those of TRL 1.16
LOSS_TYPE_TO_AGG = {"dapo": "token_mean", "bnpo": "token_mean", "grpo": "seq_mean", "dr_grpo": "constant"}

if not Version(TESTED_TRL[0]) <= Version(trl.__version__) < Version(TESTED_TRL[1]):
    warnings.warn(f"trl_apo.py was tested with trl {TESTED_TRL[0]}; you have {trl.__version__}. "
                  f"If training fails, pip install -r requirements-trl.txt", stacklevel=2)


def _f(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class APOConfig(GRPOConfig):
    """GRPOConfig plus the APO objective's settings (train.py's flags, with an `apo_` prefix).

    TRL's own `beta` (its KL weight) must stay 0: the KL baselines use `apo_loss="grpo_kl"` or
    `"kl_on_wrong"` with `apo_kl_coef`, on this trainer's reference model.
    """
    apo_loss: str = _f("apo", "policy loss (apo.py): apo, grpo, grpo_kl, kl_on_wrong, psr or nsr")
    apo_beta: float = _f(0.1, "APO pull onto the reference top-K (paper: 0.1)")
    apo_lam: float = _f(1.05, "APO push on tokens of wrong completions (paper: 1.05)")
    apo_top_k: int = _f(8, "K: size of the reference top-K safe manifold (paper: 8)")
    apo_kl_coef: float = _f(1e-3, "k3 KL weight for grpo_kl and kl_on_wrong")

    def __post_init__(self):
        super().__post_init__()
        token_level_is = self.vllm_importance_sampling_mode.startswith("token")
        checks = [
            (self.apo_loss in apo.KINDS, f"apo_loss must be one of {', '.join(apo.KINDS)}"),
            (self.apo_top_k >= 1, "apo_top_k must be at least 1: the safe manifold needs a reference token"),
            (self.apo_beta >= 0 and self.apo_lam > 0 and self.apo_kl_coef >= 0,
             "apo_beta and apo_kl_coef must be >= 0, apo_lam > 0"),
            (self.beta == 0, "set beta=0 (TRL's KL); for a KL baseline use apo_loss='grpo_kl', apo_kl_coef"),
            (self.loss_type in LOSS_TYPE_TO_AGG,
             f"loss_type must be one of {', '.join(LOSS_TYPE_TO_AGG)}: the aggregations apo.py has"),
            (self.importance_sampling_level == "token",
             "set importance_sampling_level='token': apo.policy_loss's ratio is per token"),
            (self.top_entropy_quantile == 1.0 and self.off_policy_mask_threshold is None
             and self.delta is None,
             "unset top_entropy_quantile, off_policy_mask_threshold and delta: apo.py has no such mask"),
            (self.entropy_coef == 0 and not self.use_adaptive_entropy,
             "set entropy_coef=0, use_adaptive_entropy=False: APO has no entropy bonus (METHOD.md Dec. 2)"),
            (not self.sync_ref_model, "set sync_ref_model=False: APO's anchor is the frozen initial policy"),
            (not (self.use_vllm and self.vllm_importance_sampling_correction and token_level_is),
             "set vllm_importance_sampling_mode to 'sequence_mask' or 'sequence_truncate' (or turn "
             "vllm_importance_sampling_correction off): token-level weights do not fit apo.policy_loss"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.top_p < 1 or self.top_k or self.min_p or self.repetition_penalty != 1:
            warnings.warn("top_p, top_k, min_p or repetition_penalty change the sampling distribution: the "
                          "samples are no longer from pi_theta/temperature, as the ratio assumes "
                          "(rollout.py, departure 1)", stacklevel=2)


def math_reward(completions, answer, **kwargs):
    """TRL reward function: 1.0 when the completion's final answer equals the `answer` column (verify.py)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]  # chat or plain text
    return [verify.reward(text, gold) for text, gold in zip(texts, answer)]


def prompt_column(tokenizer, problem):
    """The `prompt` TRL should get so that the model sees exactly prompts.format_prompt's text: chat
    messages (TRL applies the template, generation prompt included) or, without a template, the plain text."""
    return prompts.prompt_messages(tokenizer, problem) or prompts.format_prompt(tokenizer, problem)


class APOTrainer(GRPOTrainer):
    """GRPOTrainer whose loss is `apo.policy_loss(kind=args.apo_loss)`; see the module docstring.

    `ref_model`: the frozen reference, if you have it loaded already; by default it is loaded from the
    policy's own path (`model.config._name_or_path`), as TRL loads its reference.
    """
    _tag_names = ["trl", "grpo", "apo"]
    _name = "APO"

    def __init__(self, model, reward_funcs=None, args=None, *, ref_model=None, **kwargs):
        # Why: TRL creates no reference at beta = 0, and a KL reference only gives log pi_ref(y_t), not top-K.
        if not isinstance(args, APOConfig):
            raise TypeError(f"APOTrainer needs args=APOConfig(...) (GRPOConfig plus apo_* fields), got "
                            f"{type(args).__name__}")
        super().__init__(model, reward_funcs, args, **kwargs)
        if is_peft_model(self.model) or self._is_vlm:
            raise ValueError("APOTrainer supports full fine-tuning of text-only causal LMs; drop peft_config "
                             "and use a text model")
        if self.aux_loss_enabled:
            raise ValueError("set router_aux_loss_coef=0.0: APOTrainer adds no MoE load-balancing loss")
        self._stop_at_end_of_turn()
        needs_ref = args.apo_loss in apo.NEEDS_REFERENCE
        self.apo_ref_model = self._frozen_reference(ref_model) if needs_ref else None

    def _stop_at_end_of_turn(self):
        """Stop where train.py stops: rollout.eos_ids adds the chat template's end-of-turn token
        (Qwen2.5-Math's base model lists only <|endoftext|>), for sampling and for TRL's masks."""
        eos = rollout.eos_ids(self.model, self._tokenizer)
        self.eos_token_ids = eos
        if getattr(self, "generation_kwargs", None) is not None:  # the transformers path; vLLM has its own
            self.generation_kwargs["eos_token_id"] = eos
            self.generation_config.eos_token_id = eos

    def _frozen_reference(self, ref_model):
        """The initial policy, frozen and wrapped for the distributed backend (as GRPOTrainer's ref_model).

        Loaded again from disk rather than deep-copied: TRL has patched the policy's `forward` with a closure
        over the policy itself, so a deepcopy would silently run the *trained* weights, and under ZeRO-3 the
        policy's parameters are already sharded.
        """
        if ref_model is self.model:
            raise ValueError("ref_model is the policy itself; pass a separately loaded copy of the policy")
        if ref_model is None:
            name = get_config_model_id(self.model.config)
            init_kwargs = dict(self.args.model_init_kwargs or {})  # as TRL loads its own reference
            if self.args.distributed_state.distributed_type in ["MULTI_GPU", "DEEPSPEED"]:
                init_kwargs["device_map"] = None
            init_kwargs.setdefault("trust_remote_code", self.args.trust_remote_code)
            init_kwargs.setdefault("dtype", self.model.dtype)
            init_kwargs.setdefault("attn_implementation", self.model.config._attn_implementation)
            try:
                ref_model = create_model_from_path(name, **init_kwargs)
            except (OSError, ValueError) as e:
                raise ValueError(f"could not load the reference model from {name!r} ({type(e).__name__}); "
                                 f"pass ref_model=, a freshly loaded copy of the initial policy") from None
        ref_model.requires_grad_(False)
        ref_model.eval()
        disable_dropout_in_model(ref_model)
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(ref_model, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(ref_model, self.accelerator)
        return self.accelerator.prepare_model(ref_model, evaluation_mode=True)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                           **multimodal):
        # Why: pi_old (old_per_token_logps) and pi_theta (_compute_loss) must come from the same function, or
        # the first pass's ratio is not 1 under bf16 (choice 2). Vision inputs are rejected in __init__.
        completion_ids = input_ids[:, -logits_to_keep:]  # (n, T) the completion tokens
        batch_size = batch_size or input_ids.shape[0]
        logps, entropies = [], []
        for start in range(0, input_ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            logp, _, entropy = rollout.policy_logps(model, input_ids[rows], attention_mask[rows],
                                                    completion_ids[rows], temperature=self.temperature)
            logps.append(logp)  # (b, T) float32
            entropies.append(entropy)  # (b, T) float32, no grad
        return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None

    def _generate_and_score_completions(self, inputs):
        # Why: APO needs the reference's top-K at every completion position of the sequences TRL just built,
        # whichever backend sampled them; vLLM returns only the sampled token's log-prob (Decision 3: the
        # top-K comes from the reference's temperature-scaled logits).
        output = super()._generate_and_score_completions(inputs)
        if self.apo_ref_model is None:  # grpo, psr, nsr: no reference needed
            return output
        completion_ids = output["completion_ids"]  # (n, T) right-padded after the first EOS
        seqs = SimpleNamespace(  # the three fields rollout.reference_pass reads from a Rollout
            input_ids=torch.cat([output["prompt_ids"], completion_ids], 1),  # (n, P+T) prompt left-padded
            attention_mask=torch.cat([output["prompt_mask"], output["completion_mask"]], 1),  # (n, P+T)
            completion_ids=completion_ids)
        args = self.args
        chunk = args.per_device_train_batch_size if self.model.training else args.per_device_eval_batch_size
        with self.accelerator.autocast():  # the same mixed precision as TRL's forward passes
            ref_logp, topk_ids, ref_topk_logp = rollout.reference_pass(
                self.apo_ref_model, seqs, top_k=args.apo_top_k, temperature=self.temperature,
                chunk_size=chunk)  # (n, T), (n, T, K), (n, T, K); no grad
        # TRL shuffles and splits this dict row-wise into micro-batches: the new keys follow their rows.
        output.update(ref_logp=ref_logp, topk_ids=topk_ids, ref_topk_logp=ref_topk_logp)
        return output

    def _loss_divisor(self, mask, inputs, mode):
        """(agg, denom): TRL's normaliser for self.loss_type, expressed as apo.aggregate's divisor."""
        agg = LOSS_TYPE_TO_AGG[self.loss_type]
        # Outside `train()` (tests, a first eval) Trainer has not set current_gradient_accumulation_steps yet.
        ga = getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        if self.loss_type == "dapo":  # token_mean over the step; TRL counts the generation batch's tokens
            denom = inputs["num_items_in_batch"].item() / self.accelerator.num_processes
            if mode == "train":  # a generation batch spans steps_per_generation micro-batches, GA per step
                denom = denom * ga / self.args.steps_per_generation
            return agg, denom
        return agg, apo.loss_denom(mask, agg, self.max_completion_length) * (ga if mode == "train" else 1)

    def _compute_loss(self, model, inputs):
        # Why: this is the objective itself. TRL's surrogate knows neither r~ nor the anchors; ours needs
        # log pi at the K reference ids too, which TRL's fused head (sampled token only) cannot give.
        mode = "train" if self.model.training else "eval"
        kind = self.args.apo_loss
        completion_ids = inputs["completion_ids"]  # (n, T)
        mask = inputs["completion_mask"]  # (n, T) 1 through the first EOS
        if "tool_mask" in inputs:  # multi-turn tool calls: tool output tokens are not the model's, as in TRL
            mask = mask * inputs["tool_mask"]
        topk_ids = inputs["topk_ids"] if kind == "apo" else None  # (n, T, K) or None
        with self.accelerator.autocast():
            logp, topk_logp, entropy = rollout.policy_logps(
                model, torch.cat([inputs["prompt_ids"], completion_ids], 1),
                torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1), completion_ids,
                temperature=self.temperature, topk_ids=topk_ids)  # (n, T), (n, T, K) or None, (n, T)
        old_logp = inputs.get("old_per_token_logps")  # (n, T), only when pi_old != pi_theta (choice 2)
        adv = inputs["advantages"]  # (n,) TRL's group advantages (choice 1)
        if "importance_sampling_ratio" in inputs:  # vLLM correction, (n, 1) sequence-level (choice 3)
            adv = adv * inputs["importance_sampling_ratio"].squeeze(-1)  # (n,) w >= 0 keeps the sign of A
        agg, denom = self._loss_divisor(mask, inputs, mode)
        loss, metrics = apo.policy_loss(
            logp, old_logp if old_logp is not None else logp.detach(), adv, mask, kind=kind,
            ref_logp=inputs.get("ref_logp"), topk_logp=topk_logp,
            ref_topk_logp=inputs.get("ref_topk_logp"),
            topk_is_sampled=(topk_ids == completion_ids[..., None]) if topk_ids is not None else None,
            beta=self.args.apo_beta, lam=self.args.apo_lam, kl_coef=self.args.apo_kl_coef,
            clip_low=self.epsilon_low, clip_high=self.epsilon_high, agg=agg,
            max_len=self.max_completion_length, denom=denom)
        self._log_apo_metrics(mode, metrics, entropy, mask.to(logp.dtype))
        return loss

    def _log_apo_metrics(self, mode, metrics, entropy, mask):
        """Token-weighted means over all processes into TRL's metric store (averaged again per log line).

        r_anchor is averaged over tokens of negative-advantage completions, the rest over all valid tokens
        (README "Metrics"); a mean with no token is NaN, which TRL's `log` drops.
        """
        tokens = mask.sum()
        values = {k: metrics[k] for k in ("clip_frac", "r_anchor", "safe_mass", "kl") if k in metrics}
        # each metric's weight is the count policy_loss names for it (apo.METRIC_WEIGHTS), as in train.py
        weights = {k: torch.tensor(float(metrics[apo.METRIC_WEIGHTS.get(k, "tokens")]), device=tokens.device)
                   for k in values}
        values["entropy"], weights["entropy"] = ((entropy * mask).sum() / tokens.clamp_min(1)).item(), tokens
        names = sorted(weights)  # the same order on every process: reduce is a collective
        rows = []
        for k in names:
            w = weights[k].float()  # a mean over no token (NaN) contributes 0 * nothing, not NaN
            rows.append(torch.stack([values[k] * w if w > 0 else torch.zeros_like(w), w]))
        local = torch.stack(rows)  # (metrics, 2) weighted sum, weight on this process
        total = self.accelerator.reduce(local, reduction="sum")
        for name, (weighted_sum, weight) in zip(names, total.tolist()):
            self._metrics[mode][name].append(weighted_sum / weight if weight > 0 else math.nan)
