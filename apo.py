"""The APO objective and its baselines, as pure tensor functions.

Anchored Policy Optimization (Wang et al., ICML 2026, arXiv 2602.05717) changes one line
of GRPO: on tokens of *wrong* completions it replaces the importance ratio rho by a
rectified ratio that pushes the wrong token down (lam) and pulls probability mass onto the
reference model's other top-K candidates (beta). Everything else -- group advantages, the
PPO clip, the aggregation -- is GRPO's. This file is only that objective; sampling and model
forward passes live in rollout.py, the loop in train.py, a CPU demo in toy/tree_demo.py.

Read it top to bottom: the group advantages, the losses, their aggregation to one number, and
last how the log-probs the losses take are computed without a float32 (N, T, V) tensor.
Run the worked examples:  python -m doctest apo.py -v      (or: python apo.py)

The objective (METHOD.md §1, §3, §4; the paper's *Anchored Policy Optimization*), per completion
token t of completion i
---------------------------------------------------------------------------
    A_i        = (R_i - mean_j R_j) / (std_j R_j + eps)               group advantage
    rho_t      = pi_theta(y_t|s_t) / pi_old(y_t|s_t)                  importance ratio
    S(s_t)     = TopK(pi_ref(.|s_t)) minus {y_t}                       exclusive anchors
    Z_ref      = sum_{k in S} pi_ref(k|s_t)                            constant
    r_anchor_t = (1/Z_ref) * sum_{k in S} pi_theta(k|s_t)              virtual anchor ratio
    r~_t       = lam * rho_t - beta * r_anchor_t   if A_i < 0,  else rho_t
    L_t        = -min(r~_t * A_i, clip(r~_t, 1-eps_low, 1+eps_high) * A_i)
    grpo_kl    adds kl_coef * k3_t on every token; kl_on_wrong only where A_i < 0, with
    k3_t       = exp(log pi_ref - log pi_theta) - (log pi_ref - log pi_theta) - 1
    psr, nsr   GRPO's L_t only where A_i > 0 (psr) or A_i < 0 (nsr), the same divisor: the
               ablations that separate positive sharpening from negative squeezing (METHOD.md §4)

| symbol                     | variable                                  | shape     |
|----------------------------|-------------------------------------------|-----------|
| R_i                        | rewards                                   | (B, G)    |
| A_i                        | adv                                       | (N,)      |
| log pi_theta(y_t)          | logp             (with grad)              | (N, T)    |
| log pi_old(y_t)            | old_logp         (constant)               | (N, T)    |
| log pi_ref(y_t)            | ref_logp         (constant)               | (N, T)    |
| log pi_theta(k), k in TopK | topk_logp        (with grad)              | (N, T, K) |
| pi_ref(k), k in TopK       | ref_topk_logp.exp()  (constant)           | (N, T, K) |
| [k == y_t]                 | topk_is_sampled                           | (N, T, K) |
| rho_t, r~_t, r_anchor_t    | ratio, rect_ratio, r_anchor               | (N, T)    |
| r~_t if A_i < 0 else rho_t | used_ratio (the ratio inside the clip)    | (N, T)    |
| lam, beta, kl_coef         | lam, beta, kl_coef                        | scalars   |
| eps_low, eps_high          | clip_low, clip_high                       | scalars   |

Decisions where the paper is silent (METHOD.md "Decisions")
--------------------------------------------------------------
1. r~ replaces rho *inside* the PPO clip. At the start r~ = lam - beta = 0.95: in the band.
   A consequence worth knowing: once beta * r_anchor > lam - (1 - eps_low) (= 0.25 with
   the defaults, so any beta > 0.25 at r_anchor = 1) a wrong token's r~ leaves the band at
   ratio 1 and its whole gradient, push and pull, is clipped to zero until the anchors
   have lost mass (r_anchor < 0.25 / beta): a gated pull, not the pull of small beta.
2. No KL term in APO, no entropy bonus.
3. Reference probabilities and top-K ids come from the same temperature-scaled logits as
   the policy's (the caller divides both by the sampling temperature).
4. If S is empty (K = 1 and y_t is the reference top-1) the pull there is 0; Z_ref is
   clamped only against division by zero (1e-12).
5. Aggregation `token_mean` by default; also `seq_mean` and `constant` (see `aggregate`).
6. Advantages are std-normalised by default (unbiased std, as TRL and verl), eps = 1e-6;
   `std_normalize=False` gives Dr. GRPO's mean-only baseline.
"""

import torch

EPS_STD = 1e-6  # added to the group std; all-equal groups then get exactly A = 0
Z_REF_MIN = 1e-12  # Decision 4: guards 0/0 when every anchor is the sampled token
KINDS = ("grpo", "grpo_kl", "kl_on_wrong", "apo", "psr", "nsr")
NEEDS_REFERENCE = ("grpo_kl", "kl_on_wrong", "apo")  # the kinds that need the frozen reference
SIGN_ONLY = {"psr": 1, "nsr": -1}  # the ablations: only tokens whose advantage has this sign
# policy_loss's metrics are means over the micro-batch's valid tokens ("tokens"), except these;
# averaging them over micro-batches is a plain sum weighted by these counts (train.py)
METRIC_WEIGHTS = {"r_anchor": "neg_tokens"}
AGGS = ("token_mean", "seq_mean", "constant")
LEAN_PIECE_ELEMENTS = 1 << 23  # rows x V per float32 piece (32 MB): bounds gather_logp's workspace


# ----------------------------------------------------------------------------- advantages

def group_advantages(rewards, std_normalize=True, eps=EPS_STD):
    """Group-relative advantages (METHOD.md §1): rewards (B, G) -> advantages (B, G).

    >>> group_advantages(torch.tensor([[1., 0., 0., 1.], [1., 1., 1., 1.]]))
    tensor([[ 0.8660, -0.8660, -0.8660,  0.8660],
            [ 0.0000,  0.0000,  0.0000,  0.0000]])
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (B, G) with G >= 2, got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    adv = rewards - rewards.mean(dim=1, keepdim=True)  # (B, G)
    if std_normalize:
        adv = adv / (rewards.std(dim=1, keepdim=True) + eps)  # (B, G) unbiased std, as TRL
    return adv


# --------------------------------------------------------------------------- the losses

def _masked_mean(x, mask):
    return ((x * mask).sum() / mask.sum().clamp_min(1.0)).item()


def anchor_ratio(topk_logp, ref_topk_logp, topk_is_sampled):
    """r_anchor (N, T) = (1/Z_ref) sum_{k in S} pi_theta(k), with S = TopK minus {y_t}."""
    in_s = (~topk_is_sampled).to(topk_logp.dtype)  # (N, T, K) 1.0 on anchors in S
    z_ref = (ref_topk_logp.exp() * in_s).sum(-1).clamp_min(Z_REF_MIN)  # (N, T) const
    anchor_mass = (topk_logp.exp() * in_s).sum(-1)  # (N, T) sum_S pi_theta, with grad
    return anchor_mass / z_ref  # (N, T); 0 where S is empty (Decision 4)


def policy_loss(logp, old_logp, adv, mask, kind="apo", *, ref_logp=None, topk_logp=None,
                ref_topk_logp=None, topk_is_sampled=None, beta=0.1, lam=1.05,
                kl_coef=1e-3, clip_low=0.2, clip_high=0.2, agg="token_mean",
                max_len=None, denom=None):
    """The clipped policy-gradient loss of `kind` and a dict of float metrics.

    Shapes as METHOD.md §7: logp, old_logp, ref_logp, mask (N, T); adv (N,); topk_logp,
    ref_topk_logp, topk_is_sampled (N, T, K). Only logp and topk_logp carry gradients;
    the rest are treated as constants. Inputs a kind does not use are ignored, except that
    `topk_logp` always adds the `safe_mass` metric (sum of pi_theta over the reference top-K).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    needs = {"apo": ("topk_logp", "ref_topk_logp", "topk_is_sampled"),
             "grpo_kl": ("ref_logp",), "kl_on_wrong": ("ref_logp",)}.get(kind, ())
    given = {"topk_logp": topk_logp, "ref_topk_logp": ref_topk_logp,
             "topk_is_sampled": topk_is_sampled, "ref_logp": ref_logp}
    missing = [name for name in needs if given[name] is None]
    if missing:
        raise ValueError(f"kind={kind!r} needs {', '.join(missing)}; pass them from the reference pass")
    maskf = mask.to(logp.dtype)  # (N, T) 1.0 on completion tokens
    A = adv.detach().to(logp.dtype)[:, None]  # (N, 1) broadcast over tokens
    neg = A < 0  # (N, 1) tokens of worse-than-average completions
    neg_mask = maskf * neg.to(maskf.dtype)  # (N, T) 1.0 on tokens of negative-advantage completions
    ratio = torch.exp(logp - old_logp.detach())  # (N, T) rho; 1 when pi_old is pi_theta (train.py)
    metrics = {"ratio_mean": _masked_mean(ratio.detach(), maskf)}

    if kind == "apo":
        r_anchor = anchor_ratio(topk_logp, ref_topk_logp.detach(), topk_is_sampled)
        rect_ratio = lam * ratio - beta * r_anchor  # (N, T) r~: push y_t down, pull anchors up
        used_ratio = torch.where(neg, rect_ratio, ratio)  # (N, T) positives keep plain rho
        metrics["r_anchor"] = (_masked_mean(r_anchor.detach(), neg_mask)
                               if neg_mask.sum() > 0 else float("nan"))
    else:
        used_ratio = ratio
    if topk_logp is not None:  # APO, or any loss given the anchors (train.py --track-safe-mass)
        metrics["safe_mass"] = _masked_mean(topk_logp.detach().exp().sum(-1), maskf)  # sum_M pi_theta

    # PPO clip (METHOD.md §1, Decision 1): the min makes the clip pessimistic.
    unclipped = used_ratio * A  # (N, T)
    clipped = used_ratio.clamp(1 - clip_low, 1 + clip_high) * A  # (N, T)
    per_token = -torch.min(unclipped, clipped)  # (N, T) L_t
    metrics["clip_frac"] = _masked_mean((clipped < unclipped).to(maskf.dtype), maskf)
    if kind in SIGN_ONLY:  # psr / nsr: GRPO's L_t on one sign's tokens, the same divisor (psr + nsr = grpo)
        per_token = per_token * (torch.sign(A) == SIGN_ONLY[kind]).to(per_token.dtype)  # (N, T)

    if kind in ("grpo_kl", "kl_on_wrong"):
        log_r = ref_logp.detach() - logp  # (N, T) log pi_ref/pi_theta at y_t
        k3 = torch.exp(log_r) - log_r - 1  # (N, T) Schulman's k3 >= 0, verl's low_var_kl
        where = torch.ones_like(A) if kind == "grpo_kl" else neg.to(A.dtype)  # (N, 1)
        per_token = per_token + kl_coef * k3 * where  # (N, T) KL added per token
        metrics["kl"] = _masked_mean(k3.detach(), maskf)

    loss = aggregate(per_token, maskf, agg, max_len, denom)
    metrics["tokens"] = maskf.sum().item()  # the weight of every metric above ...
    metrics["neg_tokens"] = neg_mask.sum().item()  # ... but r_anchor's (METRIC_WEIGHTS)
    return loss, metrics


# ---------------------------------------------------------------------------- aggregation

def loss_denom(mask, agg="token_mean", max_len=None):
    """The divisor `aggregate` uses for a full step; pass it as `denom` to every micro-batch.

    token_mean: number of valid tokens; seq_mean: number of completions; constant:
    completions * max_len (max_len defaults to the padded length T).
    """
    if agg == "token_mean":
        return mask.sum().item()
    if agg == "seq_mean":
        return float(mask.shape[0])
    if agg == "constant":
        return float(mask.shape[0] * (max_len if max_len is not None else mask.shape[1]))
    raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")


def aggregate(per_token, mask, agg="token_mean", max_len=None, denom=None):
    """Reduce a per-token loss (N, T) to a scalar, the one place that does so.

    token_mean  sum over all valid tokens / number of valid tokens (default; every token of
                the step weighs the same, whatever the completion length or micro-batching)
    seq_mean    mean over each completion's tokens, then mean over completions (GRPO paper)
    constant    sum / (N * max_len) (Dr. GRPO: no length normalisation)
    `denom` replaces the divisor (token count, completion count or N * max_len) so that the
    losses of micro-batches, each given the full step's `loss_denom`, add up to the full loss.

    The value itself means little: with ratio 1 the surrogate averages -A over tokens, which
    sits near 0 by construction. Watch the reward and pass@k, not this number.
    """
    mask = mask.to(per_token.dtype)  # (N, T) 1.0 on completion tokens (EOS included)
    if agg == "seq_mean":
        lengths = mask.sum(dim=1).clamp_min(1.0)  # (N,) valid tokens per completion
        total = ((per_token * mask).sum(dim=1) / lengths).sum()  # sum of per-seq means
    elif agg in ("token_mean", "constant"):
        total = (per_token * mask).sum()
    else:
        raise ValueError(f"agg must be one of {AGGS}, got {agg!r}")
    if denom is None:
        denom = loss_denom(mask, agg, max_len)
    return total / max(denom, 1.0)  # max: a step with no valid token gives 0, not nan


# ------------------------------------------------- log-probs, lean in memory (read after the loss)
# Everything above takes log-probs as given. Here is how they are computed. The one-liner
#     logp = (logits.float() / temperature).log_softmax(-1).gather(-1, ids)        # (..., K)
# is right, and `naive_gather_logp` is exactly that; but autograd keeps the float32 (N, T, V)
# log-softmax for its backward: at V = 151,936 that tensor is larger than a 1.5B model.
# `gather_logp` computes the same numbers keeping only one logsumexp per row.


def naive_gather_logp(logits, ids, temperature=1.0):
    """The one-liner `gather_logp` replaces: the same values, but a float32 (..., V) tensor is kept.

    >>> naive_gather_logp(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[0, 2]]))
    tensor([[-0.4076, -2.4076]])
    """
    return (logits.float() / temperature).log_softmax(-1).gather(-1, ids)  # (..., K) float32 log pi


def gather_logp(logits, ids, temperature=1.0):
    """log softmax(logits / temperature) at `ids`, without building a float32 log-softmax tensor.

    logits (..., V) of any float dtype, *not* yet divided by the temperature; ids (..., K)
    long -> (..., K) float32 log-probs, with a gradient w.r.t. logits. Memory beyond the
    logits: one float32 piece of LEAN_PIECE_ELEMENTS and a logsumexp per row, forward and
    backward. A naive `(logits.float() / t).log_softmax(-1)` keeps float32 copies of (N, T, V)
    for its backward; at V = 151,936 that is the difference between fitting on one GPU and not.

    >>> logits = torch.tensor([[2.0, 1.0, 0.0]])
    >>> gather_logp(logits, torch.tensor([[0, 2]]))
    tensor([[-0.4076, -2.4076]])
    >>> gather_logp(logits, torch.tensor([[0]]), temperature=2.0)  # softmax([1, 0.5, 0])[0]
    tensor([[-0.6803]])
    """
    return _GatherLogp.apply(logits.contiguous(), ids, float(temperature))


def reference_topk(logits, k, temperature=1.0):
    """The K most likely ids and their log-probs: logits (..., V) -> ids, logp (..., K).

    Used on the reference model's logits to define the safe manifold; the log-probs are those
    of softmax(logits / temperature) (Decision 3), the ranking does not depend on it.

    >>> ids, logp = reference_topk(torch.tensor([[0.0, 3.0, 1.0]]), 2)
    >>> ids, logp.exp()
    (tensor([[1, 2]]), tensor([[0.8438, 0.1142]]))
    """
    ids = logits.topk(k, dim=-1).indices  # (..., K) sorted by probability
    return ids, gather_logp(logits, ids, temperature)  # (..., K) long, (..., K) float32 log pi


class _GatherLogp(torch.autograd.Function):
    """log softmax(z / tau)[ids] = z[ids] / tau - logsumexp(z / tau), with a hand-written backward.

    Autograd's own logsumexp would keep a float32 copy of all the logits for its backward;
    here only the logits themselves (in their own dtype), the ids and one float32
    logsumexp per row are kept, and the backward recomputes softmax piece by piece:
        d out_k / d z_j = ([j == ids_k] - softmax(z / tau)_j) / tau
    The division by the temperature tau happens in float32, piece by piece, exactly as
    `generate` divides its float32 scores: the loss then scores a sampled token with the very
    distribution that sampled it, even when the model computes bf16 logits.
    """

    @staticmethod
    def forward(ctx, logits, ids, temperature):
        V, work = logits.shape[-1], torch.promote_types(logits.dtype, torch.float32)
        flat = logits.reshape(-1, V)  # (R, V) a view: logits are contiguous
        rows = max(1, LEAN_PIECE_ELEMENTS // V)
        with torch.autocast(logits.device.type, enabled=False):
            lse = torch.cat([torch.logsumexp(flat[s:s + rows].to(work) / temperature, -1, keepdim=True)
                             for s in range(0, flat.shape[0], rows)])  # (R, 1) float32 (or 64)
            lse = lse.view(*logits.shape[:-1], 1)  # (..., 1)
            out = logits.gather(-1, ids).to(work) / temperature - lse  # (..., K) float32 log-probs
        ctx.save_for_backward(logits, ids, lse)
        ctx.temperature = temperature
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, ids, lse = ctx.saved_tensors
        tau, V = ctx.temperature, logits.shape[-1]
        flat, flat_ids = logits.reshape(-1, V), ids.reshape(-1, ids.shape[-1])  # (R, V), (R, K)
        flat_lse, flat_g = lse.reshape(-1, 1), grad_out.reshape(-1, ids.shape[-1]).to(lse.dtype)
        grad = torch.empty_like(flat)  # (R, V) in the logits' dtype
        rows = max(1, LEAN_PIECE_ELEMENTS // V)
        for s in range(0, flat.shape[0], rows):  # in place: one float32 piece at a time
            g = flat[s:s + rows].to(lse.dtype, copy=True)  # (r, V) a float32 copy: never alias z
            g.div_(tau).sub_(flat_lse[s:s + rows]).exp_()  # softmax(z / tau)
            g.mul_(-flat_g[s:s + rows].sum(-1, keepdim=True))  # the -softmax term
            g.scatter_add_(-1, flat_ids[s:s + rows], flat_g[s:s + rows])  # the [j == ids_k] term
            grad[s:s + rows] = g.div_(tau)  # chain rule through z / tau; cast back to the logits' dtype
        return grad.view_as(logits), None, None


if __name__ == "__main__":
    import doctest
    print(doctest.testmod())
