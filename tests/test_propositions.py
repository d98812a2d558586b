"""The paper's three propositions (METHOD.md §4c), checked numerically through the project's code.

Every gradient here comes by autograd through `apo.policy_loss`, `apo.gather_logp` and
`apo.reference_topk`; the masses it is compared with (J_support, the anchor mass, pi(y)) are
written out independently with a plain softmax. float64 throughout, fixed seeds, no model.
The statements are this project's readings of the propositions' titles (the paper's text was not
available), and they are checked as far as they hold: where the softmax parameterisation changes
a reading (2.2, 2.3), the test checks what a gradient step on the logits does, and says so.

The closed-form forces themselves are tested in tests/test_one_node.py; here: what they imply.
"""

import torch

import apo

LAM = 1.05
DT = torch.float64


def flat_grad(loss, params):
    """d loss / d params, all parameters concatenated: (P,)."""
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)])


def cosine(a, b):
    return (a @ b / (a.norm() * b.norm())).item()


def apo_loss(z, ref_logits, y, adv, k, beta, **knobs):
    """apo.policy_loss at ratio 1 for logits z (N, T, V) and sampled ids y (N, T): (loss, metrics)."""
    ids, ref_topk_logp = apo.reference_topk(ref_logits, k)  # (N, T, K) the safe manifold M
    logp = apo.gather_logp(z, y[..., None])[..., 0]  # (N, T) log pi(y_t), with grad
    return apo.policy_loss(logp, logp.detach(), adv, torch.ones_like(logp), "apo",
                           topk_logp=apo.gather_logp(z, ids), ref_topk_logp=ref_topk_logp,
                           topk_is_sampled=ids == y[..., None], beta=beta, lam=LAM, **knobs)


def masses(z, ref_logits, y, k):
    """Written out with a plain softmax: J_support = sum_M pi, the anchor mass sum_S pi, pi(y)
    (each (N, T), with grad) and the constant Z_ref = sum_S pi_ref (N, T)."""
    pi, ref_pi = torch.softmax(z, -1), torch.softmax(ref_logits, -1)  # (N, T, V)
    in_m = torch.zeros_like(ref_pi).scatter_(-1, ref_logits.topk(k, -1).indices, 1.0)  # (N, T, V) 1 on M
    in_s = in_m.scatter(-1, y[..., None], 0.0)  # S = M minus {y}
    return ((pi * in_m).sum(-1), (pi * in_s).sum(-1), pi.gather(-1, y[..., None])[..., 0],
            (ref_pi * in_s).sum(-1))


def pull_descent(params, loss_at):
    """The pull's descent direction, -(grad L(beta) - grad L(0)).

    A clean separation: while every token's r~ stays in the clip band (clip_frac = 0, checked by
    the callers), L = -w sum_t A_t (lam rho_t - beta r_anchor_t) exactly, affine in beta, and the
    push lam rho_t does not depend on beta; so L(beta) - L(0) = w beta sum_{A_t<0} A_t r_anchor_t,
    the pull term and nothing else (positive-advantage tokens keep rho at every beta)."""
    return -(flat_grad(loss_at(1), params) - flat_grad(loss_at(0), params))


# ------------------------------------------------------------------ Proposition 2.1: gradient alignment

def test_prop_2_1_pull_is_the_gradient_of_the_anchor_mass_at_each_position():
    """In the unclipped regime the pull at each negative-advantage position t is
    c_t grad(sum_S pi), c_t = beta |A_t| w / Z_ref_t; that is c_t grad J_support when y_t is not
    in M (collinear, cosine 1), and c_t (grad J_support - grad pi(y_t)) when it is (not collinear)."""
    g = torch.Generator().manual_seed(0)
    N, T, V, K, beta = 3, 3, 9, 4, 0.1
    ref_logits = 2 * torch.randn(N, T, V, generator=g, dtype=DT)
    z = (ref_logits + 0.3 * torch.randn(N, T, V, generator=g, dtype=DT)).requires_grad_(True)
    y_in_m = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool)  # (N, T)
    y = torch.where(y_in_m, ref_logits.topk(K, -1).indices[..., 1], ref_logits.argmin(-1))  # (N, T)
    adv = torch.tensor([-1.2, -0.7, 0.9], dtype=DT)  # the third completion is correct: no pull
    w = 1.0 / (N * T)  # token_mean's weight of one token
    runs = {b: apo_loss(z, ref_logits, y, adv, K, b) for b in (0.0, beta)}
    assert all(m["clip_frac"] == 0.0 for _, m in runs.values())  # r~ in the band: the unclipped regime
    pull = pull_descent([z], lambda i: runs[(0.0, beta)[i]][0]).view(N, T, V)

    j_support, anchor_mass, pi_y, z_ref = masses(z, ref_logits, y, K)
    grad_j, grad_s, grad_y = (flat_grad(m.sum(), [z]).view(N, T, V) for m in (j_support, anchor_mass, pi_y))
    for i in range(N):
        for t in range(T):
            if adv[i] > 0:
                assert torch.equal(pull[i, t], torch.zeros(V, dtype=DT))
                continue
            c = beta * abs(adv[i]) * w / z_ref[i, t]
            assert torch.allclose(pull[i, t], c * grad_s[i, t], rtol=1e-10, atol=1e-15)
            if y_in_m[i, t]:  # the anchor set's mass is J_support - pi(y): a different direction
                assert torch.allclose(pull[i, t], c * (grad_j[i, t] - grad_y[i, t]), rtol=1e-10, atol=1e-15)
                assert cosine(pull[i, t], grad_j[i, t]) < 0.999
            else:  # S = M: collinear with grad J_support, same sense
                assert torch.allclose(pull[i, t], c * grad_j[i, t], rtol=1e-10, atol=1e-15)
                assert abs(cosine(pull[i, t], grad_j[i, t]) - 1) < 1e-12


def linear_model(seed, N, T, H=5, V=9):
    """A tiny linear LM shared by all positions: hidden states h (N, T, H), the policy's
    parameters (W, b) (leaves) and the reference's logits (N, T, V) from nearby parameters."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, T, H, generator=g, dtype=DT)
    w0, b0 = torch.randn(V, H, generator=g, dtype=DT), torch.randn(V, generator=g, dtype=DT)
    W = (w0 + 0.2 * torch.randn(V, H, generator=g, dtype=DT)).requires_grad_(True)
    b = (b0 + 0.2 * torch.randn(V, generator=g, dtype=DT)).requires_grad_(True)
    return h, [W, b], h @ w0.T + b0


def test_prop_2_1_collinear_in_parameter_space_of_a_shared_linear_model():
    """Through shared parameters theta = (W, b): at one position with y not in M the pull is
    (beta |A| / Z_ref) grad_theta J_support, cosine 1. Over several positions it is exactly the
    gradient of sum_t (beta |A_t| w / Z_ref_t) J_support_t: a weighted support coverage, collinear
    with grad_theta of the plain sum only when |A_t| / Z_ref_t is the same at every position."""
    K, beta = 4, 0.1
    h, params, ref_logits = linear_model(1, N=1, T=1)
    y = ref_logits.argmin(-1)  # (1, 1) not in M
    adv = torch.tensor([-0.8], dtype=DT)
    z = h @ params[0].T + params[1]  # (1, 1, V) logits as a function of theta
    runs = [apo_loss(z, ref_logits, y, adv, K, b) for b in (0.0, beta)]
    assert all(m["clip_frac"] == 0.0 for _, m in runs)
    pull = pull_descent(params, lambda i: runs[i][0])
    j_support, _, _, z_ref = masses(z, ref_logits, y, K)
    expected = beta * 0.8 / z_ref.item() * flat_grad(j_support.sum(), params)
    assert torch.allclose(pull, expected, rtol=1e-10, atol=1e-15)
    assert abs(cosine(pull, expected) - 1) < 1e-12

    N, T = 2, 3
    h, params, ref_logits = linear_model(2, N, T)
    y = ref_logits.argmin(-1)  # (N, T) no y in M: S = M everywhere
    adv = torch.tensor([-0.5, -2.0], dtype=DT)
    z = h @ params[0].T + params[1]  # (N, T, V)
    runs = [apo_loss(z, ref_logits, y, adv, K, b) for b in (0.0, beta)]
    assert all(m["clip_frac"] == 0.0 for _, m in runs)
    pull = pull_descent(params, lambda i: runs[i][0])
    j_support, _, _, z_ref = masses(z, ref_logits, y, K)
    weights = beta * adv.abs()[:, None] / (N * T) / z_ref  # (N, T) the constants c_t
    assert torch.allclose(pull, flat_grad((weights * j_support).sum(), params), rtol=1e-10, atol=1e-15)
    assert cosine(pull, flat_grad(j_support.sum(), params)) < 0.999  # the plain sum: not collinear here


def test_prop_2_1_needs_the_unclipped_regime():
    """Decision 1: at pi_theta = pi_ref (r_anchor = 1, ratio 1) r~ = lam - beta leaves the band
    [0.8, 1.2] once beta > 0.25; then the whole gradient, push and pull, is 0 for A < 0, and there
    is no pull to align. Once the anchors have lost enough mass (r_anchor < 0.25 / beta) r~ is
    back in the band and the pull is again c grad J_support: a gated pull."""
    g = torch.Generator().manual_seed(3)
    N, T, V, K = 2, 2, 8, 3
    ref_logits = 2 * torch.randn(N, T, V, generator=g, dtype=DT)
    y = ref_logits.argmin(-1)  # (N, T) not in M
    adv = torch.tensor([-1.0, -0.6], dtype=DT)
    in_m = torch.zeros(N, T, V, dtype=DT).scatter_(-1, ref_logits.topk(K, -1).indices, 1.0)

    def pull_and_expected(z, beta):
        runs = [apo_loss(z, ref_logits, y, adv, K, b) for b in (0.0, beta)]
        assert all(m["clip_frac"] == 0.0 for _, m in runs)
        j_support, _, _, z_ref = masses(z, ref_logits, y, K)
        expected = flat_grad((beta * adv.abs()[:, None] / (N * T) / z_ref * j_support).sum(), [z])
        return pull_descent([z], lambda i: runs[i][0]), expected

    z = ref_logits.clone().requires_grad_(True)  # pi_theta = pi_ref: r_anchor = 1
    pull, expected = pull_and_expected(z, 0.24)  # r~ = 0.81: inside
    assert torch.allclose(pull, expected, rtol=1e-10, atol=1e-15)
    loss, metrics = apo_loss(z, ref_logits, y, adv, K, 0.26)  # r~ = 0.79: clipped at every token
    assert metrics["clip_frac"] == 1.0
    assert torch.equal(flat_grad(loss, [z]), torch.zeros(N * T * V, dtype=DT))

    z = (ref_logits - 3.0 * in_m).requires_grad_(True)  # the anchors lost mass ...
    _, anchor_mass, _, z_ref = masses(z, ref_logits, y, K)
    assert (anchor_mass / z_ref).max() < 0.25 / 0.4  # ... r_anchor < 0.625 at every position
    pull, expected = pull_and_expected(z, 0.4)
    assert torch.allclose(pull, expected, rtol=1e-10, atol=1e-15)


# --------------------------------------------------- Propositions 2.2 and 2.3: one GRPO step on the logits

def grpo_step(logits, y, adv, lr, only_sampled_logit=False):
    """One SGD step of apo.policy_loss("grpo") for one token y at ratio 1, on logits (V,).

    Returns the logit force -dL/dz (V,), and pi before and after the step (V,) each. With
    `only_sampled_logit` only z_y moves (the loss's direct effect on its own token), so whatever
    the other tokens' probabilities do is the softmax normalisation alone."""
    z = logits.clone().view(1, 1, -1).requires_grad_(True)  # (N=1, T=1, V)
    logp = apo.gather_logp(z, torch.tensor([[[y]]]))[..., 0]  # (1, 1) log pi(y)
    loss, _ = apo.policy_loss(logp, logp.detach(), torch.tensor([adv], dtype=DT), torch.ones(1, 1), "grpo")
    force = -torch.autograd.grad(loss, z)[0].view(-1)  # (V,)
    step = lr * force * (torch.arange(len(logits)) == y) if only_sampled_logit else lr * force
    return force, torch.softmax(logits, -1), torch.softmax(logits + step, -1)


def world(seed, V=7):
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(V, generator=g, dtype=DT)


# Second-order bound for the relative change of one token after a logit step Δz with |Δz_i| <= lr |A|:
# log pi'_j - log pi_j = Δz_j - log sum_i pi_i exp(Δz_i) = (first order) - Var_pi(Δz)/2 + O(|Δz|^3), and
# Δpi/pi = exp(that) - 1 adds at most (2 lr |A|)^2 / 2: 3 (lr |A|)^2 covers both.
LR = 1e-3


def test_prop_2_2_sharpening_lowers_every_unsampled_token_through_the_normaliser():
    """A > 0 on the sampled y: each unsampled j gets the logit force -A pi_j (the normaliser's
    gradient; nothing penalised j). When only z_y moves, every other token loses exactly the same
    relative share. The full step also moves their logits by -A pi_j, so to first order
    Δpi_j / pi_j = -lr A (pi_j + pi_y - sum_i pi_i^2): all negative when y is the most likely
    token, but *not* equal: the relative loss grows with pi_j."""
    for seed in range(4):
        logits = world(seed)
        pi = torch.softmax(logits, -1)
        y, A = pi.argmax().item(), 0.8  # sharpening: the sampled correct token is the policy's favourite
        others = torch.arange(len(pi)) != y
        force, _, after = grpo_step(logits, y, A, LR)
        assert torch.allclose(force[others], -A * pi[others], rtol=1e-12, atol=0)  # per logit: -A pi_j
        assert torch.allclose(force[y], A * (1 - pi[y]), rtol=1e-12, atol=0)
        rel = (after / pi - 1)[others]  # (V-1,) Δpi_j / pi_j
        assert (rel < 0).all()  # passive suppression of every unsampled token
        first = -LR * A * (pi[others] + pi[y] - (pi ** 2).sum())
        assert (rel - first).abs().max() < 3 * (LR * A) ** 2
        spread = LR * A * (pi[others].max() - pi[others].min())  # the shares differ at first order
        assert abs((rel.max() - rel.min()) - spread) < 6 * (LR * A) ** 2

        _, _, after = grpo_step(logits, y, A, LR, only_sampled_logit=True)  # the normalisation alone
        rel = (after / pi - 1)[others]
        assert (rel < 0).all()
        assert torch.allclose(rel, rel[0].expand_as(rel), rtol=1e-9, atol=0)  # one common factor


def test_prop_2_2_needs_the_sampled_token_to_carry_enough_mass():
    """The full step lowers an unsampled j only while pi_y + pi_j > sum_i pi_i^2 (always true when y
    is the most likely token). Sharpening a rare correct token next to a dominant one lowers the
    dominant token's logit most (-A pi_habit), and a mid-sized alternative then *gains*."""
    pi = torch.tensor([0.01, 0.90, 0.09], dtype=DT)  # y = 0 correct but rare, 1 a habit, 2 an alternative
    _, _, after = grpo_step(pi.log(), 0, 1.0, LR)
    assert after[0] > pi[0] and after[1] < pi[1]
    assert after[2] > pi[2]  # 0.01 + 0.09 < sum pi^2 = 0.8182: the alternative rises


def test_prop_2_3_freed_mass_is_shared_in_proportion_when_only_the_wrong_logit_moves():
    """A < 0 on the sampled y, only z_y moves: the mass freed from y goes to each other token j in
    the share pi_j / (1 - pi_y), exactly (the normalisation is the only thing that moves them).
    The step itself: z_y falls by lr |A| (1 - pi_y)."""
    for seed in range(4):
        logits = world(10 + seed)
        pi = torch.softmax(logits, -1)
        y, A = 2, -1.0
        others = torch.arange(len(pi)) != y
        force, _, after = grpo_step(logits, y, A, LR, only_sampled_logit=True)
        assert torch.allclose(force[y], A * (1 - pi[y]), rtol=1e-12, atol=0)
        freed = pi[y] - after[y]
        assert freed > 0
        share = (after - pi)[others] / freed
        assert torch.allclose(share, pi[others] / (1 - pi[y]), rtol=1e-9, atol=0)


def test_prop_2_3_a_full_step_shares_the_freed_mass_by_more_than_proportion():
    """The full GRPO step (every logit moves: +|A| pi_j on each j != y) to first order gives
    Δpi_j = lr |A| pi_j (pi_j + pi_y - sum_i pi_i^2): the share of the freed mass grows faster than
    pi_j, the favourite takes more than its proportional share, and a token below
    sum_i pi_i^2 - pi_y loses (METHOD.md §4b; toy/one_node.py's world: habit 0.80, wrong y 0.12)."""
    pi = torch.tensor([0.80, 0.12, 0.04, 0.02, 0.002, 0.018], dtype=DT)  # toy/one_node.PI
    y, A, habit, rare = 1, -1.0, 0, 4
    others = torch.arange(len(pi)) != y
    _, _, after = grpo_step(pi.log(), y, A, LR)
    rel = (after / pi - 1)[others]
    first = LR * abs(A) * (pi[others] + pi[y] - (pi ** 2).sum())
    assert (rel - first).abs().max() < 3 * (LR * A) ** 2
    freed = pi[y] - after[y]
    share = (after - pi) / freed  # (V,)
    assert share[habit] > pi[habit] / (1 - pi[y])  # the rich get more than their proportion ...
    assert share[rare] < 0  # ... and a rare token loses: 0.002 + 0.12 < sum pi^2 = 0.6578


def test_prop_2_3_recovery_vanishes_in_proportion_to_the_tokens_probability():
    """A < 0 on a dominant wrong y; a valid token j's logit is lowered so that pi_j goes 1e-1 -> 1e-5.
    Its relative gain Δpi_j / pi_j tends to a positive constant, under the full step and with only
    z_y moving, so its absolute recovery Δpi_j -> 0 in proportion to pi_j: the mass freed from y
    goes to the tokens that already have it."""
    base = torch.tensor([2.0, 0.5, 0.0, -0.5, 0.0], dtype=DT)  # y = 0 the dominant wrong habit
    y, j, A = 0, 4, -1.0
    probs = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    for only_sampled_logit in (False, True):
        rels, gains = [], []
        for p in probs:
            rest = torch.logsumexp(base[torch.arange(5) != j], 0)
            logits = base.clone()
            logits[j] = rest + torch.log(torch.tensor(p / (1 - p), dtype=DT))  # vary z_j only: pi_j = p
            _, pi, after = grpo_step(logits, y, A, LR, only_sampled_logit)
            assert abs(pi[j] - p) < 1e-12 * p
            gains.append((after[j] - pi[j]).item())
            rels.append(gains[-1] / p)
        limit = rels[-1]
        assert limit > 0  # a recovery, not a loss: y is the favourite
        for p, rel, gain in zip(probs, rels, gains):
            # Δpi_j / pi_j: a constant + O(pi_j) (the others rescale by 1 - pi_j) + the second order
            assert abs(rel - limit) <= 3 * LR * abs(A) * p + 3 * (LR * A) ** 2
            assert 0 < gain <= 2 * LR * abs(A) * p  # Δpi_j -> 0 with pi_j
        assert gains[-1] < 1e-4 * gains[0]  # 1e-1 -> 1e-5: the recovery shrinks 10^4-fold
