"""Exercise 1: group advantages (METHOD.md §1; about 10 minutes).

GRPO samples G completions of one prompt and scores each with the verifier. The learning signal of
completion i is how much better it did than its group, in units of the group's spread:

    A_i = (R_i - mean_j R_j) / (std_j R_j + eps)

Fill in `group_advantages`, then run:  python -m pytest exercises -q -k ex1
"""

import torch  # noqa: F401  (you will need it)


def group_advantages(rewards, eps=1e-6):
    """Group-relative advantages: rewards (B, G) float -> advantages (B, G) float.

    Row b holds the G rewards of prompt b's completions (0/1 from the verifier, but any floats
    must work). Per row:
    - subtract the row's mean;
    - divide by the row's *unbiased* standard deviation (divide the squared deviations by G - 1,
      as TRL and verl do) plus `eps`. eps is added to the std, outside the square root.
    A row whose G rewards are all equal must come out as exactly 0 everywhere (no nan): it
    teaches nothing. No loops over rows are needed.

    Example: rewards [[1, 0, 0, 1]] -> [[0.8660, -0.8660, -0.8660, 0.8660]]  (std = sqrt(1/3)).
    """
    raise NotImplementedError("exercise 1: group_advantages")
