"""Sampling G completions per prompt from a Hugging Face causal LM, and the lean forward passes.

Used by train.py (rollouts, policy and reference log-probs) and eval.py (sampling for pass@k).
Try it on any local or hub model:
    python rollout.py --model Qwen/Qwen2.5-Math-1.5B --problem "What is 3 + 4?" --group-size 4

What it implements (METHOD.md §1, §3, §7):
- prompts rendered by plumbing/prompts.py (the chat template, the instruction "Please reason
  step by step, and put your final answer within \\boxed{}." exactly once), left-padded so that
  every completion starts at the same column P and one `logits_to_keep` covers all its positions;
- G sampled completions per prompt, ended by the first EOS id or the template's end-of-turn token
  (`eos_ids`); a completion mask that keeps that token (the model must learn to stop) and drops
  what follows, found from the stop ids, never from the pad id (pad == EOS in Qwen2.5-Math);
- per completion token, log pi(y_t) of the sampled token, and for the reference its top-K ids
  and log-probs, without a float32 (N, T, V) tensor: only completion positions are kept, the
  batch is chunked over sequences, and log-probs are `gathered logit - logsumexp`.

Departures and choices, with reasons:
1. Sampling is `generate` with every distribution-changing knob pinned off (top_k=0, ...): RL's
   ratio assumes samples come from pi_theta/temperature; a generation_config's top_k=50 is overridden.
2. Position ids are rebuilt from the attention mask in our forward passes, exactly as
   `generate` does for left-padded prompts; without them the scores would not be those of the
   distribution that sampled the tokens.
3. Log-probs come from `apo.gather_logp`, whose hand-written backward keeps no float32 copy of
   the logits: only one micro-batch's bf16 logits and their gradient are alive at once.
"""

import argparse
from dataclasses import dataclass
from typing import NamedTuple

import torch
from transformers import GenerationConfig

import apo
from plumbing import fast_sampler, prompts
from plumbing.loading import ModelLoadError, load_model_and_tokenizer

ENTROPY_TOKENS = 256  # completion positions per float32 entropy piece: bounds its workspace
# Every knob that would change the sampling distribution, set to "off" (rollout.py departure 1).
NEUTRAL_SAMPLING = dict(top_k=0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0,
                        repetition_penalty=1.0, no_repeat_ngram_size=0, num_beams=1,
                        renormalize_logits=False, suppress_tokens=None, begin_suppress_tokens=None,
                        bad_words_ids=None, forced_bos_token_id=None, forced_eos_token_id=None)


@dataclass
class Rollout:
    """G completions for each of B prompts, N = B*G rows, prompt i's rows contiguous."""
    input_ids: torch.Tensor        # (N, P+T) left-padded prompt, then completion
    attention_mask: torch.Tensor   # (N, P+T) 1 on prompt tokens and valid completion tokens
    completion_ids: torch.Tensor   # (N, T) sampled tokens; after EOS: padding
    completion_mask: torch.Tensor  # (N, T) float 1.0 up to and including the first EOS
    truncated: torch.Tensor        # (N,) bool: no EOS within max_new_tokens
    prompt_index: torch.Tensor     # (N,) which prompt each row answers
    texts: list                    # N decoded completions (special tokens removed)

    @property
    def prompt_len(self):
        return self.input_ids.shape[1] - self.completion_ids.shape[1]

    def rows(self, idx):
        """The same rollout restricted to rows `idx` (a slice or index tensor)."""
        ids = torch.arange(len(self.texts))[idx].tolist()
        return Rollout(self.input_ids[idx], self.attention_mask[idx], self.completion_ids[idx],
                       self.completion_mask[idx], self.truncated[idx], self.prompt_index[idx],
                       [self.texts[i] for i in ids])


class Reference(NamedTuple):
    """What the frozen reference says about a Rollout's completion tokens (reference_pass)."""
    ref_logp: torch.Tensor   # (N, T) float32 log pi_ref(y_t), no grad
    topk_ids: torch.Tensor   # (N, T, K) long: the reference's K most likely tokens, the safe manifold
    ref_topk_logp: torch.Tensor  # (N, T, K) float32 log pi_ref at topk_ids, no grad

    def rows(self, idx, T=None):
        """The same quantities for rows `idx` only (a slice or index tensor), first T columns."""
        return Reference(self.ref_logp[idx, :T], self.topk_ids[idx, :T], self.ref_topk_logp[idx, :T])


# --------------------------------------------------------------------- where completions end

def eos_ids(model, tokenizer):
    """Every token id that ends a completion: the generation config's EOS ids, the tokenizer's,
    and with a chat template its end-of-turn token. Qwen2.5-Math's base model lists only
    `<|endoftext|>`, while its template ends a turn with `<|im_end|>`: a completion that writes
    `<|im_end|>` has finished its answer, and what it writes after (a new turn, another answer)
    must be neither sampled, scored nor graded."""
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    if (end_of_turn := prompts.end_of_turn_id(tokenizer)) is not None:
        ids.add(end_of_turn)
    if not ids:
        raise ValueError("the tokenizer and model define no EOS token; set tokenizer.eos_token")
    return sorted(ids)


def completion_mask(completion_ids, eos):
    """(N, T) ids -> mask (N, T) float and truncated (N,) bool.

    Valid = up to and including the first EOS. Found from EOS positions, never from the pad
    id: when pad == EOS a pad-based mask would drop the EOS the model must learn to emit.

    >>> completion_mask(torch.tensor([[5, 6, 0, 0], [5, 0, 0, 0], [5, 6, 7, 8]]), [0])
    (tensor([[1., 1., 1., 0.],
            [1., 1., 0., 0.],
            [1., 1., 1., 1.]]), tensor([False, False,  True]))
    """
    is_eos = torch.isin(completion_ids, torch.tensor(eos, device=completion_ids.device))  # (N, T)
    seen_before = is_eos.cumsum(dim=1) - is_eos.long()  # (N, T) EOS strictly before t
    mask = (seen_before == 0).float()  # (N, T) 1.0 through the first EOS
    return mask, ~is_eos.any(dim=1)


# ------------------------------------------------------------------------------- sampling

def sampling_config(model, tokenizer, *, temperature=1.0, top_p=1.0, max_new_tokens=512, **extra):
    """A GenerationConfig that samples from softmax(logits / temperature), top-p aside.

    Every field we leave unset would be filled from the model's generation_config (often
    top_k=50) or transformers' defaults, so each distribution-changing knob is set explicitly.
    """
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    return GenerationConfig(do_sample=True, temperature=temperature, top_p=top_p,
                            max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos,
                            **NEUTRAL_SAMPLING, **extra)


@torch.no_grad()
def sample(model, tokenizer, problems, group_size, *, temperature=1.0, top_p=1.0,
           max_new_tokens=512, batch_size=64, sampler="auto"):
    """Sample `group_size` completions for each problem (a list of str). Returns a Rollout.

    `batch_size` rows are sampled at once. `sampler`: "hf" (`generate`), "static" (static cache +
    CUDA graph, plumbing/fast_sampler.py) or "auto" (static on CUDA, falling back to `generate` if it
    cannot run; `generate` on CPU, where it is as fast).
    """
    texts_in = [prompts.format_prompt(tokenizer, p) for p in problems]  # what the model sees
    has_template = bool(getattr(tokenizer, "chat_template", None))
    enc = tokenizer(texts_in, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=not has_template)  # the template already has its specials
    device = next(model.parameters()).device
    prompt_ids = enc["input_ids"].repeat_interleave(group_size, 0).to(device)  # (N, P)
    prompt_mask = enc["attention_mask"].repeat_interleave(group_size, 0).to(device)  # (N, P)
    eos = eos_ids(model, tokenizer)
    config = sampling_config(model, tokenizer, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens)
    pad = config.pad_token_id
    # `batch_size` rows at a time, each batch right-padded with `pad` to the longest (a batch stops
    # once all its rows have ended): `generate`, or on CUDA the static sampler of plumbing/fast_sampler.py
    completion_ids = fast_sampler.generate_in_batches(model, prompt_ids, prompt_mask, config,
                                                      batch_size, sampler)  # (N, T)
    mask, truncated = completion_mask(completion_ids, eos)  # (N, T), (N,)
    texts = tokenizer.batch_decode(completion_ids.masked_fill(mask == 0, pad), skip_special_tokens=True)
    return Rollout(
        input_ids=torch.cat([prompt_ids, completion_ids], 1),  # (N, P+T)
        attention_mask=torch.cat([prompt_mask, mask.long()], 1),  # (N, P+T)
        completion_ids=completion_ids, completion_mask=mask, truncated=truncated.cpu(),
        prompt_index=torch.arange(len(problems)).repeat_interleave(group_size), texts=texts)


# ------------------------------------------------------------------------ forward passes

def completion_logits(model, input_ids, attention_mask, T):
    """The logits that predict the last T tokens: (n, T, V) in the model's (or autocast's) dtype,
    *not* divided by the temperature (apo.gather_logp divides in float32, as `generate` does).

    Causal shift: the logit at column j predicts token j+1, so the T completion tokens
    (columns P..P+T-1) are predicted by columns P-1..P+T-2: keep T+1, drop the last.
    """
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)  # (n, P+T) as generate
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                logits_to_keep=T + 1, use_cache=False)
    return out.logits[:, :-1]  # (n, T, V)


def _pieces(T):
    return [slice(s, s + ENTROPY_TOKENS) for s in range(0, T, ENTROPY_TOKENS)]


def policy_logps(model, input_ids, attention_mask, completion_ids, *, temperature=1.0,
                 topk_ids=None):
    """One forward of a micro-batch, with grad if enabled. Returns
    logp (n, T) float32 log pi(y_t), topk_logp (n, T, K) log pi at `topk_ids` (or None),
    entropy (n, T) float32 exact entropy of pi(.|s_t), detached (computed without grad);
    pi is softmax(logits / temperature), the division done in float32 as `generate` does it."""
    T = completion_ids.shape[1]
    logits = completion_logits(model, input_ids, attention_mask, T)  # (n, T, V) model dtype
    ids = completion_ids[..., None]  # (n, T, 1) the sampled token
    if topk_ids is not None:  # one logsumexp serves the sampled token and the K anchors
        ids = torch.cat([ids, topk_ids], -1)  # (n, T, 1+K)
    logp = apo.gather_logp(logits, ids, temperature)  # (n, T, 1+K) float32 log pi, lean fwd and bwd
    with torch.no_grad():
        entropy = torch.cat([_entropy(logits[:, s].detach(), temperature) for s in _pieces(T)], 1)  # (n, T)
    return logp[..., 0], (logp[..., 1:] if topk_ids is not None else None), entropy


def _entropy(logits, temperature):
    """(n, t, V) -> (n, t) exact entropy H(pi(.|s_t)) in float32, for one piece of columns."""
    logp = torch.log_softmax(logits.float() / temperature, -1)  # (n, t, V) float32, one piece only
    return -(logp.exp() * logp).sum(-1)


@torch.no_grad()
def reference_pass(model, rollout, *, top_k, temperature=1.0, chunk_size=4):
    """Reference quantities for a whole rollout, chunk_size sequences at a time, no grad.

    Returns ref_logp (N, T) log pi_ref(y_t), topk_ids (N, T, K) and ref_topk_logp (N, T, K): the
    reference's K most likely next tokens (the safe manifold, METHOD.md §3) and their log-probs,
    as a `Reference` (a tuple: `ref_logp, topk_ids, ref_topk_logp = reference_pass(...)` works).
    Run it under the same autocast as the policy, with the same float32 weights, so that at
    step 0 the reference *is* the policy to the last bit (r_anchor exactly 1).
    """
    T = rollout.completion_ids.shape[1]
    ref_logp, topk_ids, ref_topk_logp = [], [], []
    for start in range(0, rollout.input_ids.shape[0], chunk_size):
        rows = slice(start, start + chunk_size)
        logits = completion_logits(model, rollout.input_ids[rows], rollout.attention_mask[rows], T)
        ids = logits.topk(top_k, dim=-1).indices  # (n, T, K) the safe manifold, most likely first
        logp = apo.gather_logp(logits, torch.cat([rollout.completion_ids[rows, :, None], ids], -1),
                               temperature)  # (n, T, 1+K) float32: sampled token, then the top-K
        del logits
        ref_logp.append(logp[..., 0])
        topk_ids.append(ids)
        ref_topk_logp.append(logp[..., 1:])
    return Reference(torch.cat(ref_logp), torch.cat(topk_ids), torch.cat(ref_topk_logp))  # (N,T), (N,T,K) x2


def _main():
    ap = argparse.ArgumentParser(description="Sample completions and show their log-probs.")
    ap.add_argument("--model", required=True, help="local folder or hub id")
    ap.add_argument("--problem", default="What is 3 + 4?", help="the problem text")
    ap.add_argument("--group-size", type=int, default=4, help="completions to sample")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="completion budget")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    args = ap.parse_args()
    try:
        model, tok = load_model_and_tokenizer(args.model)
        print(f"--- the prompt the model sees:\n{prompts.format_prompt(tok, args.problem)}")
        r = sample(model, tok, [args.problem], args.group_size, temperature=args.temperature,
                   max_new_tokens=args.max_new_tokens)
    except ModelLoadError as e:
        raise SystemExit(f"error: {e}")
    logp, _, _ = policy_logps(model, r.input_ids, r.attention_mask, r.completion_ids,
                              temperature=args.temperature)
    for i, text in enumerate(r.texts):
        n = int(r.completion_mask[i].sum())
        print(f"--- completion {i}: {n} tokens, truncated={bool(r.truncated[i])}, "
              f"sum log pi = {(logp[i] * r.completion_mask[i]).sum():.2f}\n{text}")


if __name__ == "__main__":
    _main()
