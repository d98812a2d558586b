"""Exercise 6: which completion tokens the loss sees (rollout.py; about 15 minutes).

A sampled completion is a row of T token ids: the model's tokens, then possibly an end-of-sequence
(EOS) token, then padding up to T. The loss must see every token the model chose, the EOS included
(emitting EOS is what it must learn), and nothing after. Many tokenizers pad with the EOS id itself.

Fill in `completion_mask`, then run:  python -m pytest exercises -q -k ex6
"""

import torch  # noqa: F401  (you will need it)


def completion_mask(completion_ids, eos):
    """completion_ids (N, T) long, eos: a list of EOS ids -> (mask (N, T) float, truncated (N,) bool).

    mask[i, t] = 1.0 for t up to and including the first position whose id is any of the `eos`
    ids, 0.0 after it. A row with no EOS was cut at T (truncated = True) and keeps every token.
    Do not find the end from a pad id: when pad == EOS that would drop the EOS itself. A second
    EOS later in a row does not reopen the mask. No Python loops over rows are needed (cumsum).

    Example, eos = [0] (also the pad id):
        [[5, 6, 0, 0],       mask [[1, 1, 1, 0],       truncated [False,
         [5, 6, 7, 8]]             [1, 1, 1, 1]]                   True]
    """
    raise NotImplementedError("exercise 6: completion_mask")
