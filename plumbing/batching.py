"""Micro-batches for the loss's forward passes: plumbing for train.py's step 5.

The loss is a sum over micro-batches, each divided by the whole step's divisor (apo.loss_denom), so
how rows are grouped changes the memory a step needs, never its gradient. Rows sorted by length
are packed under a token budget (verl's dynamic batch size), and each group is trimmed to the
columns some row of it uses.
"""

import dataclasses

import torch


def trimmed(roll):
    """The same rows of a rollout.Rollout without the columns that are padding in every row: the
    left padding all prompts share and the completion columns after the longest completion. Position
    ids come from the attention mask, so the forward pass gives the same numbers on fewer columns."""
    P = roll.prompt_len
    first = int(roll.attention_mask[:, :P].any(0).long().argmax())  # first column any prompt uses
    T = max(1, int(roll.completion_mask.sum(1).max()))  # the longest completion, EOS included
    return dataclasses.replace(roll, input_ids=roll.input_ids[:, first:P + T],
                               attention_mask=roll.attention_mask[:, first:P + T],
                               completion_ids=roll.completion_ids[:, :T],
                               completion_mask=roll.completion_mask[:, :T])


def micro_batches(roll, max_tokens, max_rows=0):
    """Row groups (index tensors) of a rollout.Rollout: rows sorted by length are packed so that each
    group's padded size, rows x its own trimmed width, stays within `max_tokens` (a longer row goes
    alone), and within `max_rows` rows when that is > 0. Short completions share big groups, long
    ones get small.

    >>> from types import SimpleNamespace
    >>> lengths = torch.tensor([[1., 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    >>> r = SimpleNamespace(prompt_len=2, attention_mask=torch.ones(4, 6), completion_mask=lengths)
    >>> [g.tolist() for g in micro_batches(r, max_tokens=12)]   # widths 2 + length
    [[1, 3, 2], [0]]
    """
    prompt = roll.attention_mask[:, :roll.prompt_len].sum(1).tolist()  # (N,) real prompt tokens
    length = roll.completion_mask.sum(1).tolist()  # (N,) completion tokens
    groups, current = [], []
    for i in sorted(range(len(length)), key=lambda r: (length[r], prompt[r])):
        rows = current + [i]
        width = max(prompt[r] for r in rows) + max(max(length[r] for r in rows), 1)
        if current and (len(rows) * width > max_tokens or 0 < max_rows < len(rows)):
            groups.append(current)
            rows = [i]
        current = rows
    return [torch.tensor(g) for g in groups + [current]]
