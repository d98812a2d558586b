"""Exercise 3: APO's per-token loss, and the beta at which the clip gates the pull (METHOD.md §3,
Decision 1; about 25 minutes).

On tokens of negative-advantage completions APO replaces the importance ratio rho by the rectified
ratio r~ = lam * rho - beta * r_anchor, *inside* the PPO clip:

    used = r~ if A < 0 else rho
    L_t  = -min(used * A, clip(used, 1 - clip_low, 1 + clip_high) * A)

Fill in `apo_token_loss` and `gating_beta`, then run:  python -m pytest exercises -q -k ex3
"""

import torch  # noqa: F401  (you will need it)


def apo_token_loss(ratio, r_anchor, adv, lam=1.05, beta=0.1, clip_low=0.2, clip_high=0.2):
    """The loss L_t of every token: ratio, r_anchor (N, T) float; adv (N,) float -> L (N, T).

    ratio = pi_theta(y_t) / pi_old(y_t) and r_anchor (exercise 2) carry gradients; adv is the
    completion's advantage A, the same for all its T tokens. Use the rectified ratio only where
    A < 0; where A >= 0 the plain ratio (A = 0 gives L = 0). The clip acts on the ratio actually
    used, as written above; the min makes it pessimistic, so a clipped token has gradient 0
    w.r.t. both ratio and r_anchor. Use differentiable torch operations (torch.where, clamp,
    torch.minimum) and no aggregation: one loss per token.

    Example: ratio 1, r_anchor 1, A = -1, defaults: r~ = 0.95, inside [0.8, 1.2]: L = 0.95.
    """
    raise NotImplementedError("exercise 3: apo_token_loss")


def gating_beta(lam=1.05, clip_low=0.2):
    """The beta above which a negative-advantage token at ratio 1 and r_anchor 1 gets no gradient.

    Work it out on paper from the loss above (A < 0): for which beta does r~ leave the clip band,
    and from which side? Return that threshold as a float, a formula in lam and clip_low. With
    the defaults the clip then removes the whole gradient of such a token, push and pull, until
    its anchors have lost mass (METHOD.md Decision 1).
    """
    raise NotImplementedError("exercise 3: gating_beta")
