"""Sampling G completions per prompt from a Hugging Face causal LM, and the lean forward passes.

Used by train.py (rollouts, policy and reference log-probs) and eval.py (sampling for pass@k).
Try it on any local or hub model:
    python rollout.py --model Qwen/Qwen2.5-Math-1.5B --problem "What is 3 + 4?" --group-size 4

What it implements (METHOD.md §1, §3, §7):
- prompts through the tokenizer's chat template when it has one, with the instruction "Please
  reason step by step, and put your final answer within \\boxed{}." exactly once (Qwen2.5-Math's
  template already holds it as its default system message: the bare problem is sent), a plain
  "Question/Answer" template otherwise; left padding, so that every completion starts at the
  same column P and one `logits_to_keep` covers all completion positions;
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
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch
from transformers import GenerationConfig

import apo
from plumbing import data, fast_sampler
from plumbing.loading import (  # noqa: F401 - rollout's API
    ModelLoadError,
    load_model_and_tokenizer,
    peak_memory_mb,
    pick_device_dtype,
    resolve_model_name,
)

PROMPT_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."
PLAIN_TEMPLATE = "Question: {problem}\n{suffix}\nAnswer:"  # for tokenizers without a chat template
ENTROPY_TOKENS = 256  # completion positions per float32 entropy piece: bounds its workspace
_STYLES = {}  # chat template text -> where it wants the instruction (rendering costs ~1 ms)
_PROBE = "What is 1 + 1?"  # a problem for probing templates; it holds no instruction of its own
# Every knob that would change the sampling distribution, set to "off" (departure 1).
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

    def trimmed(self):
        """The same rows without the columns that are padding in every row: the left padding all
        prompts share and the completion columns after the longest completion. Position ids come
        from the attention mask, so the forward pass gives the same numbers on fewer columns."""
        P = self.prompt_len
        first = int(self.attention_mask[:, :P].any(0).long().argmax())  # first column any prompt uses
        T = max(1, int(self.completion_mask.sum(1).max()))  # the longest completion, EOS included
        return Rollout(self.input_ids[:, first:P + T], self.attention_mask[:, first:P + T],
                       self.completion_ids[:, :T], self.completion_mask[:, :T], self.truncated,
                       self.prompt_index, self.texts)

    def micro_batches(self, max_tokens, max_rows=0):
        """Row groups (index tensors) for the loss's forward passes, in the spirit of verl's dynamic
        batch size: rows sorted by length are packed so that each group's padded size, rows x its
        own trimmed width, stays within `max_tokens` (a longer row goes alone), and within
        `max_rows` rows when that is > 0. Short completions share big groups, long ones get small.

        >>> r = Rollout(torch.zeros(4, 6), torch.ones(4, 6), torch.zeros(4, 4),
        ...             torch.tensor([[1., 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]]),
        ...             torch.zeros(4), torch.zeros(4), ["", "", "", ""])
        >>> [g.tolist() for g in r.micro_batches(max_tokens=12)]   # widths 2 + length
        [[1, 3, 2], [0]]
        """
        prompt = self.attention_mask[:, :self.prompt_len].sum(1).tolist()  # (N,) real prompt tokens
        length = self.completion_mask.sum(1).tolist()  # (N,) completion tokens
        groups, current = [], []
        for i in sorted(range(len(length)), key=lambda r: (length[r], prompt[r])):
            rows = current + [i]
            width = max(prompt[r] for r in rows) + max(max(length[r] for r in rows), 1)
            if current and (len(rows) * width > max_tokens or 0 < max_rows < len(rows)):
                groups.append(current)
                rows = [i]
            current = rows
        return [torch.tensor(g) for g in groups + [current]]


class Reference(NamedTuple):
    """What the frozen reference says about a Rollout's completion tokens (reference_pass)."""
    ref_logp: torch.Tensor   # (N, T) float32 log pi_ref(y_t), no grad
    topk_ids: torch.Tensor   # (N, T, K) long: the reference's K most likely tokens, the safe manifold
    ref_topk_logp: torch.Tensor  # (N, T, K) float32 log pi_ref at topk_ids, no grad

    def rows(self, idx, T=None):
        """The same quantities for rows `idx` only (a slice or index tensor), first T columns."""
        return Reference(self.ref_logp[idx, :T], self.topk_ids[idx, :T], self.ref_topk_logp[idx, :T])


# -------------------------------------------------------------------------------- prompts

def format_prompt(tokenizer, problem):
    """The text the model sees for one problem: its chat template if it has one, else PLAIN_TEMPLATE.
    The instruction (PROMPT_SUFFIX) appears exactly once; see `prompt_messages`."""
    messages = prompt_messages(tokenizer, problem)
    if messages is None:
        return PLAIN_TEMPLATE.format(problem=problem, suffix=PROMPT_SUFFIX)
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_messages(tokenizer, problem):
    """The chat messages for one problem, or None for a tokenizer without a chat template.

    The instruction goes in once, where the template wants it: Qwen2.5-Math's template already
    writes it as its default system message, so the bare problem is sent (as Qwen's own
    `qwen25-math-cot` evaluation does); a template that shows a system message gets it as one;
    any other gets it after the problem in the user message."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    return _messages(_instruction_style(tokenizer), problem)


def _messages(style, problem):  # the messages of one instruction style (see `prompt_messages`)
    if style == "default_system":
        return [{"role": "user", "content": problem}]
    if style == "system":
        return [{"role": "system", "content": PROMPT_SUFFIX}, {"role": "user", "content": problem}]
    return [{"role": "user", "content": f"{problem}\n{PROMPT_SUFFIX}"}]


def _instruction_style(tokenizer):
    """Where the instruction goes for this chat template: "default_system", "system" or "user"
    (the first that renders it exactly once); ModelLoadError when none does."""
    key = repr(tokenizer.chat_template)  # a str, or a dict of named templates
    if key not in _STYLES:
        def once(messages):  # a template may refuse a role (a jinja error) or drop it silently
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001 - jinja2.TemplateError and whatever a template raises
                return False
            return isinstance(text, str) and text.count(PROMPT_SUFFIX) == 1
        styles = ("default_system", "system", "user")
        style = next((name for name in styles if once(_messages(name, _PROBE))), None)
        if style is None:
            raise ModelLoadError("the tokenizer's chat template renders neither a user message nor a system "
                                 "and a user message; give a tokenizer whose template takes them")
        _STYLES[key] = style
    return _STYLES[key]


def end_of_turn_id(tokenizer):
    """The special token a chat template writes right after an assistant message (Qwen's
    `<|im_end|>`), or None without a template or when that is not one special token."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    marker = "END_OF_TURN_PROBE"
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": _PROBE}, {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this conversation
        return None
    after = text[text.rfind(marker) + len(marker):] if marker in text else ""
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | {i for i, t in getattr(tokenizer, "added_tokens_decoder",
                                                                      {}).items() if t.special}
    return ids[0] if ids and ids[0] in special else None


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
    if (end_of_turn := end_of_turn_id(tokenizer)) is not None:
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


def drop_long_prompts(problems, tokenizer, max_tokens, flag="--max-prompt-tokens"):
    """(problems whose rendered prompt fits `max_tokens`, how many were dropped). A problem longer
    than data.prompt_char_bound characters cannot fit and is dropped before it is tokenized;
    `flag` names the setting in the error raised when none is left."""
    max_chars = data.prompt_char_bound(tokenizer, max_tokens)
    kept = [p for p in problems if len(p["problem"]) <= max_chars
            and len(tokenizer(format_prompt(tokenizer, p["problem"]))["input_ids"]) <= max_tokens]
    if not kept:
        raise data.DataError(f"every prompt is longer than {flag} {max_tokens}")
    return kept, len(problems) - len(kept)


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

    `batch_size` rows are sampled at once; a batch may stop early when all its rows have
    emitted EOS, so batches are right-padded to the longest before stacking. `sampler`:
    "hf" (`generate`), "static" (static cache + CUDA graph, fast_sampler.py) or "auto" (static on
    CUDA, falling back to `generate` if it cannot run; `generate` on CPU, where it is as fast).
    """
    prompts = [format_prompt(tokenizer, p) for p in problems]
    has_template = bool(getattr(tokenizer, "chat_template", None))
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left",
                    add_special_tokens=not has_template)  # the template already has its specials
    device = next(model.parameters()).device
    prompt_ids = enc["input_ids"].repeat_interleave(group_size, 0).to(device)  # (N, P)
    prompt_mask = enc["attention_mask"].repeat_interleave(group_size, 0).to(device)  # (N, P)
    eos = eos_ids(model, tokenizer)
    config = sampling_config(model, tokenizer, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens)
    pad = config.pad_token_id
    P = prompt_ids.shape[1]
    pieces = []
    use_static = fast_sampler.wanted(sampler, device)  # static on CUDA when transformers allows
    for start in range(0, prompt_ids.shape[0], batch_size):
        ids, attn = prompt_ids[start:start + batch_size], prompt_mask[start:start + batch_size]
        if use_static:
            try:
                pieces.append(fast_sampler.static_generate(model, ids, attn, config))  # (n, T_batch)
                continue
            except Exception as e:  # noqa: BLE001 - any failure: the slow path is always right
                if sampler == "static":
                    raise
                warnings.warn(f"static sampler failed ({type(e).__name__}: {e}); using generate")
                use_static = False
        out = model.generate(input_ids=ids, attention_mask=attn, generation_config=config)  # (n, P+T)
        pieces.append(out[:, P:])
    T = max(p.shape[1] for p in pieces)
    completion_ids = torch.cat([torch.nn.functional.pad(p, (0, T - p.shape[1]), value=pad)
                                for p in pieces])  # (N, T)
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
    pi is softmax(logits / temperature), divided in float32 (Decision 3)."""
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
        print(f"--- the prompt the model sees:\n{format_prompt(tok, args.problem)}")
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
