"""Exercise 5: the unbiased pass@k estimator (METHOD.md §6; about 15 minutes).

From n samples of a problem, c of them correct, estimate the chance that k fresh samples hold at
least one correct answer. Draw k of the n without replacement: pass@k is the share of the
C(n, k) possible k-subsets that contain a correct sample,

    pass@k = 1 - C(n - c, k) / C(n, k)

It is unbiased and uses all n samples. "Is any of the first k samples correct?" is unbiased too, but
noisier (it uses only k of them); 1 - (1 - c/n)^k is biased (Jensen).

Fill in `pass_at_k`, then run:  python -m pytest exercises -q -k ex5
"""

import math  # noqa: F401  (you may need it)


def pass_at_k(n, c, k):
    """Unbiased pass@k from ints n (samples), c (correct), k -> a Python float in [0, 1].

    - n - c < k: every k-subset holds a correct sample, return 1.0;
    - c = 0 gives 0.0;
    - k > n (or any of c < 0, c > n, k < 1) raises ValueError with a message naming n, c and k;
    - it must stay accurate for n = 1000, k = 500: C(1000, 500) has 300 digits, so either keep
      Python's exact integers (math.comb) to the end or use a product that never forms them.
    Example: n=4, c=1: pass@1 = 0.25, pass@2 = 0.5; n=4, c=3, k=2 -> 1.0.
    """
    raise NotImplementedError("exercise 5: pass_at_k")
