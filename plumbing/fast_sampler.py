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
   written in place, one column per decode step, so every decode step has identical shapes.
2. A 4D attention mask of that full length, prepared once: padding columns closed, future
   columns opened one per step by writing a single element. No mask is rebuilt.
3. With fixed shapes and fixed buffers, the whole decode forward is recorded once as a CUDA
   graph and replayed each step: one launch instead of hundreds.
Sampling (temperature, top-p, multinomial) happens outside the graph with transformers' own
logits warpers and the same calls as `generate`, so the distribution is exactly the same; CPU
tests check greedy outputs identical to `generate` and the sampled token statistics.

The transformers behaviour this relies on (checked once per process by `unsupported_reason`,
tested with transformers 5.24-5.25, the range in requirements.txt): a `StaticCache` is a list of
`StaticLayer`s, and `StaticLayer.update` writes the new keys and values at the column held in
its own tensor `cumulative_length`, then adds 1 to it; it ignores any `cache_position` passed to
the model. A counter that grows with every forward would be wrong here: a CUDA graph's warm-up
forwards advance it, the capture does not, and every replay does. So each decode step first
copies the column it means (`column`, a graph input) into every layer's counter. That copy is
part of the recorded step, so warm-ups, the capture and each replay write where the mask opens.
`use_graph="emulate"` runs that same call sequence on CPU, where the tests check it: the same
tensor state changes (a capture records Python calls and runs none of their kernels; the
emulation runs the step's Python on every replay, harmless while no forward keeps Python-side
state, as none does on this path in the supported range).

Departures: none from the method; where this path cannot run (no CUDA, an attention kernel we
do not know, a capture error) rollout.sample falls back to `generate`, which is always correct.
"""

import warnings

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
    use_graph: None (a CUDA graph on CUDA), True, False, or "emulate": the CUDA path's calls on
    any device (warm-ups run, the capture runs nothing, each replay runs the step once).
    Raises NotImplementedError where this path cannot run; rollout.sample then uses `generate`.
    """
    from transformers import StaticCache
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper
    B, P = prompt_ids.shape
    T, device = config.max_new_tokens, prompt_ids.device
    use_graph = device.type == "cuda" if use_graph is None else use_graph
    if use_graph not in (True, False, "emulate"):
        raise ValueError(f"use_graph must be True, False, None or 'emulate', got {use_graph!r}")
    if reason := unsupported_reason():
        raise NotImplementedError(reason)
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
                cache=cache, use_cache=True, logits_to_keep=1)  # prefill: writes cache columns 0..P-1
    logits = out.logits[:, -1]  # (B, V)
    counters = _write_counters(cache, P)  # each layer's "next column to write" (see the docstring)
    # the static inputs of one decode step; the graph reads and writes only these buffers
    tok = torch.zeros(B, 1, dtype=torch.long, device=device)  # (B, 1) graph input: the token just sampled
    pos = torch.zeros(B, 1, dtype=torch.long, device=device)  # (B, 1) graph input: its RoPE position id
    column = torch.zeros((), dtype=torch.long, device=device)  # () graph input: the cache column written
    mask = _decode_mask(prompt_mask, P + T, attn_impl, logits.dtype)  # (B, 1, 1, P+T) graph input, in place
    first_pos = prompt_mask.long().sum(-1, keepdim=True)  # (B, 1) position id of completion token 0

    def step():
        for counter in counters:  # write at `column`, however many forwards ran before (a graph op too)
            counter.copy_(column)
        return model(input_ids=tok, attention_mask=mask, position_ids=pos, cache=cache,
                     use_cache=True).logits[:, -1]  # (B, V)

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
        column.fill_(P + t)
        _open_column(mask, P + t)
        if use_graph and graph is None:
            graph, graph_logits = _capture(step, emulate=use_graph == "emulate")
        if graph is not None:
            graph.replay()  # one launch: the whole forward pass, recorded once
            logits = graph_logits  # (B, V) a static buffer, read by pick() before the next replay
        else:
            logits = step()
    return _trim_finished(generated, eos)


def _write_counters(cache, prompt_len):
    """Each cache layer's write counter (a 0-d tensor), after the prefill wrote `prompt_len`
    columns; raises NotImplementedError for a cache whose layers write elsewhere."""
    from transformers.cache_utils import StaticLayer
    counters = [getattr(layer, "cumulative_length", None) for layer in cache.layers]
    if any(type(layer) is not StaticLayer for layer in cache.layers) or not all(
            isinstance(c, torch.Tensor) and c.dim() == 0 and int(c) == prompt_len for c in counters):
        raise NotImplementedError("the static cache's layers are not plain StaticLayers that counted "
                                  "the prompt's columns (a sliding-window model?)")
    return counters


_REASON = []  # the check below runs once per process; its answer is kept here
_SAID = []  # the fallback line is printed once per process


def wanted(sampler, device):
    """Does rollout.sample use `static_generate`? For sampler "static", or "auto" on CUDA (on a CPU
    `generate` is as fast) - unless transformers behaves otherwise than this file assumes: then
    one printed line, once per process, and `generate`."""
    if sampler not in ("auto", "hf", "static"):
        raise ValueError(f"sampler must be auto, hf or static, got {sampler!r}")
    if not (sampler == "static" or (sampler == "auto" and device.type == "cuda")):
        return False
    if reason := unsupported_reason():
        if not _SAID:
            _SAID.append(True)
            print(f"static sampler off: {reason}; sampling with generate", flush=True)
        return False
    return True


def unsupported_reason():
    """None when transformers' StaticLayer behaves as this sampler assumes (module docstring),
    else one sentence saying what differs. Checked once per process on a 4-column CPU layer:
    a write after the counter is set to 2 must land in column 2, whatever cache_position says."""
    if not _REASON:
        _REASON.append(_check_static_layer())
    return _REASON[0]


def _check_static_layer():
    import transformers
    try:
        from transformers.cache_utils import StaticLayer
        layer = StaticLayer(max_cache_len=4)
        zeros = torch.zeros(1, 1, 1, 2)
        layer.update(zeros, zeros, cache_position=torch.tensor([0]))  # allocates the buffers
        counter = layer.cumulative_length  # the tensor the sampler holds and writes into
        counter.fill_(2)
        keys, _ = layer.update(zeros + 7, zeros + 7, cache_position=torch.tensor([0]))
        written = keys[0, 0, :, 0].tolist()
        ok = (written == [0.0, 0.0, 7.0, 0.0] and layer.cumulative_length is counter
              and int(counter) == 3)  # updated in place: a graph replay advances it too
    except Exception as e:  # noqa: BLE001 - any other API is "another behaviour"
        written, ok = f"{type(e).__name__}: {e}", False
    if ok:
        return None
    return (f"transformers {transformers.__version__}: StaticLayer.update does not write at its "
            f"cumulative_length counter (column values {written}, expected [0, 0, 7, 0])")


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


class _EmulatedGraph:
    """What `torch.cuda.CUDAGraph.replay` does, run eagerly on any device: `step` once, its
    output written into the buffer that the capture returned."""

    def __init__(self, step, out):
        self.step, self.out = step, out

    def replay(self):
        self.out.copy_(self.step())


def _capture(step, emulate=False):
    """Warm up on a side stream, then record `step` as a CUDA graph; returns (graph, output).

    emulate=True runs the same Python calls on CPU: the warm-up steps run, the capture records
    without running (so no state changes), and each replay runs `step` once."""
    if emulate:
        for _ in range(2):
            out = step()
        buffer = torch.empty_like(out)  # the capture's output: a static buffer each replay overwrites
        return _EmulatedGraph(step, buffer), buffer
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


def generate_in_batches(model, prompt_ids, prompt_mask, config, batch_size, sampler="auto"):
    """Completion ids (N, T) for left-padded prompts (N, P), `batch_size` rows at a time: with
    `static_generate` where `wanted` says so, else `generate`. A failure of the static path warns
    once and falls back to `generate` (sampler "static" re-raises it). Batches that stop early are
    right-padded with the config's pad id to the longest."""
    pieces, P, use_static = [], prompt_ids.shape[1], wanted(sampler, prompt_ids.device)
    for start in range(0, prompt_ids.shape[0], batch_size):
        ids, attn = prompt_ids[start:start + batch_size], prompt_mask[start:start + batch_size]
        if use_static:
            try:
                pieces.append(static_generate(model, ids, attn, config))  # (n, T_batch)
                continue
            except Exception as e:  # noqa: BLE001 - any failure: the slow path is always right
                if sampler == "static":
                    raise
                warnings.warn(f"static sampler failed ({type(e).__name__}: {e}); using generate")
                use_static = False
        out = model.generate(input_ids=ids, attention_mask=attn, generation_config=config)  # (n, P+T)
        pieces.append(out[:, P:])
    T = max(p.shape[1] for p in pieces)
    return torch.cat([torch.nn.functional.pad(p, (0, T - p.shape[1]), value=config.pad_token_id)
                      for p in pieces])  # (N, T)
