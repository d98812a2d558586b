"""Synthetic math tasks generated in pure Python: problems, answers and worked solutions.

`data.load_problems("arith")` serves them to train.py and eval.py (`--dataset arith`,
`--benchmarks arith`); toy/tiny_lm.py pre-trains the tiny math LM on their worked solutions.
Nothing here knows about models or tensors, so plumbing/data.py may import it.

    python toy/tasks.py        # print a few problems of each split with their worked solutions

The task `arith` ("Compute 52 - 37 + 28."): two solution strategies, one common, one rare.
    left to right:   52 - 37 = 15. 15 + 28 = 43. \\boxed{43}
    add first:       52 + 28 = 80. 80 - 37 = 43. \\boxed{43}
Both use the same two skills (a two-digit subtraction and a two-digit addition) and part at one
token, the sign after the first number. The task never writes a negative or a three-digit
number, so left to right needs a >= b and "add first" needs a + c <= 99. Three categories of
problems (shares CATEGORY_SHARE in every split):
    both       a >= b, a + c <= 99     either strategy works
    left_only  a >= b, a + c >= 100    only left to right works
    hard       a < b,  a + c <= 99     only "add first" works
The tiny LM's pre-training data (toy/tiny_lm.py) shows `both` and `left_only` problems, "add
first" in a small share of the `both` ones, and never a `hard` one, so the base model meets a
hard problem with a strong prior for the strategy that cannot work and solves it only when it
samples its rare alternative. RL that sharpens its habit, left to right (rewarded on the categories
it knows, and the only way on `left_only`), can then forget the hard problems (METHOD.md §2):
a known, countable category of diversity to lose.

Splits: a hash of (b, {a, c}) puts each problem in `train`, `val` or `test` (1 in 8 each for
val and test), so a problem and its mirror "c - b + a" never sit in two splits. `val` is for
tuning knobs (toy/lm_demo.py), `test` for the reported numbers.

Departures: none from the paper, which trains on MATH; this task exists so that the whole
pipeline (pre-training, RL, pass@k) runs on a CPU in minutes.
"""

import hashlib
import random

TERM_MIN, TERM_MAX = 10, 99  # two-digit terms: carries and borrows, so errors depend on the path
CATEGORY_SHARE = {"both": 0.25, "left_only": 0.45, "hard": 0.30}  # in every split (see above)
SPLIT_BUCKETS = {"test": 0, "val": 1}  # hash % 8: bucket 0 is test, 1 is val, the rest train
SPLIT_SIZE = {"train": 4000, "val": 500, "test": 500}  # problems arith_problems() returns by default
STRATEGIES = ("left", "add_first")
SFT_CATEGORIES = ("both", "left_only")  # the categories pre-training may show: never "hard"


def split_of(terms):
    """The split of a problem, from a hash that ignores the order of a and c (no leaks)."""
    a, b, c = terms
    key = f"{min(a, c)},{max(a, c)}|{b}".encode()
    bucket = int(hashlib.md5(key).hexdigest(), 16) % 8
    return next((s for s, i in SPLIT_BUCKETS.items() if i == bucket), "train")


def category_of(terms):
    """"both", "left_only", "hard" (see the module docstring) or "neither" (never generated)."""
    a, b, c = terms
    if a >= b:
        return "both" if a + c <= 99 else "left_only"
    return "hard" if a + c <= 99 else "neither"


def is_hard(terms):
    """True when only "add first" works (a < b)."""
    return category_of(terms) == "hard"


def problem_text(terms):
    a, b, c = terms
    return f"Compute {a} - {b} + {c}."


def parse_problem(text):
    """The terms (a, b, c) of a problem text.

    >>> parse_problem("Compute 52 - 37 + 18.")
    (52, 37, 18)
    """
    a, rest = text[len("Compute "):-1].split(" - ")
    b, c = rest.split(" + ")
    return int(a), int(b), int(c)


def result(terms):
    """The answer a - b + c."""
    a, b, c = terms
    return a - b + c


def solution_text(terms, strategy, last=None):
    """The worked solution of `terms` by `strategy` ("left" or "add_first"); `last`, if
    given, replaces the last step's result and the boxed answer (a careless solution).

    >>> solution_text((52, 37, 28), "left")
    '52 - 37 = 15. 15 + 28 = 43. \\\\boxed{43}'
    >>> solution_text((52, 37, 28), "add_first")
    '52 + 28 = 80. 80 - 37 = 43. \\\\boxed{43}'
    """
    a, b, c = terms
    if strategy not in valid_strategies(terms):
        raise ValueError(f"{strategy} does not work on {terms}: it would write a negative or 3-digit number")
    r = result(terms) if last is None else last
    if strategy == "left":
        return f"{a} - {b} = {a - b}. {a - b} + {c} = {r}. \\boxed{{{r}}}"
    return f"{a} + {c} = {a + c}. {a + c} - {b} = {r}. \\boxed{{{r}}}"


def valid_strategies(terms):
    a, b, c = terms
    return [s for s, ok in zip(STRATEGIES, (a >= b, a + c <= 99)) if ok]


def all_solutions(terms):
    """Every valid worked solution of a problem: both strategies, or the one that works."""
    return [solution_text(terms, s) for s in valid_strategies(terms)]


def strategy_of(completion, terms):
    """Which strategy a completion starts with: "left", "add_first" or "other".

    >>> strategy_of("52 + 28 = 80. 80 - 37 = 43.", (52, 37, 28))
    'add_first'
    """
    a, b, c = terms
    text = completion.lstrip()
    if text.startswith(f"{a} - {b} "):
        return "left"
    return "add_first" if text.startswith(f"{a} + {c} ") else "other"


def random_terms(rng, category):
    """(a, b, c) of the given category whose answer a - b + c is a two-digit number at most."""
    while True:
        terms = tuple(rng.randint(TERM_MIN, TERM_MAX) for _ in range(3))
        if 0 <= result(terms) <= 99 and category_of(terms) == category:
            return terms


def pick_category(rng, categories=tuple(CATEGORY_SHARE)):
    """One of `categories`, drawn with the weights CATEGORY_SHARE gives them."""
    return rng.choices(list(categories), weights=[CATEGORY_SHARE[k] for k in categories])[0]


def arith_problems(split, n=None):
    """`n` distinct problems of `split` ("train", "val" or "test"): [{"problem", "answer"}],
    deterministic; the three categories in the shares CATEGORY_SHARE.

    >>> arith_problems("test", 2)[1]
    {'problem': 'Compute 26 - 71 + 49.', 'answer': '4'}
    """
    if split not in SPLIT_SIZE:
        raise ValueError(f"arith has splits {', '.join(SPLIT_SIZE)}, not {split!r}")
    n = SPLIT_SIZE[split] if n is None else n
    rng, seen, out = random.Random(f"arith-{split}"), set(), []
    while len(out) < n:
        terms = random_terms(rng, pick_category(rng))
        if split_of(terms) == split and terms not in seen:
            seen.add(terms)
            out.append({"problem": problem_text(terms), "answer": str(result(terms))})
    return out


def sft_example(rng, rare_share, categories=SFT_CATEGORIES, error_share=0.0):
    """(problem, worked solution) of a random *train* problem of one of `categories` (weighted as
    CATEGORY_SHARE): on a `both` problem "add first" with probability `rare_share`, else left to
    right (the only way on `left_only`). `hard` problems never appear in pre-training. With
    probability `error_share` the last step's result is wrong (a random other number, carried
    into the box): the careless worked solutions a base model learns from, which RL can unlearn."""
    if not categories or not set(categories) <= set(SFT_CATEGORIES):
        raise ValueError(f"pre-training categories must be some of {', '.join(SFT_CATEGORIES)}, "
                         f"not {categories}")
    category = pick_category(rng, categories)
    while True:
        terms = random_terms(rng, category)
        if split_of(terms) == "train":
            break
    strategy = "add_first" if category == "both" and rng.random() < rare_share else "left"
    last = None
    if rng.random() < error_share:
        right = result(terms)
        last = rng.choice([x for x in range(max(0, right - 10), min(99, right + 10) + 1) if x != right])
    return problem_text(terms), solution_text(terms, strategy, last)


if __name__ == "__main__":
    for split in SPLIT_SIZE:
        for p in arith_problems(split, 4):
            terms = parse_problem(p["problem"])
            print(f"{split:<5} {category_of(terms):<9} {p['problem']:<24} -> {p['answer']:<4} "
                  + "  |  ".join(all_solutions(terms)))
