"""Synthetic math tasks generated in pure Python: problems, answers and worked solutions.

`data.load_problems("arith")` serves them to train.py and eval.py (`--dataset arith`,
`--benchmarks arith`); toy/tiny_lm.py pre-trains the tiny math LM on their worked solutions.
Nothing here knows about models or tensors, so the core may import it.

    python tasks.py            # print a few problems of each split with a worked solution

The task `arith` ("Compute 23 + 45 + 17."): the worked solutions add the three terms in one of
the 3! = 6 orders,
    23 + 45 = 68. 68 + 17 = 85. \\boxed{85}      or      45 + 17 = 62. 62 + 23 = 85. \\boxed{85}
so every problem has several valid solution paths with different intermediate sums (and
different carries): there is diversity to lose (METHOD.md §2). Train and test splits are
disjoint *as multisets of terms* (a hash of the sorted terms picks the split), so
"17 + 45 + 23" never leaks a test problem into training.

Departures: none from the paper, which trains on MATH; this task exists so that the whole
pipeline (pre-training, RL, pass@k) runs on a CPU in minutes.
"""

import hashlib
import itertools
import random

TERMS = 3  # numbers per problem: 3! = 6 addition orders
TERM_MIN, TERM_MAX = 10, 99  # two-digit terms: some carries, so errors depend on the order
TEST_EVERY = 8  # 1 in 8 multisets of terms is held out (test split)
SPLIT_SIZE = {"train": 4000, "test": 500}  # problems arith_problems() returns by default


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
    if split not in SPLIT_SIZE:
        raise ValueError(f"arith has splits 'train' and 'test', not {split!r}")
    n = SPLIT_SIZE[split] if n is None else n
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


if __name__ == "__main__":
    for split in SPLIT_SIZE:
        rng = random.Random(0)
        for p in arith_problems(split, 3):
            terms = tuple(int(t) for t in p["problem"][len("Compute "):-1].split(" + "))
            example = rng.choice(all_solutions(terms))
            print(f"{split:<5} {p['problem']:<24} -> {p['answer']:<4} e.g. {example}")
