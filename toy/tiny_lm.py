"""A tiny math language model grown on CPU: the `--model tiny` of train.py and eval.py.

Run:  python toy/tiny_lm.py            build it (or reuse the cache) and print SFT pass@1/pass@16
      python toy/tiny_lm.py --force    rebuild it
      python toy/tiny_lm.py --quick --out /tmp/t   a much smaller model in seconds (tests)

Nobody can download weights here, so the project grows its own small model and runs the *same*
train.py / eval.py on it (APO_SPEC §5 "in spirit"). Three parts:

1. The task `arith` (also `--dataset arith` / `--benchmarks arith` through data.py): "Compute
   23 + 45 + 17." The worked solutions add the three terms in one of the 3! = 6 orders,
   sampled uniformly in the SFT data:
       23 + 45 = 68. 68 + 17 = 85. \\boxed{85}      or      45 + 17 = 62. 62 + 23 = 85. \\boxed{85}
   so every problem has several valid solution paths with different intermediate sums (and
   different carries): there is diversity to lose (APO_SPEC §2). Train and test splits are
   disjoint *as multisets of terms* (a hash of the sorted terms picks the split), so "17 + 45
   + 23" never leaks a test problem into training.
2. The tokenizer: a byte-level BPE with Qwen2's pre-tokenizer (each digit its own token),
   saved as the `Qwen2Tokenizer` AutoTokenizer rebuilds, pad == EOS, left padding, and *no*
   chat template, so rollout.py uses its plain "Question: ...\\nAnswer:" prompt. The SFT
   sequences are built with `rollout.format_prompt`, the very prompt RL and eval will show.
3. The model: a Qwen2-architecture causal LM (grouped-query attention, RoPE, tied embeddings)
   of about a million parameters, pre-trained by plain next-token prediction on the worked
   solutions (loss on the completion tokens only), deliberately *undertrained* so that RL
   starts from a model that solves some problems, not all.

The result is saved with save_pretrained in a cache folder, `$APO_CACHE/tiny_lm` (default
`~/.cache/apo/tiny_lm`), built on first use and reused afterwards; `build_info.json` records
the recipe, and a cache built from another recipe is rebuilt.

Departures (from how the paper's base models came to be), with reasons:
1. Pre-training is a few minutes of SFT on one synthetic task, not web-scale pre-training plus
   math: all a reader's CPU can afford. The model's "prior" over solution paths is therefore
   exactly the uniform mixture of orders in its SFT data, a known quantity.
2. No chat template: Qwen2.5-Math base models are also prompted without one in most RLVR
   recipes, and it keeps prompts short.
"""

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python toy/tiny_lm.py`: the repository root is not on the path
    sys.path.insert(0, ROOT)
import rollout  # noqa: E402
import verify  # noqa: E402

RECIPE = "arith-v1"  # bump when the task, tokenizer or SFT recipe changes: caches rebuild
EOS = "<|endoftext|>"  # also the pad token, as in Qwen2.5-Math base models
IM_START, IM_END = "<|im_start|>", "<|im_end|>"  # unused by the tiny LM; tests/tiny_model.py's chat
TERMS = 3  # numbers per problem: 3! = 6 addition orders
TERM_MIN, TERM_MAX = 10, 99  # two-digit terms: some carries, so errors depend on the order
TEST_EVERY = 8  # 1 in 8 multisets of terms is held out (test split)
DEFAULT_SPLIT_SIZE = {"train": 4000, "test": 500}  # problems arith_problems() returns
MAX_POSITIONS = 256  # the longest prompt + completion is ~80 tokens


@dataclass
class Recipe:
    """How the tiny LM is built; `QUICK` is the seconds-long version the tests use."""
    vocab_size: int = 320  # 256 byte symbols + 3 specials + ~60 merges (the prompt's words)
    hidden: int = 128  # model width
    layers: int = 4  # transformer blocks
    heads: int = 4  # query heads (2 key/value heads: grouped-query attention, as Qwen2)
    steps: int = 600  # SFT optimizer steps: undertrained on purpose (400: pass@1 0.08, 800: 0.68)
    batch_size: int = 64  # SFT sequences per step
    lr: float = 2e-3  # AdamW peak learning rate, cosine to 10 % after a short warmup
    warmup: int = 100  # linear warmup steps
    seed: int = 0  # weights, SFT data order


QUICK = Recipe(vocab_size=300, hidden=32, layers=2, heads=4, steps=20, batch_size=16, warmup=5)


# ------------------------------------------------------------------------------- the task

def is_test(terms):
    """The split of a problem, from a hash of its sorted terms (order-free: no leaks)."""
    key = "+".join(str(t) for t in sorted(terms)).encode()
    return int(hashlib.md5(key).hexdigest(), 16) % TEST_EVERY == 0


def problem_text(terms):
    return "Compute " + " + ".join(str(t) for t in terms) + "."


def solution_text(terms, order):
    """The worked solution that adds `terms` in `order` (a permutation of their indices).

    >>> solution_text((23, 45, 17), (1, 2, 0))
    '45 + 17 = 62. 62 + 23 = 85. \\\\boxed{85}'
    """
    total, steps = terms[order[0]], []
    for i in order[1:]:
        steps.append(f"{total} + {terms[i]} = {total + terms[i]}.")
        total += terms[i]
    return " ".join(steps) + f" \\boxed{{{total}}}"


def all_solutions(terms):
    """Every valid worked solution of a problem (one per addition order)."""
    return [solution_text(terms, order) for order in itertools.permutations(range(len(terms)))]


def _random_terms(rng):
    return tuple(rng.randint(TERM_MIN, TERM_MAX) for _ in range(TERMS))


def arith_problems(split, n=None):
    """`n` distinct problems of `split` ("train" or "test"): [{"problem", "answer"}], deterministic.

    >>> arith_problems("test", 2)[1]
    {'problem': 'Compute 75 + 30 + 29.', 'answer': '134'}
    """
    if split not in DEFAULT_SPLIT_SIZE:
        raise ValueError(f"arith has splits 'train' and 'test', not {split!r}")
    n = DEFAULT_SPLIT_SIZE[split] if n is None else n
    rng, seen, out = random.Random(f"arith-{split}"), set(), []
    while len(out) < n:
        terms = _random_terms(rng)
        if is_test(terms) == (split == "test") and terms not in seen:
            seen.add(terms)
            out.append({"problem": problem_text(terms), "answer": str(sum(terms))})
    return out


def sft_example(rng):
    """(problem, worked solution) of a random *train* problem, in a random order."""
    while True:
        terms = _random_terms(rng)
        if not is_test(terms):
            break
    order = list(range(TERMS))
    rng.shuffle(order)
    return problem_text(terms), solution_text(terms, order)


# -------------------------------------------------------------------------- the tokenizer

def train_tokenizer(corpus, vocab_size, chat_template=None, max_positions=MAX_POSITIONS):
    """A byte-level BPE with Qwen2's pre-tokenizer, wrapped as the Qwen2Tokenizer it loads as.

    Traps of transformers 5 this avoids (tests/tiny_model.py's docstring has the details):
    AutoTokenizer rebuilds a Qwen2Tokenizer's pre-tokenizer from vocab + merges, so the BPE is
    trained with that same pre-tokenizer; all 256 byte symbols are kept, so any text round-
    trips; `padding_side="left"` must be a constructor argument to be saved.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(corpus, trainer)
    merges = [tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]]  # [("Ġ", "t"), ...]
    tokenizer = Qwen2Tokenizer(vocab=bpe.get_vocab(), merges=merges, eos_token=EOS, pad_token=EOS,
                               unk_token=None, padding_side="left", model_max_length=max_positions,
                               additional_special_tokens=[IM_START, IM_END])
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def qwen2_model(tokenizer, *, vocab_size=None, hidden, layers, heads, seed=0,
                max_positions=MAX_POSITIONS, extra_eos=()):
    """A random-weight Qwen2ForCausalLM whose special ids match `tokenizer` (pad == EOS)."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
    vocab_size = len(tokenizer) if vocab_size is None else vocab_size
    if vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size={vocab_size} is below the tokenizer's {len(tokenizer)} tokens; "
                         f"pass vocab_size=None or a larger number.")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not a multiple of heads={heads}; pick heads that divide it.")
    eos_id = tokenizer.eos_token_id
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads,
        num_key_value_heads=heads // 2 if heads % 2 == 0 else heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True,  # tied, as Qwen2.5-1.5B
        bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,  # one id, as Qwen2.5-Math
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).float()
    eos = [eos_id, *(tokenizer.convert_tokens_to_ids(t) for t in extra_eos)]
    # only token ids: transformers 5 loads every other generation field as None (see rollout.py)
    model.generation_config = GenerationConfig(bos_token_id=eos_id, pad_token_id=eos_id,
                                               eos_token_id=eos if len(eos) > 1 else eos_id)
    return model


def arith_tokenizer(vocab_size):
    """The tiny LM's tokenizer: merges learned from the prompt template and worked solutions."""
    rng = random.Random("arith-tokenizer")
    plain = rollout.format_prompt(None, "Compute 1 + 2 + 3.")  # no tokenizer: the plain template
    corpus = [plain] * 50 + [rollout.format_prompt(None, p) + " " + s
                             for p, s in (sft_example(rng) for _ in range(500))]
    return train_tokenizer(corpus, vocab_size)


# -------------------------------------------------------------------------------- SFT

def encode_example(tokenizer, problem, solution):
    """(ids, n_prompt): prompt ids as rollout.sample makes them, then solution + EOS.

    The prompt and the completion are tokenized apart, as at RL time (the policy generates the
    completion token by token after the tokenized prompt). The completion starts with a space:
    the model's first generated token after "Answer:".
    """
    prompt = tokenizer(rollout.format_prompt(tokenizer, problem))["input_ids"]
    completion = tokenizer(" " + solution, add_special_tokens=False)["input_ids"]
    return prompt + completion + [tokenizer.eos_token_id], len(prompt)


def sft_batch(tokenizer, rng, batch_size):
    """input_ids (b, L) right-padded with EOS, attention_mask (b, L), labels (b, L): -100 off
    the completion, so the loss is next-token prediction on solution tokens and the final EOS."""
    rows = [encode_example(tokenizer, *sft_example(rng)) for _ in range(batch_size)]
    L = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((batch_size, L), tokenizer.eos_token_id)  # (b, L)
    attention_mask = torch.zeros(batch_size, L, dtype=torch.long)  # (b, L)
    labels = torch.full((batch_size, L), -100)  # (b, L) -100: ignored by the loss
    for i, (ids, n_prompt) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention_mask[i, :len(ids)] = 1
        labels[i, n_prompt:len(ids)] = torch.tensor(ids[n_prompt:])
    return input_ids, attention_mask, labels


def pretrain(model, tokenizer, recipe, progress=True):
    """Plain SFT: AdamW, linear warmup then cosine decay to 10 %; returns the loss curve."""
    rng = random.Random(f"arith-sft-{recipe.seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01)

    def lr_at(step):  # step is 0-based
        if step < recipe.warmup:
            return recipe.lr * (step + 1) / recipe.warmup
        frac = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
        return recipe.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    model.train()
    losses = []
    bar = tqdm(range(recipe.steps), desc="tiny LM SFT", disable=not progress)
    for step in bar:
        input_ids, attention_mask, labels = sft_batch(tokenizer, rng, recipe.batch_size)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
    return model.eval(), losses


def build(path, recipe=Recipe(), progress=True):
    """Tokenizer, model, SFT, save_pretrained to `path` (atomically); returns `path` as str."""
    path = Path(path)
    start = time.perf_counter()
    tokenizer = arith_tokenizer(recipe.vocab_size)
    model = qwen2_model(tokenizer, hidden=recipe.hidden, layers=recipe.layers, heads=recipe.heads,
                        seed=recipe.seed)
    model, losses = pretrain(model, tokenizer, recipe, progress)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info = {"recipe_version": RECIPE, "recipe": dataclasses.asdict(recipe),
            "params": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.perf_counter() - start, 1),
            "final_loss": sum(losses[-50:]) / len(losses[-50:])}
    (tmp / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")  # written last
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return str(path)


def default_cache_dir():
    return os.path.join(os.path.expanduser(os.environ.get("APO_CACHE", "~/.cache/apo")), "tiny_lm")


def is_built(path, recipe=Recipe()):
    """True when `path` holds a finished build of this recipe."""
    try:
        info = json.loads((Path(path) / "build_info.json").read_text())
    except (OSError, ValueError):
        return False
    return info.get("recipe_version") == RECIPE and info.get("recipe") == dataclasses.asdict(recipe)


def ensure_tiny_model(cache_dir=None):
    """The tiny LM's folder, built first if it is missing or from another recipe."""
    path = cache_dir or default_cache_dir()
    if not is_built(path):
        print(f"building the tiny math LM in {path} (a few minutes on a laptop CPU, once)")
        build(path)
    return str(path)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def sampled_pass_at_k(path, n_problems=128, n=16, temperature=1.0, seed=0):
    """pass@1 and pass@n on the test split, n samples a problem (unbiased estimator)."""
    from eval import pass_at_k  # the estimator eval.py reports
    model, tokenizer = rollout.load_model_and_tokenizer(path, dtype="float32", device="cpu")
    problems = arith_problems("test", n_problems)
    torch.manual_seed(seed)
    counts = []
    for first in range(0, len(problems), 32):
        chunk = problems[first:first + 32]
        roll = rollout.sample(model, tokenizer, [p["problem"] for p in chunk], n,
                              temperature=temperature, max_new_tokens=48, batch_size=512)
        for i, p in enumerate(chunk):
            counts.append(sum(verify.reward(t, p["answer"]) for t in roll.texts[i * n:(i + 1) * n]))
    ks = sorted({1, n})
    return {f"pass@{k}": sum(pass_at_k(n, int(c), k) for c in counts) / len(counts) for k in ks}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="model folder (default: the cache, $APO_CACHE/tiny_lm)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the folder holds a build")
    ap.add_argument("--quick", action="store_true", help="a much smaller model in seconds (tests)")
    ap.add_argument("--steps", type=int, default=None, help="override the SFT steps (experiments)")
    ap.add_argument("--problems", type=int, default=128, help="test problems for the pass@k check")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    recipe = QUICK if args.quick else Recipe()
    if args.steps:
        recipe = dataclasses.replace(recipe, steps=args.steps)
    path = args.out or default_cache_dir()
    if args.force or not is_built(path, recipe):
        t0 = time.perf_counter()
        build(path, recipe)
        print(f"built {path} in {time.perf_counter() - t0:.0f} s")
    info = json.loads((Path(path) / "build_info.json").read_text())
    print(f"{path}: {info['params']:,} parameters, SFT loss {info['final_loss']:.3f}, "
          f"built in {info['seconds']} s")
    t0 = time.perf_counter()
    res = sampled_pass_at_k(path, args.problems)
    print(f"test split, {args.problems} problems, 16 samples each at temperature 1.0: "
          + "  ".join(f"{k} {v:.3f}" for k, v in res.items()) + f"  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
