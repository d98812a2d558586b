"""rollout.py on a tiny Qwen2 model: masks, shapes, and lean log-probs equal to naive ones."""

import pytest
import torch
from transformers import GenerationConfig

import apo
import rollout
from plumbing import fast_sampler, loading, prompts
from toy.random_qwen2 import TOY_PROBLEMS

PROBLEMS = [TOY_PROBLEMS[0]["problem"], TOY_PROBLEMS[5]["problem"] + " Think hard about it."]


@pytest.fixture(scope="module")
def model_tok(random_model_dir):
    return loading.load_model_and_tokenizer(random_model_dir)


@pytest.fixture(scope="module")
def roll(model_tok):
    model, tok = model_tok
    torch.manual_seed(0)
    return rollout.sample(model, tok, PROBLEMS, 3, temperature=0.9, max_new_tokens=12, batch_size=4)


def naive_logp(model, r, temperature):
    """Full-vocabulary float32 log_softmax over every position, then the completion slice."""
    pos = (r.attention_mask.cumsum(-1) - 1).clamp_min(0)
    logits = model(input_ids=r.input_ids, attention_mask=r.attention_mask, position_ids=pos).logits
    T = r.completion_ids.shape[1]
    return torch.log_softmax(logits[:, -T - 1:-1].float() / temperature, -1)  # (N, T, V)


def test_shapes_and_left_padding(model_tok, roll):
    _, tok = model_tok
    N, T = roll.completion_ids.shape
    assert N == 6 and roll.input_ids.shape == (6, roll.prompt_len + T)
    assert roll.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    assert len(roll.texts) == 6
    assert (roll.attention_mask[:, roll.prompt_len - 1] == 1).all()  # left padding: last column real
    assert (roll.attention_mask[:3, 0] == 0).all()  # the shorter prompt is padded on the left


def test_mask_keeps_eos_when_pad_is_eos(model_tok, roll):
    model, tok = model_tok
    assert tok.pad_token_id == tok.eos_token_id  # the trap this guards against
    eos = rollout.eos_ids(model, tok)
    for ids, mask, trunc in zip(roll.completion_ids, roll.completion_mask, roll.truncated):
        hits = [t for t, i in enumerate(ids.tolist()) if i in eos]
        end = hits[0] + 1 if hits else len(ids)  # valid tokens: through the first EOS
        assert mask.tolist() == [1.0] * end + [0.0] * (len(ids) - end)
        assert bool(trunc) == (not hits)


def test_completion_mask_on_a_hand_made_case():
    ids = torch.tensor([[7, 0, 0], [0, 5, 5], [4, 4, 4]])  # EOS = 0 first, in the middle, never
    mask, trunc = rollout.completion_mask(ids, [0])
    assert mask.tolist() == [[1, 1, 0], [1, 0, 0], [1, 1, 1]]
    assert trunc.tolist() == [False, False, True]


def test_policy_logps_equal_naive_log_softmax(model_tok, roll, monkeypatch):
    model, _ = model_tok
    monkeypatch.setattr(rollout, "ENTROPY_TOKENS", 5)  # force several pieces
    monkeypatch.setattr(apo, "LEAN_PIECE_ELEMENTS", 1000)
    ids = torch.randint(0, 50, roll.completion_ids.shape + (4,))
    logp, topk_logp, entropy = rollout.policy_logps(
        model, roll.input_ids, roll.attention_mask, roll.completion_ids, temperature=0.9, topk_ids=ids)
    full = naive_logp(model, roll, 0.9)
    assert torch.allclose(logp, full.gather(-1, roll.completion_ids[..., None]).squeeze(-1), atol=1e-5)
    assert torch.allclose(topk_logp, full.gather(-1, ids), atol=1e-5)
    assert torch.allclose(entropy, -(full.exp() * full).sum(-1), atol=1e-4)


def test_reference_pass_equals_naive_topk(model_tok, roll, monkeypatch):
    model, _ = model_tok
    monkeypatch.setattr(apo, "LEAN_PIECE_ELEMENTS", 1000)
    ref_logp, topk_ids, ref_topk_logp = rollout.reference_pass(model, roll, top_k=8, temperature=0.9,
                                                           chunk_size=4)
    full = naive_logp(model, roll, 0.9)
    assert torch.allclose(ref_logp, full.gather(-1, roll.completion_ids[..., None]).squeeze(-1), atol=1e-5)
    top = full.topk(8, -1)
    assert torch.allclose(ref_topk_logp, top.values, atol=1e-5)
    assert torch.equal(topk_ids, top.indices)


def test_sampling_distribution_is_the_policy(model_tok):
    """generate's processed scores equal logits / temperature (no hidden top_k or penalty), and
    our forward pass reproduces those logits for the sampled tokens (same position ids)."""
    model, tok = model_tok
    enc = tok([prompts.format_prompt(tok, p) for p in PROBLEMS], return_tensors="pt", padding=True,
              padding_side="left", add_special_tokens=False)
    eos = rollout.eos_ids(model, tok)
    cfg = rollout.sampling_config(model, tok, temperature=0.7, max_new_tokens=8, output_scores=True,
                                  output_logits=True, return_dict_in_generate=True)
    saved = model.generation_config
    model.generation_config = GenerationConfig.from_dict(
        saved.to_dict() | {"top_k": 5, "repetition_penalty": 1.3, "min_p": 0.2})  # would bias sampling
    try:
        torch.manual_seed(1)
        out = model.generate(**enc, generation_config=cfg)
    finally:
        model.generation_config = saved
    scores = torch.stack(out.scores, 1).log_softmax(-1)  # (B, T, V) what was sampled from
    raw = (torch.stack(out.logits, 1) / 0.7).log_softmax(-1)  # (B, T, V) the policy
    assert torch.allclose(scores, raw, atol=1e-5)
    completion = out.sequences[:, enc["input_ids"].shape[1]:]
    mask, _ = rollout.completion_mask(completion, eos)
    attn = torch.cat([enc["attention_mask"], mask.long()], 1)
    logp, _, _ = rollout.policy_logps(model, out.sequences, attn, completion, temperature=0.7)
    expect = raw.gather(-1, completion[..., None]).squeeze(-1)
    assert torch.allclose(logp * mask, expect * mask, atol=1e-4)


def test_prompt_uses_chat_template_or_plain_text(model_tok, random_model_dir):
    _, tok = model_tok
    text = prompts.format_prompt(tok, "What is 1 + 1?")
    assert text == ("<|im_start|>system\n" + prompts.PROMPT_SUFFIX + "<|im_end|>\n"  # its template shows a
                    "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n<|im_start|>assistant\n")  # system role
    tok.chat_template = None
    try:
        assert prompts.format_prompt(tok, "What is 1 + 1?") == prompts.PLAIN_TEMPLATE.format(
            problem="What is 1 + 1?", suffix=prompts.PROMPT_SUFFIX)
    finally:
        tok.chat_template = loading.load_model_and_tokenizer(random_model_dir)[1].chat_template


def test_missing_model_folder_raises_a_clear_error(tmp_path):
    with pytest.raises(loading.ModelLoadError, match="does not exist"):
        loading.load_model_and_tokenizer(str(tmp_path / "nope"))


def _prompts(tok):
    return tok([prompts.format_prompt(tok, p["problem"]) for p in TOY_PROBLEMS[:5]], return_tensors="pt",
               padding=True, padding_side="left", add_special_tokens=False)


@pytest.mark.parametrize("kw", [dict(temperature=1.0), dict(temperature=0.7, top_p=0.9), dict(greedy=True)])
def test_static_sampler_reproduces_generate_exactly(model_tok, kw):
    """Same seed, same tokens: the static-cache path draws from the same distribution with the
    same random numbers as generate (greedy: identical argmax path)."""
    model, tok = model_tok
    enc = _prompts(tok)
    kw = dict(kw)
    greedy = kw.pop("greedy", False)
    cfg = rollout.sampling_config(model, tok, max_new_tokens=30, **kw)
    cfg.do_sample = not greedy
    torch.manual_seed(3)
    expect = model.generate(**enc, generation_config=cfg)[:, enc["input_ids"].shape[1]:]
    torch.manual_seed(3)
    got = fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"], cfg, use_graph=False)
    assert torch.equal(got, expect)


def test_static_sampler_stops_like_generate_when_rows_finish_early(model_tok):
    model, tok = model_tok
    enc = _prompts(tok)
    cfg = rollout.sampling_config(model, tok, max_new_tokens=60)
    cfg.eos_token_id = list(range(0, 400, 7))  # many stop tokens: rows end at different steps
    for seed in range(3):
        torch.manual_seed(seed)
        expect = model.generate(**enc, generation_config=cfg)[:, enc["input_ids"].shape[1]:]
        torch.manual_seed(seed)
        got = fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"], cfg,
                                           use_graph=False)
        assert expect.shape[1] < 60  # the case is exercised: generation stopped early
        assert torch.equal(got, expect)


def test_static_sampler_token_statistics_match_the_policy(model_tok):
    """First-token frequencies over 2000 samples match softmax(logits). Tokens are grouped in
    8 bins of 50 by probability rank, so the noise is small (expected total variation ~0.03)
    while a truncated sampler (top_k=50 keeps one bin) would be far off."""
    model, tok = model_tok
    enc = tok([prompts.format_prompt(tok, "What is 2 + 3?")] * 2000, return_tensors="pt",
              add_special_tokens=False)
    cfg = rollout.sampling_config(model, tok, max_new_tokens=1)
    torch.manual_seed(0)
    got = fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"], cfg, use_graph=False)
    probs = torch.softmax(model(**{k: v[:1] for k, v in enc.items()}).logits[0, -1], -1)
    freq = torch.bincount(got[:, 0], minlength=probs.numel()).float() / got.shape[0]
    order = probs.argsort(descending=True)
    bins_p = probs[order].detach().view(8, -1).sum(1)  # (8,) probability mass per rank bin
    bins_f = freq[order].view(8, -1).sum(1)
    assert 0.5 * (bins_f - bins_p).abs().sum() < 0.08


def test_auto_sampler_uses_generate_on_cpu(model_tok, monkeypatch):
    model, tok = model_tok
    monkeypatch.setattr(fast_sampler, "static_generate", lambda *a, **k: pytest.fail("static path on CPU"))
    r = rollout.sample(model, tok, ["What is 2 + 3?"], 2, max_new_tokens=4)
    assert r.completion_ids.shape[0] == 2


# --------------------------------------------------------- one precision path (bf16 autocast)

def _cpu_bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)  # stands in for train.py's GPU autocast


def test_bf16_policy_logps_equal_the_samplers_own_logprobs(model_tok):
    """Under bf16 autocast at temperature 0.7 the loss scores a sampled token with the very
    float32 distribution `generate` sampled it from: the division by the temperature happens in
    float32 on both sides (bf16 division would be off by ~1e-3 nats, up to 0.2 on big logits).
    What may remain is bf16 kernel noise: a cached decode step and a full forward can round a
    logit one bf16 unit apart on some CPUs (2.6e-4 nats on 1 of 16 tokens seen here), so most
    tokens, not all, must agree to float32 noise; bf16 division leaves ~1 in 16 that close."""
    model, tok = model_tok
    enc = tok([prompts.format_prompt(tok, p) for p in PROBLEMS], return_tensors="pt", padding=True,
              padding_side="left", add_special_tokens=False)
    cfg = rollout.sampling_config(model, tok, temperature=0.7, max_new_tokens=8, output_scores=True,
                                  return_dict_in_generate=True)
    torch.manual_seed(2)
    with _cpu_bf16():
        out = model.generate(**enc, generation_config=cfg)
    completion = out.sequences[:, enc["input_ids"].shape[1]:]
    mask, _ = rollout.completion_mask(completion, rollout.eos_ids(model, tok))
    sampler = torch.stack(out.scores, 1).log_softmax(-1).gather(-1, completion[..., None]).squeeze(-1)
    attn = torch.cat([enc["attention_mask"], mask.long()], 1)
    with _cpu_bf16():
        logp, _, _ = rollout.policy_logps(model, out.sequences, attn, completion, temperature=0.7)
    diff = (logp - sampler).abs()[mask.bool()]
    assert (diff < 1e-5).float().mean() >= 0.75  # float32 noise on most tokens, not bf16 rounding
    assert diff.max() < 1e-3  # and bf16 kernel noise at most


def test_bf16_reference_at_step_0_is_the_policy_bit_for_bit(model_tok, roll):
    """The reference runs the policy's precision path (float32 weights, the same autocast), so
    at step 0 its log-probs equal the policy's and r_anchor is exactly 1 on every token."""
    model, _ = model_tok
    with _cpu_bf16():
        ref = rollout.reference_pass(model, roll, top_k=4, temperature=0.7, chunk_size=3)
        logp, topk_logp, _ = rollout.policy_logps(
            model, roll.input_ids, roll.attention_mask, roll.completion_ids, temperature=0.7,
            topk_ids=ref.topk_ids)
    assert torch.equal(logp, ref.ref_logp) and torch.equal(topk_logp, ref.ref_topk_logp)
    in_s = ref.topk_ids != roll.completion_ids[..., None]
    r_anchor = apo.anchor_ratio(topk_logp, ref.ref_topk_logp, ~in_s)
    m = roll.completion_mask.bool() & in_s.any(-1)
    assert torch.equal(r_anchor[m], torch.ones_like(r_anchor[m]))


def test_temperature_is_divided_in_float32_like_generate(model_tok):
    """From the very bf16 logits `generate` saw, gather_logp's log pi equals the log-softmax of
    generate's float32 scores; dividing the bf16 logits in bf16 (the old path) does not."""
    model, tok = model_tok
    prompt = prompts.format_prompt(tok, "What is 2 + 3?")
    enc = tok([prompt] * 4, return_tensors="pt", add_special_tokens=False)
    cfg = rollout.sampling_config(model, tok, temperature=0.7, max_new_tokens=6, output_scores=True,
                                  output_logits=True, return_dict_in_generate=True)
    torch.manual_seed(3)
    with _cpu_bf16():
        out = model.generate(**enc, generation_config=cfg)
    raw = torch.stack(out.logits, 1).to(torch.bfloat16)  # (B, T, V) exact: they were bf16 logits
    y = out.sequences[:, enc["input_ids"].shape[1]:, None]  # (B, T, 1)
    sampler = torch.stack(out.scores, 1).log_softmax(-1).gather(-1, y)  # (B, T, 1) float32
    assert (apo.gather_logp(raw, y, 0.7) - sampler).abs().max() < 1e-5
    assert (apo.gather_logp(raw / 0.7, y) - sampler).abs().max() > 1e-4  # bf16 division: visibly off
