"""Exercise 2: the exclusive anchor set and the virtual anchor ratio (METHOD.md §3; about 20 minutes).

At each completion position the reference's K most likely tokens form the safe manifold M. The
anchors are S = M minus {y_t}: the sampled token is never its own anchor, so pushing it down (the
wrong token) and pulling the anchors up never cancel. With the constant Z_ref = sum_{k in S} pi_ref(k),

    r_anchor = (1 / Z_ref) * sum_{k in S} pi_theta(k)

It is 1 when the policy keeps the reference's mass on the anchors. APO's loss uses -beta * r_anchor.

Fill in `anchor_ratio`, then run:  python -m pytest exercises -q -k ex2
"""

import torch  # noqa: F401  (you will need it)

Z_REF_MIN = 1e-12  # clamp Z_ref against 0/0 only (METHOD.md Decision 4)


def anchor_ratio(topk_logp, ref_topk_logp, topk_is_sampled):
    """r_anchor (N, T) from the policy and reference log-probs at the reference's top-K ids.

    topk_logp       (N, T, K) float  log pi_theta at the K ids of M, *with* a gradient
    ref_topk_logp   (N, T, K) float  log pi_ref at the same ids (constants)
    topk_is_sampled (N, T, K) bool   True where that id is the sampled token y_t (at most one True
                                     per position; none when y_t is outside the top-K)
    Returns r_anchor (N, T), differentiable w.r.t. topk_logp. Requirements:
    - the sampled entry is in neither the sum nor Z_ref; so the gradient of r_anchor w.r.t. the
      sampled entry of topk_logp is exactly 0 (the pull never acts on y through its own entry);
    - Z_ref is clamped below at Z_REF_MIN; an empty S (K = 1 and y_t is the reference's top-1)
      gives r_anchor = 0, with no nan in the value or in the gradient.

    Example: pi_theta (0.5, 0.2, 0.1), pi_ref (0.6, 0.3, 0.05) at the top-3, y = the first id:
    S = the other two, r_anchor = (0.2 + 0.1) / (0.3 + 0.05) = 0.8571.
    """
    raise NotImplementedError("exercise 2: anchor_ratio")
