"""toy/random_qwen2.py: the random Qwen2 test model's folder loads offline through the Auto classes
and behaves like Qwen2.5."""

import random
import string

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from toy.random_qwen2 import TOY_PROBLEMS, build_random_qwen2

ROUND_TRIP_TEXTS = [
    string.printable,  # every printable ASCII character, space, \t \n \r \x0b \x0c
    "What is 2 + 3?\n\nThe answer is \\boxed{12}.",
    "  two leading spaces, two trailing  \n\n\n",
    "x=-3.5e+2; y = 1/2\t\\frac{3}{4}  \\boxed{\\dfrac{1}{2}}",
    "caf\u00e9 \u00fcber \u65e5\u672c \u221a2",  # non-ASCII: NFC-normal text still comes back
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_random_qwen2(tmp_path_factory.mktemp("tiny"))
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)


def test_loads_as_qwen2_with_pad_equal_to_eos(tiny):
    tokenizer, model = tiny
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    eos_id = tokenizer.eos_token_id
    assert tokenizer.pad_token_id == eos_id == model.config.eos_token_id == model.config.pad_token_id
    assert model.generation_config.eos_token_id == [eos_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]


def test_model_is_tiny(tiny):
    _, model = tiny
    assert sum(p.numel() for p in model.parameters()) < 100_000


@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS + [p["problem"] for p in TOY_PROBLEMS])
def test_decode_of_encode_is_the_text(tiny, text):
    tokenizer, _ = tiny
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_random_ascii_round_trips(tiny):
    tokenizer, _ = tiny
    rng = random.Random(0)
    for _ in range(50):
        text = "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 60)))
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_special_tokens_are_single_ids(tiny):
    tokenizer, _ = tiny
    ids = tokenizer("<|im_start|>user\nhi<|im_end|>\n<|endoftext|>")["input_ids"]
    specials = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")]
    assert [i for i in ids if i in specials] == specials


def test_padding_is_on_the_left_with_eos(tiny):
    tokenizer, _ = tiny
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["What is 2 + 3?", "Hi"], padding=True, return_tensors="pt")
    n_short = len(tokenizer("Hi")["input_ids"])
    n_pad = batch["input_ids"].shape[1] - n_short
    assert batch["attention_mask"][1].tolist() == [0] * n_pad + [1] * n_short
    assert (batch["input_ids"][1, :n_pad] == tokenizer.eos_token_id).all()


def test_chat_template_wraps_the_problem(tiny):
    tokenizer, _ = tiny
    messages = [{"role": "user", "content": TOY_PROBLEMS[0]["problem"]}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"


def test_no_chat_template_when_disabled(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(build_random_qwen2(tmp_path, chat_template=False))
    assert not tokenizer.chat_template


def test_sampling_a_left_padded_batch(tiny):
    tokenizer, model = tiny
    batch = tokenizer([p["problem"] for p in TOY_PROBLEMS[:2]], padding=True, return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(**batch, do_sample=True, top_k=0, max_new_tokens=5)  # (2, P+T), T <= 5
    n_prompt = batch["input_ids"].shape[1]
    assert out.shape[0] == 2 and n_prompt < out.shape[1] <= n_prompt + 5
    assert torch.equal(out[:, :n_prompt], batch["input_ids"])


def test_embedding_can_be_larger_than_the_tokenizer(tmp_path):
    path = build_random_qwen2(tmp_path, vocab_size=512)
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)
    assert len(tokenizer) < 512
    assert model.get_input_embeddings().weight.shape[0] == model.config.vocab_size == 512


def test_same_seed_same_files(tmp_path):
    a = build_random_qwen2(tmp_path / "a", seed=1)
    b = build_random_qwen2(tmp_path / "b", seed=1)
    c = build_random_qwen2(tmp_path / "c", seed=2)
    wa, wb, wc = (load_file(f"{p}/model.safetensors") for p in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert (tmp_path / "a/tokenizer.json").read_text() == (tmp_path / "b/tokenizer.json").read_text()
