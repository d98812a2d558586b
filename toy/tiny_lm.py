"""The tiny math LM: a Qwen2 of about a million parameters pre-trained on CPU (`--model tiny`).

Run:  python toy/tiny_lm.py            build it (or reuse the cache) and print SFT pass@1/pass@16
      python toy/tiny_lm.py --force    rebuild it
      python toy/tiny_lm.py --quick --out /tmp/t   a much smaller model in seconds (tests)

Nobody can download weights here, so the project grows its own small model and runs the *same*
train.py / eval.py on it (METHOD.md §5). Three parts:

1. The task: `arith` from toy/tasks.py ("Compute 52 - 37 + 28."), solved left to right or by
   adding a and c first. The SFT data shows `both` problems (either strategy works; "add
   first" in rare_share of them) and `left_only` ones (left to right only), never a `hard`
   one (a < b: only "add first" works), and the last step of error_share of its solutions is
   wrong. So the base model is careless (room for RL to raise pass@1), never misses a category it
   was taught at k = 64, and solves hard problems only by sampling its rare strategy: the
   diversity that RL can lose (METHOD.md §2). Train, val and test splits are disjoint.
2. The tokenizer: toy/random_qwen2.py's byte-level BPE with Qwen2's pre-tokenizer (each digit
   its own token), its merges learned from the prompt and worked solutions, pad == EOS, left
   padding, and *no* chat template, so rollout.py uses its plain "Question: ...\\nAnswer:"
   prompt. The SFT sequences are built with `prompts.format_prompt`, the very prompt RL and
   eval will show.
3. The model: toy/random_qwen2.py's Qwen2 (grouped-query attention, RoPE, tied embeddings) at
   about a million parameters, pre-trained by plain next-token prediction on the worked
   solutions (loss on the completion tokens only), for 1000 steps: pass@1 ~0.5-0.6 on the
   categories it was trained on (its data is 20 % careless) but pass@64 1.0, and "add first" in
   7-10 % of its samples on the hard problems it never saw (pass@1 ~0.01, pass@64 0.27-0.41
   on the first 192 / 256 test problems).

The result is saved with save_pretrained in a cache folder, `$APO_CACHE/tiny_lm` (default
`~/.cache/apo/tiny_lm`), built on first use and reused afterwards; `build_info.json` records
the recipe, and a cache built from another recipe is rebuilt.

Departures (from how the paper's base models came to be), with reasons:
1. Pre-training is a few minutes of SFT on one synthetic task, not web-scale pre-training plus
   math: all a reader's CPU can afford. The model's prior over strategies is therefore the
   known mixture in its SFT data (rare_share), not an accident of web text, and its mistakes
   are planted (error_share) rather than the errors of a model at the edge of its ability.
2. No chat template: Qwen2.5-Math base models are also prompted without one in most RLVR
   recipes, and it keeps prompts short.
"""

import argparse
import dataclasses
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
from plumbing import loading, prompts  # noqa: E402
from toy import tasks  # noqa: E402
from toy.random_qwen2 import qwen2_model, train_tokenizer  # noqa: E402

TINY_MODEL = "tiny"  # --model tiny in train.py and eval.py
RECIPE = "arith-v3"  # v3: SFT on `both` and `left_only`, careless last steps; never `hard`
MAX_POSITIONS = 256  # the longest prompt + completion is ~80 tokens
CHECK_BATCH = 32  # problems per sample() call in the SFT quality check (x n samples each)


@dataclass
class Recipe:
    """How the tiny LM is built; `QUICK` is the seconds-long version the tests use."""
    vocab_size: int = 320  # 256 byte symbols + 3 specials + ~60 merges (the prompt's words)
    hidden: int = 128  # model width
    layers: int = 4  # transformer blocks
    heads: int = 4  # query heads (2 key/value heads: grouped-query attention, as Qwen2)
    steps: int = 1000  # SFT optimizer steps (211 s on an idle 2-core CPU)
    batch_size: int = 64  # SFT sequences per step
    lr: float = 2e-3  # AdamW peak learning rate, cosine to 10 % after a short warmup
    warmup: int = 100  # linear warmup steps
    rare_share: float = 0.2  # `both` SFT solutions that "add first"; the rest go left to right
    sft_categories: str = ",".join(tasks.SFT_CATEGORIES)  # problem categories in the SFT data (never "hard")
    error_share: float = 0.2  # SFT solutions whose last step is wrong (room for RL to sharpen)
    seed: int = 0  # weights, SFT data order


QUICK = Recipe(vocab_size=300, hidden=32, layers=2, heads=4, steps=20, batch_size=16, warmup=5)


# -------------------------------------------------------------------------- the tokenizer

def arith_tokenizer(vocab_size):
    """The tiny LM's tokenizer: merges learned from the prompt template and worked solutions."""
    rng = random.Random("arith-tokenizer")
    plain = prompts.format_prompt(None, "Compute 3 - 2 + 1.")  # no tokenizer: the plain template
    corpus = [plain] * 50 + [prompts.format_prompt(None, p) + " " + s
                             for p, s in (tasks.sft_example(rng, 0.5) for _ in range(500))]
    return train_tokenizer(corpus, vocab_size, max_positions=MAX_POSITIONS)


# -------------------------------------------------------------------------------- SFT

def encode_example(tokenizer, problem, solution):
    """(ids, n_prompt): prompt ids as rollout.sample makes them, then solution + EOS.

    The prompt and the completion are tokenized apart, as at RL time (the policy generates the
    completion token by token after the tokenized prompt). The completion starts with a space:
    the model's first generated token after "Answer:".
    """
    prompt = tokenizer(prompts.format_prompt(tokenizer, problem))["input_ids"]
    completion = tokenizer(" " + solution, add_special_tokens=False)["input_ids"]
    return prompt + completion + [tokenizer.eos_token_id], len(prompt)


def sft_batch(tokenizer, rng, batch_size, rare_share, categories=tasks.SFT_CATEGORIES, error_share=0.0):
    """input_ids (b, L) right-padded with EOS, attention_mask (b, L), labels (b, L): -100 off
    the completion, so the loss is next-token prediction on solution tokens and the final EOS."""
    rows = [encode_example(tokenizer, *tasks.sft_example(rng, rare_share, categories, error_share))
            for _ in range(batch_size)]
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

    categories = tuple(recipe.sft_categories.split(","))
    model.train()
    losses = []
    bar = tqdm(range(recipe.steps), desc="tiny LM SFT", disable=not progress)
    for step in bar:
        input_ids, attention_mask, labels = sft_batch(
            tokenizer, rng, recipe.batch_size, recipe.rare_share, categories, recipe.error_share)
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
                        max_positions=MAX_POSITIONS, seed=recipe.seed)
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


def resolve_model(name):
    """`name`, or the tiny LM's folder (built first if needed) when `name` is "tiny".

    train.py and eval.py call this for `--model`; the core (rollout.py) never sees "tiny".
    """
    return ensure_tiny_model() if name == TINY_MODEL else name


def ensure_tiny_model(cache_dir=None):
    """The tiny LM's folder, built first if it is missing or from another recipe."""
    path = cache_dir or default_cache_dir()
    if not is_built(path):
        print(f"building the tiny math LM in {path} (a few minutes on a laptop CPU, once)")
        build(path)
    return str(path)


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def sampled_pass_at_k(path, n_problems=128, n=16, temperature=1.0, seed=0, split="test"):
    """pass@1 and pass@n on `split` (n samples a problem, unbiased estimator), for all problems
    and for each category apart, and the share of each category's samples that start with each strategy."""
    model, tokenizer = loading.load_model_and_tokenizer(path, dtype="float32", device="cpu")
    problems = tasks.arith_problems(split, n_problems)
    torch.manual_seed(seed)
    categories = list(tasks.CATEGORY_SHARE)
    counts, category, used = [], [], {s: dict.fromkeys(categories, 0) for s in tasks.STRATEGIES + ("other",)}
    for first in range(0, len(problems), CHECK_BATCH):
        chunk = problems[first:first + CHECK_BATCH]
        roll = rollout.sample(model, tokenizer, [p["problem"] for p in chunk], n,
                              temperature=temperature, max_new_tokens=48, batch_size=512)
        for i, p in enumerate(chunk):
            terms = tasks.parse_problem(p["problem"])
            texts = roll.texts[i * n:(i + 1) * n]
            counts.append(sum(verify.reward(t, p["answer"]) for t in texts))
            category.append(tasks.category_of(terms))
            for t in texts:
                used[tasks.strategy_of(t, terms)][category[-1]] += 1
    # the unbiased estimator 1 - C(n-c, k)/C(n, k) of eval.pass_at_k, written out: toy/ must not
    # import eval.py, which imports this file for --model tiny
    out = {}
    for name in ["all"] + categories:
        cs = [c for c, k in zip(counts, category) if name in ("all", k)]
        for k in sorted({1, n}):
            hits = sum(1 - math.comb(n - int(c), k) / math.comb(n, k) for c in cs)
            out[f"{name} pass@{k}"] = hits / max(1, len(cs))
    for s, per_category in used.items():
        out[f"{s} share"] = {k: v / max(1, n * category.count(k)) for k, v in per_category.items()}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=None, help="model folder (default: the cache, $APO_CACHE/tiny_lm)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the folder holds a build")
    ap.add_argument("--quick", action="store_true", help="a much smaller model in seconds (tests)")
    ap.add_argument("--steps", type=int, default=None, help="override the SFT steps (experiments)")
    ap.add_argument("--problems", type=int, default=128, help="test problems for the pass@k check")
    ap.add_argument("--n", type=int, default=16, help="samples per problem for the pass@k check")
    ap.add_argument("--rare-share", type=float, default=None, help="override rare_share (experiments)")
    ap.add_argument("--sft-categories", default=None, help="override sft_categories (experiments)")
    ap.add_argument("--error-share", type=float, default=None, help="override error_share (experiments)")
    args = ap.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    recipe = QUICK if args.quick else Recipe()
    for flag, value in (("--rare-share", args.rare_share), ("--error-share", args.error_share)):
        if value is not None and not 0 <= value <= 1:
            ap.error(f"{flag} must lie in [0, 1], not {value}")
    allowed = set(tasks.SFT_CATEGORIES)
    if args.sft_categories is not None and not set(args.sft_categories.split(",")) <= allowed:
        ap.error(f"--sft-categories takes {' or '.join(tasks.SFT_CATEGORIES)} or both (comma-separated), "
                 f"not {args.sft_categories}")
    overrides = {"steps": args.steps or None, "rare_share": args.rare_share,  # --steps 0: the recipe's
                 "error_share": args.error_share, "sft_categories": args.sft_categories}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    path = args.out or default_cache_dir()
    if args.force or not is_built(path, recipe):
        t0 = time.perf_counter()
        build(path, recipe)
        print(f"built {path} in {time.perf_counter() - t0:.0f} s")
    info = json.loads((Path(path) / "build_info.json").read_text())
    print(f"{path}: {info['params']:,} parameters, SFT loss {info['final_loss']:.3f}, "
          f"built in {info['seconds']} s")
    t0 = time.perf_counter()
    res = sampled_pass_at_k(path, args.problems, args.n)
    print(f"test split, {args.problems} problems, {args.n} samples each at temperature 1.0 "
          f"({time.perf_counter() - t0:.0f} s):")
    for key, v in res.items():
        shown = f"{v:.3f}" if isinstance(v, float) else "  ".join(f"{k} {x:.3f}" for k, x in v.items())
        print(f"  {key:<17} {shown}")


if __name__ == "__main__":
    main()
