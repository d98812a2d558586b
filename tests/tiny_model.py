"""A tiny random-weight Qwen2 causal LM and a matching byte-level BPE tokenizer, for CPU tests.

    python tests/tiny_model.py /tmp/tiny-qwen2     # writes the folder and samples from it

`build_tiny_model(path)` writes a folder that `AutoTokenizer.from_pretrained(path)` and
`AutoModelForCausalLM.from_pretrained(path)` load offline, in under 0.1 s, so that rollout,
training and evaluation code can run end to end on a model with the same plumbing as
Qwen2.5-Math: the Qwen2 architecture (grouped-query attention, tied embeddings), Qwen2's
byte-level BPE pre-tokenization, pad == EOS == "<|endoftext|>", left padding, an
"<|im_start|>/<|im_end|>" chat template. `TINY_PROBLEMS` are toy problems with gold answers.

Choices, with reasons:
1. The tokenizer is built as a `Qwen2Tokenizer` from a BPE trained here on a few lines of math
   text. For a folder whose config says `qwen2`, AutoTokenizer builds a `Qwen2Tokenizer` anyway,
   and that class rebuilds its own pre-tokenizer (Qwen2's split regex + ByteLevel) from the
   saved vocab and merges, ignoring any other pre-tokenizer in tokenizer.json. Training with
   that same pre-tokenizer makes what is saved and what is loaded the same tokenizer.
2. All 256 byte symbols are in the vocabulary, so any text (spaces, newlines, non-ASCII)
   encodes and decodes back exactly; the BPE has no unknown token and would drop a missing byte.
3. `padding_side="left"` is passed to the constructor: only constructor arguments are saved
   to tokenizer_config.json.
4. pad == EOS, as in Qwen2.5-Math base models, so downstream code must find completion ends
   from the first EOS, not from the pad id. With a chat template, generation_config also
   stops at "<|im_end|>" (a list of two EOS ids), as Qwen chat models do.
5. The embedding may be larger than the tokenizer (`vocab_size`), as Qwen's 151936 rows for
   151665 tokens are: a random model can then sample ids that decode to nothing.
6. generation_config sets only the token ids. In transformers 5.x every other field loads as
   None and `generate` fills it from library defaults (do_sample=False, max_length=20,
   top_k=50, top_p=1.0, temperature=1.0): sample with top_k=0 to get the model's distribution.
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:  # `python tests/tiny_model.py`: the repository root is not on the path
    sys.path.insert(0, ROOT)
from toy import tiny_lm  # noqa: E402  (the one Qwen2 BPE builder)

EOS, IM_START, IM_END = tiny_lm.EOS, tiny_lm.IM_START, tiny_lm.IM_END  # pad == EOS, as Qwen2.5-Math
BPE_VOCAB = 400  # 256 byte symbols + 3 special tokens + ~140 merges learned from CORPUS
MAX_POSITIONS = 1024  # longest prompt + completion the tiny model accepts
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TINY_PROBLEMS = [
    {"problem": "What is 2 + 3?", "answer": "5"},
    {"problem": "What is 7 - 4?", "answer": "3"},
    {"problem": "What is 6 * 7?", "answer": "42"},
    {"problem": "What is 12 / 4?", "answer": "3"},
    {"problem": "What is 9 + 8?", "answer": "17"},
    {"problem": "What is 15 - 9?", "answer": "6"},
    {"problem": "What is 3 * 5?", "answer": "15"},
    {"problem": "What is 20 / 5?", "answer": "4"},
    {"problem": "What is 11 + 14?", "answer": "25"},
    {"problem": "What is 30 - 12?", "answer": "18"},
    {"problem": "What is 8 * 9?", "answer": "72"},
    {"problem": "What is 81 / 9?", "answer": "9"},
    {"problem": "Solve for x: x + 4 = 10.", "answer": "6"},
    {"problem": "Solve for x: 2x = 14.", "answer": "7"},
    {"problem": "What is 1/2 + 1/4?", "answer": "\\frac{3}{4}"},
    {"problem": "What is 2^5?", "answer": "32"},
]

CORPUS = [  # the text the BPE merges are learned from: words and symbols of the prompts above
    *(p["problem"] for p in TINY_PROBLEMS),
    *(f"The answer is \\boxed{{{p['answer']}}}.\n" for p in TINY_PROBLEMS),
    "Please reason step by step, and put your final answer within \\boxed{}.\n",
    "Question: What is the value of x?\nAnswer: We have x = 3 + 4 = 7, so the answer is 7.\n",
    "First, we add the two numbers. Then we multiply by 2 and subtract 1.\n\n",
    "Let x be a number such that 2x + 1 = 9. Then 2x = 8 and x = 4. The answer is \\boxed{4}.\n",
    "The sum of 1/2 and 1/3 is \\frac{5}{6}. The product is (1)(2) = 2; the result is -3.\n",
]


def train_tokenizer(vocab_size=BPE_VOCAB):
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on CORPUS (toy/tiny_lm.py builds it)."""
    return tiny_lm.train_tokenizer(CORPUS, vocab_size, max_positions=MAX_POSITIONS)


def build_tiny_model(path, *, vocab_size=None, hidden=32, layers=2, heads=4, seed=0, chat_template=True):
    """Write a random-weight Qwen2 causal LM and its tokenizer to `path`; return `path` as a str.

    vocab_size: embedding rows; None means one per tokenizer entry, a larger number leaves rows
    no token decodes to (as in Qwen2.5). hidden/layers/heads: model width, depth, query heads
    (half as many key/value heads when `heads` is even: grouped-query attention, as in Qwen2).
    seed: torch seed for the weights. chat_template: save a Qwen-style chat template, or none.
    """
    path = Path(path)
    tokenizer = train_tokenizer()
    if vocab_size is None:
        vocab_size = len(tokenizer)
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is below the tokenizer's {len(tokenizer)} tokens; "
                         f"pass vocab_size=None or a larger number.")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not a multiple of heads={heads}; pick heads that divide it.")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    eos_id = tokenizer.eos_token_id
    im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads // 2 if heads % 2 == 0 else heads,
        max_position_embeddings=MAX_POSITIONS, tie_word_embeddings=True,  # tied, as Qwen2.5-1.5B
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,  # one id, as Qwen2.5-Math
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).float()
    model.generation_config = GenerationConfig(
        bos_token_id=eos_id, pad_token_id=eos_id,
        eos_token_id=[eos_id, im_end_id] if chat_template else eos_id,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="folder to write the model and tokenizer to")
    args = parser.parse_args()
    start = time.perf_counter()
    path = build_tiny_model(args.path)
    print(f"wrote {path} in {time.perf_counter() - start:.2f} s")

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{type(tokenizer).__name__}: {len(tokenizer)} tokens, eos={tokenizer.eos_token_id}, "
          f"pad={tokenizer.pad_token_id}, padding_side={tokenizer.padding_side}; "
          f"{type(model).__name__}: {n_params} parameters")
    print("generation_config:", model.generation_config.to_diff_dict())
    messages = [{"role": "user", "content": TINY_PROBLEMS[0]["problem"]}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = tokenizer([prompt], return_tensors="pt")
    out = model.generate(**batch, do_sample=True, top_k=0, max_new_tokens=16)  # (1, P+T)
    print(repr(prompt + tokenizer.decode(out[0, batch["input_ids"].shape[1]:])))


if __name__ == "__main__":
    main()
