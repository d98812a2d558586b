"""apo.py against a slow token-by-token reference, and the properties METHOD.md states."""

import itertools
import math

import pytest
import torch

import apo

N, T, V, K = 6, 5, 11, 4


def make_batch(seed=0, dtype=torch.float64, adv=None):
    """Random logits for policy/old/reference, sampled tokens, a ragged mask."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, T, V, generator=g, dtype=dtype).requires_grad_(True)
    old_logits = (logits.detach() + 0.1 * torch.randn(N, T, V, generator=g, dtype=dtype))
    ref_logits = torch.randn(N, T, V, generator=g, dtype=dtype)
    y = torch.randint(V, (N, T), generator=g)
    y[0, :] = ref_logits[0].argmax(-1)  # completion 0 samples the reference top-1 everywhere
    mask = torch.ones(N, T)
    mask[1, 3:] = 0  # a short completion
    mask[4, 1:] = 0
    if adv is None:
        adv = torch.tensor([-1.2, 0.7, -0.3, 1.5, -0.8, 0.0], dtype=dtype)
    return logits, old_logits, ref_logits, y, mask.to(dtype), adv


def inputs_from(logits, old_logits, ref_logits, y):
    ids, ref_topk_logp = apo.reference_topk(ref_logits, K)  # (N, T, K)
    return dict(
        logp=apo.gather_logp(logits, y[..., None]).squeeze(-1).double(),
        old_logp=apo.gather_logp(old_logits, y[..., None]).squeeze(-1).double(),
        ref_logp=apo.gather_logp(ref_logits, y[..., None]).squeeze(-1).double(),
        topk_logp=apo.gather_logp(logits, ids).double(),
        ref_topk_logp=ref_topk_logp.double(),
        topk_is_sampled=ids == y[..., None],
    )


def slow_loss(logits, old_logits, ref_logits, y, mask, adv, kind, agg, beta=0.1, lam=1.05,
              kl_coef=1e-3, clip=0.2, max_len=None):
    """The objective written from METHOD.md, one token at a time with plain softmaxes."""
    per_seq, total, n_tok = [], 0.0, 0.0
    for i in range(N):
        seq_sum, seq_n = 0.0, 0.0
        for t in range(T):
            if mask[i, t] == 0:
                continue
            pi = torch.softmax(logits[i, t], -1)
            pi_old = torch.softmax(old_logits[i, t], -1)
            pi_ref = torch.softmax(ref_logits[i, t], -1)
            tok = y[i, t].item()
            r = pi[tok] / pi_old[tok]
            if kind == "apo" and adv[i] < 0:
                top = torch.argsort(pi_ref, descending=True)[:K].tolist()
                anchors = [k for k in top if k != tok]
                z = sum(pi_ref[k] for k in anchors) if anchors else 0.0
                r_anchor = (sum(pi[k] for k in anchors) / z) if anchors else 0.0
                r = lam * r - beta * r_anchor
            a = adv[i]
            term = -torch.min(r * a, torch.clamp(r, 1 - clip, 1 + clip) * a)
            if kind == "grpo_kl" or (kind == "kl_on_wrong" and adv[i] < 0):
                x = torch.log(pi_ref[tok]) - torch.log(pi[tok])
                term = term + kl_coef * (torch.exp(x) - x - 1)
            if (kind == "psr" and adv[i] <= 0) or (kind == "nsr" and adv[i] >= 0):
                term = term * 0.0  # the ablations keep one sign's tokens, and still count the rest
            seq_sum, seq_n = seq_sum + term, seq_n + 1
        per_seq.append(seq_sum / max(seq_n, 1))
        total, n_tok = total + seq_sum, n_tok + seq_n
    if agg == "token_mean":
        return total / n_tok
    if agg == "seq_mean":
        return sum(per_seq) / N
    return total / (N * (max_len or T))


@pytest.mark.parametrize("kind,agg", list(itertools.product(apo.KINDS, apo.AGGS)))
def test_matches_slow_reference_value_and_grad(kind, agg):
    logits, old, ref, y, mask, adv = make_batch()
    loss, _ = apo.policy_loss(**inputs_from(logits, old, ref, y), adv=adv, mask=mask,
                              kind=kind, agg=agg, kl_coef=0.05, max_len=8)
    grad, = torch.autograd.grad(loss, logits)
    expect = slow_loss(logits, old, ref, y, mask, adv, kind, agg, kl_coef=0.05, max_len=8)
    grad_expect, = torch.autograd.grad(expect, logits)
    assert torch.allclose(loss, expect, atol=1e-10)
    assert torch.allclose(grad, grad_expect, atol=1e-10)


@pytest.mark.parametrize("kind", apo.KINDS)
def test_gradcheck_float64(kind):
    _, old, ref, y, mask, adv = make_batch(seed=1)
    ins = inputs_from(old, old, ref, y)

    def f(logp, topk_logp):
        return apo.policy_loss(logp, ins["old_logp"] + 0.05, adv, mask, kind=kind,
                               ref_logp=ins["ref_logp"], topk_logp=topk_logp,
                               ref_topk_logp=ins["ref_topk_logp"],
                               topk_is_sampled=ins["topk_is_sampled"], kl_coef=0.1)[0]

    logp = ins["logp"].clone().requires_grad_(True)
    topk_logp = ins["topk_logp"].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (logp, topk_logp))


def test_positive_advantage_tokens_are_plain_grpo_under_apo():
    adv = torch.tensor([0.5, 1.0, 0.2, 1.5, 0.1, 2.0], dtype=torch.float64)
    logits, old, ref, y, mask, _ = make_batch(seed=2, adv=adv)
    grads = {}
    for kind in ("grpo", "apo"):
        loss, _ = apo.policy_loss(**inputs_from(logits, old, ref, y), adv=adv, mask=mask, kind=kind)
        grads[kind], = torch.autograd.grad(loss, logits)
    assert torch.equal(grads["grpo"], grads["apo"])


def test_pull_gradient_is_minus_beta_over_zref_times_anchor_mass_gradient():
    """One wrong token, ratio 1: grad(apo) - lam * grad(grpo) = beta/Z_ref * grad(anchor mass)."""
    torch.manual_seed(3)
    logits = torch.randn(1, 1, V, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(1, 1, V, dtype=torch.float64)
    y = torch.tensor([[ref.argmax().item()]])  # sampled = reference top-1: excluded from S
    ins = inputs_from(logits, logits.detach(), ref, y)
    adv, mask, beta = torch.tensor([-1.0], dtype=torch.float64), torch.ones(1, 1), 0.1
    g = {}
    for kind in ("grpo", "apo"):
        loss, _ = apo.policy_loss(**ins, adv=adv, mask=mask, kind=kind, beta=beta)
        g[kind], = torch.autograd.grad(loss, logits, retain_graph=True)
    pi, pi_ref = torch.softmax(logits, -1), torch.softmax(ref, -1)
    anchors = torch.argsort(pi_ref.flatten(), descending=True)[1:K]  # top-K minus y
    z_ref = pi_ref.flatten()[anchors].sum()
    grad_mass, = torch.autograd.grad(pi.flatten()[anchors].sum(), logits)
    # with A = -1 the loss is -A * r~ = lam * rho - beta * r_anchor
    pull = g["apo"] - 1.05 * g["grpo"]
    assert torch.allclose(pull, -beta / z_ref * grad_mass, atol=1e-12)


def test_sampled_token_is_never_pulled():
    """The pull term's gradient w.r.t. topk_logp is zero exactly where the anchor is y_t."""
    logits, old, ref, y, mask, adv = make_batch(seed=4)
    ins = inputs_from(logits.detach(), old, ref, y)
    topk_logp = ins.pop("topk_logp").clone().requires_grad_(True)
    loss, _ = apo.policy_loss(**ins, topk_logp=topk_logp, adv=adv, mask=mask, kind="apo")
    grad, = torch.autograd.grad(loss, topk_logp)
    assert ins["topk_is_sampled"][mask.bool()].any()  # the case is exercised
    assert (grad[ins["topk_is_sampled"]] == 0).all()
    neg_valid = (adv < 0)[:, None, None] & mask.bool()[..., None] & ~ins["topk_is_sampled"]
    assert (grad[neg_valid] != 0).all()  # and every other anchor of a wrong token is pulled


def test_empty_anchor_set_gives_no_pull():
    """K = 1 and y_t is the reference top-1: S is empty, apo == lam * grpo, no nan."""
    torch.manual_seed(5)
    logits = torch.randn(2, 3, V, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(2, 3, V, dtype=torch.float64)
    y = ref.argmax(-1)
    ids, ref_topk_logp = apo.reference_topk(ref, 1)
    logp = apo.gather_logp(logits, y[..., None]).squeeze(-1)
    common = dict(old_logp=logp.detach(), adv=torch.tensor([-1.0, -0.5], dtype=torch.float64),
                  mask=torch.ones(2, 3), clip_low=10.0, clip_high=10.0)
    apo_loss, m = apo.policy_loss(logp, kind="apo", topk_logp=apo.gather_logp(logits, ids),
                                  ref_topk_logp=ref_topk_logp, topk_is_sampled=ids == y[..., None],
                                  **common)
    grpo_loss, _ = apo.policy_loss(logp, kind="grpo", **common)
    assert torch.allclose(apo_loss, 1.05 * grpo_loss)
    assert m["r_anchor"] == 0.0


def test_zero_advantage_and_masked_tokens_get_zero_gradient():
    for kind in apo.KINDS:
        logits, old, ref, y, mask, adv = make_batch(seed=6)
        loss, _ = apo.policy_loss(**inputs_from(logits, old, ref, y), adv=adv, mask=mask, kind=kind)
        grad, = torch.autograd.grad(loss, logits)
        if kind != "grpo_kl":  # grpo_kl regularises every token, zero-advantage ones too
            assert (grad[5] == 0).all(), kind  # completion 5 has A = 0
        assert (grad[1, 3:] == 0).all() and (grad[4, 1:] == 0).all(), kind  # masked positions


def test_group_advantages_all_equal_groups_are_zero_and_match_formula():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    adv = apo.group_advantages(rewards)
    assert (adv[:2] == 0).all()
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)  # unbiased
    assert torch.allclose(adv[2], torch.tensor([2 / 3, -1 / 3, -1 / 3]) / (std + 1e-6))
    assert torch.allclose(apo.group_advantages(rewards, std_normalize=False)[2],
                          torch.tensor([2 / 3, -1 / 3, -1 / 3]))


@pytest.mark.parametrize("kind,agg", list(itertools.product(apo.KINDS, apo.AGGS)))
def test_micro_batches_with_denom_sum_to_the_full_batch(kind, agg):
    logits, old, ref, y, mask, adv = make_batch(seed=7)
    ins = inputs_from(logits, old, ref, y)
    full, _ = apo.policy_loss(**ins, adv=adv, mask=mask, kind=kind, agg=agg)
    full_grad, = torch.autograd.grad(full, logits, retain_graph=True)
    denom = apo.loss_denom(mask, agg)
    parts = [slice(0, 2), slice(2, 5), slice(5, 6)]
    total = sum(apo.policy_loss(**{k: v[s] for k, v in ins.items()}, adv=adv[s], mask=mask[s],
                                kind=kind, agg=agg, denom=denom)[0] for s in parts)
    total_grad, = torch.autograd.grad(total, logits)
    assert torch.allclose(total, full, atol=1e-12)
    assert torch.allclose(total_grad, full_grad, atol=1e-12)


def test_lean_logp_equals_log_softmax():
    logits = torch.randn(3, 4, 50).bfloat16()
    ids = torch.randint(50, (3, 4, 6))
    expect = torch.log_softmax(logits.float(), -1).gather(-1, ids)
    assert torch.allclose(apo.gather_logp(logits, ids), expect, atol=1e-5)
    top_ids, top_logp = apo.reference_topk(logits, 6)
    assert torch.equal(top_ids, logits.float().topk(6, -1).indices)
    assert torch.allclose(top_logp, torch.log_softmax(logits.float(), -1).topk(6, -1).values, atol=1e-5)


def test_metrics_are_plain_floats_and_defined():
    logits, old, ref, y, mask, adv = make_batch(seed=8)
    ins = inputs_from(logits, old, ref, y)
    _, m = apo.policy_loss(**ins, adv=adv, mask=mask, kind="apo")
    assert {"clip_frac", "ratio_mean", "r_anchor", "safe_mass", "tokens"} <= m.keys()
    assert all(type(v) is float for v in m.values())
    safe = (ins["topk_logp"].exp().sum(-1) * mask).sum() / mask.sum()
    assert m["safe_mass"] == pytest.approx(safe.item())
    _, m = apo.policy_loss(**ins, adv=adv, mask=mask, kind="grpo_kl")
    assert m["kl"] > 0


def test_bad_arguments_raise_clear_errors():
    logits, old, ref, y, mask, adv = make_batch()
    ins = inputs_from(logits, old, ref, y)
    with pytest.raises(ValueError, match="kind must be one of"):
        apo.policy_loss(ins["logp"], ins["old_logp"], adv, mask, kind="ppo")
    with pytest.raises(ValueError, match="needs topk_logp"):
        apo.policy_loss(ins["logp"], ins["old_logp"], adv, mask, kind="apo")
    with pytest.raises(ValueError, match="agg must be one of"):
        apo.policy_loss(ins["logp"], ins["old_logp"], adv, mask, kind="grpo", agg="sum")
    with pytest.raises(ValueError, match="G >= 2"):
        apo.group_advantages(torch.ones(3, 1))


def test_lean_logp_gradient_matches_autograd_in_float64_across_pieces(monkeypatch):
    monkeypatch.setattr(apo, "LEAN_PIECE_ELEMENTS", 30)  # several row pieces of V = 11
    x = torch.randn(3, 4, 11, dtype=torch.float64, requires_grad=True)
    ids = torch.randint(11, (3, 4, 3))
    assert torch.autograd.gradcheck(lambda z: apo.gather_logp(z, ids), (x,))
    g = torch.randn(3, 4, 3, dtype=torch.float64)
    lean, = torch.autograd.grad(apo.gather_logp(x, ids), x, g)
    naive, = torch.autograd.grad(torch.log_softmax(x, -1).gather(-1, ids), x, g)
    assert torch.allclose(lean, naive, atol=1e-12)


def test_lean_logp_keeps_the_logits_dtype_for_the_gradient():
    x = torch.randn(2, 5, 50).bfloat16().requires_grad_(True)
    out = apo.gather_logp(x, torch.randint(50, (2, 5, 1)))
    out.sum().backward()
    assert out.dtype == torch.float32 and x.grad.dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lean_logp_backward_never_modifies_the_logits(dtype):
    x = torch.randn(2, 3, 20, dtype=dtype, requires_grad=True)
    before = x.detach().clone()
    apo.gather_logp(x, torch.randint(20, (2, 3, 2))).sum().backward()
    assert torch.equal(x.detach(), before)


@pytest.mark.parametrize("agg", apo.AGGS)
def test_psr_and_nsr_split_grpo_in_two(agg):
    """Positive-only plus negative-only is GRPO, value and gradient: each keeps one sign's tokens and
    GRPO's divisor; psr leaves negative-advantage tokens without gradient, nsr positive ones."""
    logits, old, ref, y, mask, adv = make_batch(seed=3)
    out = {}
    for kind in ("grpo", "psr", "nsr"):
        loss, _ = apo.policy_loss(**inputs_from(logits, old, ref, y), adv=adv, mask=mask, kind=kind, agg=agg)
        out[kind] = (loss, torch.autograd.grad(loss, logits)[0])  # (), (N, T, V)
    assert torch.allclose(out["psr"][0] + out["nsr"][0], out["grpo"][0], atol=1e-12)
    assert torch.allclose(out["psr"][1] + out["nsr"][1], out["grpo"][1], atol=1e-12)
    assert out["psr"][1][adv < 0].abs().max() == 0 and out["nsr"][1][adv > 0].abs().max() == 0
    assert out["psr"][1][adv > 0].abs().max() > 0 and out["nsr"][1][adv < 0].abs().max() > 0
