"""fast_sampler.py: greedy tokens equal `generate`'s to the end of the static cache, through the
CUDA path's exact call sequence: on a GPU (use_graph=True) and on CPU (use_graph="emulate")."""

import pytest
import torch

import rollout
from plumbing import fast_sampler, loading, prompts
from toy.random_qwen2 import TOY_PROBLEMS

CUDA = pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])


@pytest.fixture(scope="module")
def model_tok(random_model_dir):
    return loading.load_model_and_tokenizer(random_model_dir, dtype="float32", device="cpu")


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("mode", ["plain", "emulate", CUDA])
def test_greedy_tokens_equal_generate_to_the_end_of_the_cache(model_tok, attn, mode):
    """The CUDA path's calls (two warm-up forwards, a capture that runs nothing, one forward per
    replay) give generate's greedy tokens for a generation that runs to max_new_tokens, so the
    decode steps write every completion column the cache has; prompts of four lengths (left
    padding). A step that writes another column than the one its mask opens fails here: from
    the second step on, the tokens differ, and near the end the write leaves the cache."""
    model, tok = model_tok
    device = "cuda" if mode == "cuda" else "cpu"
    model.to(device).set_attn_implementation(attn)
    try:
        texts = [prompts.format_prompt(tok, p["problem"] + " Explain." * i)
                 for i, p in enumerate(TOY_PROBLEMS[:4])]
        enc = tok(texts, return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=False).to(device)
        assert len(set(enc["attention_mask"].sum(1).tolist())) == 4  # four different lengths
        cfg = rollout.sampling_config(model, tok, max_new_tokens=48)
        cfg.do_sample = False
        cfg.eos_token_id = [model.config.vocab_size - 1]  # an id greedy decoding never picks here
        expect = model.generate(**enc, generation_config=cfg)[:, enc["input_ids"].shape[1]:]
        assert expect.shape[1] == 48  # no row stopped: every completion column is written
        use_graph = {"plain": False, "emulate": "emulate", "cuda": True}[mode]
        got = fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"], cfg,
                                           use_graph=use_graph)
        differ = (got != expect).any(0).nonzero().flatten().tolist()
        assert not differ, f"first differing completion column: {differ[0]} of 48"
    finally:
        model.to("cpu").set_attn_implementation("sdpa")


def test_the_transformers_behaviour_it_relies_on_holds_here():
    assert fast_sampler.unsupported_reason() is None


def _write_at_cache_position(self, key_states, value_states, *args, **kwargs):
    """Another behaviour: an update that writes where `cache_position` says (as older releases did)."""
    if not self.is_initialized:
        self.lazy_initialization(key_states, value_states)
    where = kwargs["cache_position"]
    self.keys[:, :, where], self.values[:, :, where] = key_states, value_states
    return self.keys, self.values


def test_another_cache_behaviour_falls_back_to_generate_with_one_line(model_tok, monkeypatch, capsys):
    from transformers.cache_utils import StaticLayer
    model, tok = model_tok
    monkeypatch.setattr(StaticLayer, "update", _write_at_cache_position)
    monkeypatch.setattr(fast_sampler, "_REASON", [])  # forget this process's earlier check
    monkeypatch.setattr(fast_sampler, "_SAID", [])
    reason = fast_sampler.unsupported_reason()
    assert reason and "StaticLayer.update does not write at its cumulative_length" in reason
    with pytest.raises(NotImplementedError, match="cumulative_length"):
        fast_sampler.static_generate(model, *tok(["What is 2 + 3?"], return_tensors="pt").values(),
                                     rollout.sampling_config(model, tok, max_new_tokens=2))
    for _ in range(2):
        r = rollout.sample(model, tok, ["What is 2 + 3?"], 2, max_new_tokens=4, sampler="static")
        assert r.completion_ids.shape[0] == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"static sampler off: {reason}; sampling with generate"]  # once per process


def test_a_sliding_window_cache_is_refused(tmp_path):
    """Layers other than plain StaticLayers write elsewhere: the sampler refuses them, so
    rollout.sample's "auto" falls back to generate."""
    from toy import random_qwen2
    tok = random_qwen2.train_tokenizer(random_qwen2.CORPUS, random_qwen2.BPE_VOCAB)
    model = random_qwen2.qwen2_model(tok, hidden=32, layers=2, heads=4, use_sliding_window=True,
                                     sliding_window=4, max_window_layers=0)
    assert "sliding_attention" in model.config.layer_types
    enc = tok(["What is 2 + 3?"], return_tensors="pt")
    with pytest.raises(NotImplementedError, match="sliding"):
        fast_sampler.static_generate(model, enc["input_ids"], enc["attention_mask"],
                                     rollout.sampling_config(model, tok, max_new_tokens=2))


def test_a_counter_replaced_instead_of_updated_in_place_is_another_behaviour(monkeypatch):
    """The sampler writes into the counter tensor it holds: an update that rebinds the attribute
    (a new tensor each time) would leave that tensor stale, and a graph would replay a stale copy."""
    from transformers.cache_utils import StaticLayer

    def rebinding_update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        where = torch.arange(key_states.shape[-2]) + self.cumulative_length
        self.cumulative_length = self.cumulative_length + key_states.shape[-2]  # not in place
        self.keys.index_copy_(2, where, key_states)
        self.values.index_copy_(2, where, value_states)
        return self.keys, self.values
    monkeypatch.setattr(StaticLayer, "update", rebinding_update)
    assert "does not write at its cumulative_length" in fast_sampler._check_static_layer()
