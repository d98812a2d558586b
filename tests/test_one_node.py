"""The forces at one position (toy/one_node.py, METHOD.md §4b): each closed form is exact.

The reference for every closed form is autograd, written here independently of the script (plain
log_softmax, not gather_logp): through `apo.policy_loss`, `apo.anchor_ratio`, or k3 and the
reverse KL written out, at every sampled token y of small random vocabularies (V = 5..7).
"""

import pytest
import torch

import apo
from toy import one_node

SEEDS = range(6)
LAM, BETA, KL_COEF = 1.05, 0.1, 0.3
NO_CLIP = {"clip_low": 10.0, "clip_high": 10.0}  # the closed forms are the unclipped gradient


def random_case(seed):
    """Random policy logits (V,) and reference probabilities (V,), float64, with V = 5..7."""
    g = torch.Generator().manual_seed(seed)
    V = 5 + seed % 3
    logits = 2 * torch.randn(V, generator=g, dtype=torch.float64)
    ref_pi = torch.softmax(2 * torch.randn(V, generator=g, dtype=torch.float64), -1)
    return logits, ref_pi


def cases():
    """(pi, ref_pi, logits, y, k) for every seed, every sampled token y and K = 1..3."""
    for seed in SEEDS:
        logits, ref_pi = random_case(seed)
        for y in range(len(logits)):
            for k in (1, 2, 3):
                yield torch.softmax(logits, -1), ref_pi, logits, y, k


def loss_force(kind, logits, ref_pi, y, k, adv=-1.0, **knobs):
    """-dL/dz of apo.policy_loss(kind) for one token y at ratio 1: (V,)."""
    z = logits.clone().requires_grad_(True)  # (V,)
    logp_all = torch.log_softmax(z, -1)  # (V,)
    ids = ref_pi.topk(k).indices  # (K,) the reference top-K
    logp = logp_all[y].view(1, 1)  # (N=1, T=1)
    loss, _ = apo.policy_loss(
        logp, logp.detach(), torch.tensor([adv], dtype=z.dtype), torch.ones(1, 1), kind,
        ref_logp=ref_pi[y].log().view(1, 1), topk_logp=logp_all[ids].view(1, 1, k),
        ref_topk_logp=ref_pi.log()[ids].view(1, 1, k), topk_is_sampled=(ids == y).view(1, 1, k),
        **knobs, **NO_CLIP)
    return -torch.autograd.grad(loss, z)[0]


def close(a, b):
    return torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_push_force_is_minus_the_grpo_gradient_at_a_negative_advantage():
    for pi, ref_pi, logits, y, k in cases():
        assert close(one_node.push_force(pi, y), loss_force("grpo", logits, ref_pi, y, k))


def test_pull_force_is_the_gradient_of_the_anchor_ratio_excluding_the_sampled_token():
    for pi, ref_pi, logits, y, k in cases():
        z = logits.clone().requires_grad_(True)  # (V,)
        ids = ref_pi.topk(k).indices  # (K,)
        r_anchor = apo.anchor_ratio(torch.log_softmax(z, -1)[ids].view(1, 1, k),
                                    ref_pi.log()[ids].view(1, 1, k), (ids == y).view(1, 1, k))
        assert close(one_node.pull_force(pi, ref_pi, y, k), torch.autograd.grad(r_anchor.sum(), z)[0])


def test_apo_force_is_lam_push_plus_beta_pull():
    for pi, ref_pi, logits, y, k in cases():
        closed = LAM * one_node.push_force(pi, y) + BETA * one_node.pull_force(pi, ref_pi, y, k)
        assert close(closed, loss_force("apo", logits, ref_pi, y, k, lam=LAM, beta=BETA))


def test_pull_force_is_zero_when_the_anchor_set_is_empty():
    pi, ref_pi = torch.softmax(random_case(0)[0], -1), random_case(0)[1]
    top1 = ref_pi.argmax().item()  # K = 1 and y = the reference's top-1: S is empty
    assert torch.equal(one_node.pull_force(pi, ref_pi, top1, 1), torch.zeros_like(pi))


def test_k3_force_is_minus_the_gradient_of_k3_at_the_sampled_token():
    for pi, ref_pi, logits, y, _ in cases():
        z = logits.clone().requires_grad_(True)  # (V,)
        log_r = ref_pi[y].log() - torch.log_softmax(z, -1)[y]  # log pi_ref(y) / pi(y)
        k3 = log_r.exp() - log_r - 1
        assert close(one_node.k3_force(pi, ref_pi, y), -torch.autograd.grad(k3, z)[0])


@pytest.mark.parametrize("kind", ["grpo_kl", "kl_on_wrong"])
def test_kl_losses_at_a_wrong_token_are_push_plus_kl_coef_times_k3_force(kind):
    for pi, ref_pi, logits, y, k in cases():
        closed = one_node.push_force(pi, y) + KL_COEF * one_node.k3_force(pi, ref_pi, y)
        assert close(closed, loss_force(kind, logits, ref_pi, y, k, kl_coef=KL_COEF))


def test_k3_expected_force_is_the_exact_expectation_over_sampled_tokens():
    for seed in SEEDS:
        logits, ref_pi = random_case(seed)
        pi = torch.softmax(logits, -1)  # (V,)
        # A = 0: only grpo_kl's k3 term is left, at each sampled y, weighted by how often y is drawn
        expected = sum(pi[y] * loss_force("grpo_kl", logits, ref_pi, y, 1, adv=0.0, kl_coef=1.0)
                       for y in range(len(pi)))
        assert close(one_node.k3_expected_force(pi, ref_pi), expected)


def test_k3_expected_force_is_minus_the_gradient_of_the_reverse_kl():
    for seed in SEEDS:
        logits, ref_pi = random_case(seed)
        z = logits.clone().requires_grad_(True)  # (V,)
        reverse_kl = (ref_pi * (ref_pi.log() - torch.log_softmax(z, -1))).sum()  # KL(pi_ref || pi)
        expected = one_node.k3_expected_force(torch.softmax(logits, -1), ref_pi)
        assert close(expected, -torch.autograd.grad(reverse_kl, z)[0])


def script_world():
    """The script's policy and reference probabilities, (V,) each."""
    return torch.tensor(one_node.PI, dtype=torch.float64), torch.tensor(one_node.REF, dtype=torch.float64)


def dying(pi, j, p):
    """pi with pi(j) = p and the other tokens rescaled in proportion: (V,)."""
    out = pi * (1 - p) / (1 - pi[j])
    out[j] = p
    return out


def test_pull_on_a_dying_anchor_fades_in_proportion_to_its_probability():
    pi, ref_pi = script_world()
    j = one_node.RARE  # an anchor: in the reference top-3, not the sampled token
    per_p = [one_node.pull_force(dying(pi, j, p), ref_pi, one_node.Y, 3)[j] / p for p in (1e-2, 1e-4, 1e-6)]
    assert per_p[0] > 0  # a pull, not a push
    assert torch.allclose(torch.stack(per_p), per_p[-1].expand(3), rtol=0.02)  # force / pi_j constant
    assert one_node.pull_force(dying(pi, j, 1e-6), ref_pi, one_node.Y, 3)[j] < 1e-6


def test_expected_k3_force_on_a_dying_token_tends_to_its_reference_probability():
    pi, ref_pi = script_world()
    j = one_node.RARE
    for p in (1e-3, 1e-5, 1e-7):
        q = dying(pi, j, p)  # (V,)
        assert abs(one_node.k3_expected_force(q, ref_pi)[j] - ref_pi[j]) < 2 * p
        # carried by the samples of j itself: the importance weight pi_ref/pi cancels their rarity
        assert abs(p * one_node.k3_force(q, ref_pi, j)[j] - ref_pi[j]) < 2 * p


def test_the_script_runs_end_to_end_writes_the_png_and_autograd_matches_the_closed_forms(tmp_path, capsys):
    out = tmp_path / "one_node.png"
    forces = one_node.main(["--out", str(out), "--kl-coef", str(KL_COEF)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "closed | autograd" in capsys.readouterr().out
    pi, ref_pi = script_world()
    push = one_node.push_force(pi, one_node.Y)
    assert close(forces["apo"], LAM * push + BETA * one_node.pull_force(pi, ref_pi, one_node.Y, one_node.K))
    assert close(forces["kl_on_wrong"], push + KL_COEF * one_node.k3_force(pi, ref_pi, one_node.Y))


def test_small_examples_worked_by_hand():
    """Values a reader can check on paper (toy/one_node.py's closed forms, three tokens)."""
    push = one_node.push_force(torch.tensor([0.7, 0.2, 0.1]), 1)
    assert torch.allclose(push, torch.tensor([0.7, -0.8, 0.1]))
    pi, ref_pi = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.4, 0.4, 0.2])  # y = 0, K = 2: S = {1}
    assert torch.allclose(one_node.pull_force(pi, ref_pi, 0, 2), torch.tensor([-0.375, 0.525, -0.15]))
    down = one_node.k3_force(torch.tensor([0.5, 0.5]), torch.tensor([0.9, 0.1]), 1)  # y above pi_ref: down
    assert torch.allclose(down, torch.tensor([0.4, -0.4]))
    pi, ref_pi = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.2, 0.3, 0.5])
    mean = sum(pi[y] * one_node.k3_force(pi, ref_pi, y) for y in range(3))  # E_y~pi of the force at y
    assert torch.allclose(mean, one_node.k3_expected_force(pi, ref_pi))
