"""The project's one random-weight Qwen2 builder: a byte-level BPE tokenizer and a Qwen2 model.

    python toy/random_qwen2.py /tmp/random-qwen2     # writes the folder and samples from it

Nobody can download weights on the project's CI, so every small model is grown here:
- the **random Qwen2** (`build_random_qwen2`): untrained, a few thousand parameters, a chat
  template; the tests, multi_gpu_and_dev/bench.py (at any shape, up to Qwen2.5-Math-1.5B's) and the TRL
  example run end to end on it. It knows nothing: its rewards are 0 and its text is noise.
- the **tiny math LM** (toy/tiny_lm.py, `--model tiny`): the same builder's model, then
  pre-trained on the `arith` task, so that RL has something to sharpen and to forget.

Both load offline through `AutoTokenizer` / `AutoModelForCausalLM` in well under a second,
with the plumbing of Qwen2.5-Math: the Qwen2 architecture (grouped-query attention, tied
embeddings), Qwen2's byte-level BPE pre-tokenization, pad == EOS == "<|endoftext|>", left
padding. `TOY_PROBLEMS` are problems with gold answers for the random model's tests.

Choices, with reasons (transformers 5 traps):
1. The tokenizer is built as a `Qwen2Tokenizer` from a BPE trained here. For a folder whose
   config says `qwen2`, AutoTokenizer builds a `Qwen2Tokenizer` anyway, and that class rebuilds
   its own pre-tokenizer (Qwen2's split regex + ByteLevel) from the saved vocab and merges,
   ignoring any other pre-tokenizer in tokenizer.json. Training with that same pre-tokenizer
   makes what is saved and what is loaded the same tokenizer.
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
   top_k=50, top_p=1.0, temperature=1.0): rollout.py samples with top_k=0 explicitly.
"""

import argparse
import json
import time
from pathlib import Path

import torch

EOS = "<|endoftext|>"  # also the pad token, as in Qwen2.5-Math base models
IM_START, IM_END = "<|im_start|>", "<|im_end|>"  # the chat template's turn markers
BPE_VOCAB = 400  # the random Qwen2's tokenizer: 256 byte symbols + 3 specials + ~140 merges of CORPUS
MAX_POSITIONS = 1024  # longest prompt + completion the random Qwen2 accepts
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOY_PROBLEMS = [
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

CORPUS = [  # the text the random Qwen2's BPE merges are learned from: words and symbols of the prompts
    *(p["problem"] for p in TOY_PROBLEMS),
    *(f"The answer is \\boxed{{{p['answer']}}}.\n" for p in TOY_PROBLEMS),
    "Please reason step by step, and put your final answer within \\boxed{}.\n",
    "Question: What is the value of x?\nAnswer: We have x = 3 + 4 = 7, so the answer is 7.\n",
    "First, we add the two numbers. Then we multiply by 2 and subtract 1.\n\n",
    "Let x be a number such that 2x + 1 = 9. Then 2x = 8 and x = 4. The answer is \\boxed{4}.\n",
    "The sum of 1/2 and 1/3 is \\frac{5}{6}. The product is (1)(2) = 2; the result is -3.\n",
]


def train_tokenizer(corpus, vocab_size, chat_template=None, max_positions=MAX_POSITIONS, special_tokens=()):
    """A byte-level BPE with Qwen2's pre-tokenizer, wrapped as the Qwen2Tokenizer it loads as
    (choices 1-3 of the module docstring); `special_tokens` are more special tokens after
    EOS, "<|im_start|>" and "<|im_end|>"."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    specials = [EOS, IM_START, IM_END, *special_tokens]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    merges = [tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]]  # [("Ġ", "t"), ...]
    tokenizer = Qwen2Tokenizer(vocab=bpe.get_vocab(), merges=merges, eos_token=EOS, pad_token=EOS,
                               unk_token=None, padding_side="left", model_max_length=max_positions,
                               additional_special_tokens=specials[1:])
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def qwen2_model(tokenizer, *, hidden, layers, heads, intermediate=None, kv_heads=None, vocab_size=None,
                max_positions=MAX_POSITIONS, seed=0, extra_eos=(), **config):
    """A random-weight float32 Qwen2ForCausalLM whose special ids match `tokenizer` (pad == EOS).

    hidden/layers/heads: width, depth, query heads; intermediate: MLP width (default 4*hidden);
    kv_heads: key/value heads (default heads/2 when even: grouped-query attention, as Qwen2);
    vocab_size: embedding rows (default: one per tokenizer entry; more leaves rows no token
    decodes to); extra_eos: more tokens that end a completion; **config: other Qwen2Config
    fields (rope_theta, ...). The weights depend only on `seed` and the shape.
    """
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
    vocab_size = len(tokenizer) if vocab_size is None else vocab_size
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is below the tokenizer's {len(tokenizer)} tokens; "
                         f"pass vocab_size=None or a larger number.")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not a multiple of heads={heads}; pick heads that divide it.")
    eos_id = tokenizer.eos_token_id
    qwen2_config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate or 4 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=kv_heads or (heads // 2 if heads % 2 == 0 else heads),
        max_position_embeddings=max_positions, tie_word_embeddings=True,  # tied, as Qwen2.5-1.5B
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,  # one id, as Qwen2.5-Math
        **config)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(qwen2_config).float()
    eos = [eos_id, *(tokenizer.convert_tokens_to_ids(t) for t in extra_eos)]
    # only token ids: every other generation field loads as None (choice 6)
    model.generation_config = GenerationConfig(bos_token_id=eos_id, pad_token_id=eos_id,
                                               eos_token_id=eos if len(eos) > 1 else eos_id)
    return model


def save(path, model, tokenizer):
    """save_pretrained both into `path`; returns `path` as a str."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def build_random_qwen2(path, *, vocab_size=None, hidden=32, layers=2, heads=4, seed=0, chat_template=True):
    """Write the random Qwen2 test model and its tokenizer to `path`; return `path` as a str.

    With `chat_template` the tokenizer carries a Qwen-style chat template and generation also
    stops at "<|im_end|>"; without it, rollout.py uses its plain "Question/Answer" prompt.
    """
    tokenizer = train_tokenizer(CORPUS, BPE_VOCAB, chat_template=CHAT_TEMPLATE if chat_template else None)
    model = qwen2_model(tokenizer, hidden=hidden, layers=layers, heads=heads, intermediate=2 * hidden,
                        vocab_size=vocab_size, seed=seed, extra_eos=(IM_END,) if chat_template else ())
    return save(Path(path), model, tokenizer)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="folder to write the random Qwen2 and its tokenizer to")
    args = parser.parse_args()
    start = time.perf_counter()
    path = build_random_qwen2(args.path)
    print(f"wrote {path} in {time.perf_counter() - start:.2f} s")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{type(tokenizer).__name__}: {len(tokenizer)} tokens, eos={tokenizer.eos_token_id}, "
          f"pad={tokenizer.pad_token_id}, padding_side={tokenizer.padding_side}; "
          f"{type(model).__name__}: {n_params} parameters")
    print("generation_config:", model.generation_config.to_diff_dict())
    messages = [{"role": "user", "content": TOY_PROBLEMS[0]["problem"]}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    batch = tokenizer([prompt], return_tensors="pt")
    out = model.generate(**batch, do_sample=True, top_k=0, max_new_tokens=16)  # (1, P+T)
    print(repr(prompt + tokenizer.decode(out[0, batch["input_ids"].shape[1]:])))


if __name__ == "__main__":
    main()
