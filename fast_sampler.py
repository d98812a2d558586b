"""The fast sampler: a static KV cache and a CUDA-graph decode step, the same samples as `generate`.

`rollout.sample` is the one entry point; it calls `static_generate` on a GPU (`--sampler auto`
or `static`) and falls back to `generate` when this path cannot run. Read rollout.py first:
this file is only an optimisation, and nothing about the RL method lives here.

Why `generate` is slow on a GPU. Decoding one token for 256 sequences of a 1.5B model reads
the 3 GB of weights once: ~1 ms of H100 memory bandwidth. But the Python code of a forward
pass launches hundreds of small kernels, each costing a few microseconds of CPU time, and
`generate` also re-builds masks and grows its cache every step: ~70 ms a step, whatever the
batch size. The GPU mostly waits for the CPU.

The fix, in three parts:
1. A *static* KV cache: one buffer of length P + max_new_tokens allocated up front and
   written in place at `cache_position`, so every decode step has identical shapes.
2. A 4D attention mask of that full length, prepared once: padding columns closed, future
   columns opened one per step by writing a single element. No mask is rebuilt.
3. With fixed shapes and fixed buffers, the whole decode forward is recorded once as a CUDA
   graph and replayed each step: one launch instead of hundreds.
Sampling (temperature, top-p, multinomial) happens outside the graph with transformers' own
logits warpers and the same calls as `generate`, so the distribution is exactly the same; CPU
tests check greedy outputs identical to `generate` and the sampled token statistics.

Departures: none from the method; where this path cannot run (no CUDA, an attention kernel we
do not know, a capture error) rollout.sample falls back to `generate`, which is always correct.
"""

import torch

STOP_CHECK_EVERY = 16  # decode steps between "all finished?" checks (each one syncs the GPU)


def _decode_mask(prompt_mask, total_len, attn_impl, dtype):
    """(B, 1, 1, L) mask for one-token queries: prompt padding closed, completion columns
    closed until their step opens them. Bool for SDPA (True = attend), additive float for
    eager attention (0 = attend, dtype min = masked)."""
    B, P = prompt_mask.shape
    allowed = torch.zeros(B, 1, 1, total_len, dtype=torch.bool, device=prompt_mask.device)
    allowed[:, 0, 0, :P] = prompt_mask.bool()
    if attn_impl == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)


def _open_column(mask, col):
    """Let every query attend to cache column `col` from now on (in place, graph-safe)."""
    mask[..., col] = True if mask.dtype == torch.bool else 0.0


@torch.no_grad()
def static_generate(model, prompt_ids, prompt_mask, config, *, use_graph=None):
    """Sample like `model.generate(prompt_ids, attention_mask=prompt_mask, generation_config=config)`
    with a static cache and, on CUDA, a CUDA-graph decode step. Returns completion ids (B, T).

    Only sampling configs made by `sampling_config` (or greedy ones) are supported.
    """
    from transformers import StaticCache
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper
    B, P = prompt_ids.shape
    T, device = config.max_new_tokens, prompt_ids.device
    use_graph = device.type == "cuda" if use_graph is None else use_graph
    attn_impl = model.config._attn_implementation
    if attn_impl not in ("sdpa", "eager"):
        raise NotImplementedError(f"static_generate supports sdpa and eager attention, not {attn_impl}")
    eos = torch.tensor(config.eos_token_id if isinstance(config.eos_token_id, list)
                       else [config.eos_token_id], device=device)
    warpers = []
    if config.do_sample and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if config.do_sample and config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(config.top_p))

    def pick(logits, generated):  # exactly generate's token selection
        scores = logits.to(dtype=torch.float32, copy=True)  # (B, V)
        for w in warpers:
            scores = w(generated, scores)
        if config.do_sample:
            return torch.multinomial(torch.softmax(scores, -1), num_samples=1).squeeze(1)  # (B,)
        return scores.argmax(-1)

    cache = StaticCache(config=model.config, max_cache_len=P + T)
    position = (prompt_mask.long().cumsum(-1) - 1).clamp_min(0)  # (B, P) as generate
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position,
                cache=cache, cache_position=torch.arange(P, device=device), use_cache=True,
                logits_to_keep=1)  # prefill: fills the cache for all prompt columns
    logits = out.logits[:, -1]  # (B, V)
    # the static inputs of one decode step; the graph reads and writes only these buffers
    tok = torch.zeros(B, 1, dtype=torch.long, device=device)  # (B, 1) graph input: the token just sampled
    pos = torch.zeros(B, 1, dtype=torch.long, device=device)  # (B, 1) graph input: its RoPE position id
    cache_pos = torch.zeros(1, dtype=torch.long, device=device)  # (1,) graph input: the cache column written
    mask = _decode_mask(prompt_mask, P + T, attn_impl, logits.dtype)  # (B, 1, 1, P+T) graph input, in place
    first_pos = prompt_mask.long().sum(-1, keepdim=True)  # (B, 1) position id of completion token 0

    def step():
        return model(input_ids=tok, attention_mask=mask, position_ids=pos, cache=cache,
                     cache_position=cache_pos, use_cache=True).logits[:, -1]  # (B, V)

    graph, graph_logits = None, None
    unfinished = torch.ones(B, dtype=torch.bool, device=device)  # (B,) no EOS yet
    generated = torch.empty(B, 0, dtype=torch.long, device=device)  # (B, t) completion so far
    for t in range(T):
        next_tok = pick(logits, torch.cat([prompt_ids, generated], 1))  # (B,)
        next_tok = torch.where(unfinished, next_tok, config.pad_token_id)
        generated = torch.cat([generated, next_tok[:, None]], 1)  # (B, t+1)
        unfinished &= ~torch.isin(next_tok, eos)
        if t == T - 1 or ((t + 1) % STOP_CHECK_EVERY == 0 and not unfinished.any()):
            break
        tok.copy_(next_tok[:, None])
        pos.copy_(first_pos + t)
        cache_pos.fill_(P + t)
        _open_column(mask, P + t)
        if use_graph and graph is None:
            graph, graph_logits = _capture(step)
        if graph is not None:
            graph.replay()  # one launch: the whole forward pass, recorded once
            logits = graph_logits  # (B, V) a static buffer, read by pick() before the next replay
        else:
            logits = step()
    return _trim_finished(generated, eos)


def unfinished_steps(generated, eos):
    """(B, t) -> (t,) bool: was any row still running before step j."""
    ended = torch.isin(generated, eos).cumsum(1) > 0  # (B, t) ended at or before j
    return torch.cat([torch.ones(1, dtype=torch.bool, device=generated.device),
                      (~ended[:, :-1]).any(0)])


def _trim_finished(generated, eos):
    """Drop the columns after the step where every row had ended, as generate does."""
    running = unfinished_steps(generated, eos)  # (t,)
    keep = int(running.nonzero().max().item()) + 1
    return generated[:, :keep]


def _capture(step):
    """Warm up on a side stream, then record `step` as a CUDA graph; returns (graph, output)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up runs compute the same step; the cache write is idempotent
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    return graph, out
