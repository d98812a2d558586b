"""The exercises' checkers (exercises/checks.py) are right: each passes the project's own code and
fails planted bugs; every committed stub is unsolved; ex7's experiment measures the outcome the exercise
is built around.

The project's answers: apo.group_advantages, apo.anchor_ratio, apo.policy_loss (one token at a
time), METHOD.md Decision 1 (the gate), toy.one_node's four forces, eval.pass_at_k and
rollout.completion_mask. The answer to ex7 is C (see test_ex7_the_experiment_measures_c).
"""

import math
import subprocess
from pathlib import Path

import pytest
import torch

import apo
from eval import pass_at_k
from exercises import checks
from rollout import completion_mask
from toy import one_node

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------- the project's answers, as the stubs' signatures


def project_token_loss(ratio, r_anchor, adv, lam=1.05, beta=0.1, clip_low=0.2, clip_high=0.2):
    """L_t (N, T) from apo.policy_loss, one token at a time: r_anchor = pi_theta / pi_ref of one
    anchor (K = 1, pi_ref = 1, not sampled); the mask selects one token and the divisor is 1."""
    N, T = ratio.shape
    ones = torch.ones(N, T, 1, dtype=ratio.dtype)
    out = []
    for i in range(N):
        for t in range(T):
            mask = torch.zeros(N, T)
            mask[i, t] = 1.0
            loss, _ = apo.policy_loss(ratio.log(), torch.zeros_like(ratio), adv, mask, "apo",
                                      topk_logp=r_anchor.log()[..., None], ref_topk_logp=0 * ones,
                                      topk_is_sampled=ones < 0, lam=lam, beta=beta, clip_low=clip_low,
                                      clip_high=clip_high, denom=1.0)
            out.append(loss)
    return torch.stack(out).view(N, T)


def project_gating_beta(lam=1.05, clip_low=0.2):
    return lam - (1 - clip_low)  # METHOD.md Decision 1: r~ = lam - beta < 1 - clip_low


# ------------------------------------------------------------------------------ planted bugs

def adv_population_std(rewards, eps=1e-6):
    return (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True, unbiased=False) + eps)


def adv_no_eps(rewards, eps=1e-6):
    return (rewards - rewards.mean(1, keepdim=True)) / rewards.std(1, keepdim=True)  # 0/0 on equal groups


def anchor_keeps_sampled(topk_logp, ref_topk_logp, topk_is_sampled):
    return apo.anchor_ratio(topk_logp, ref_topk_logp, torch.zeros_like(topk_is_sampled))


def anchor_z_over_all_of_m(topk_logp, ref_topk_logp, topk_is_sampled):
    return (topk_logp.exp() * ~topk_is_sampled).sum(-1) / ref_topk_logp.exp().sum(-1)


def anchor_unclamped(topk_logp, ref_topk_logp, topk_is_sampled):
    in_s = (~topk_is_sampled).to(topk_logp.dtype)
    return (topk_logp.exp() * in_s).sum(-1) / (ref_topk_logp.exp() * in_s).sum(-1)  # nan on empty S


def anchor_sampled_in_gradient(topk_logp, ref_topk_logp, topk_is_sampled):
    """The right value, but y's entry is in the sum and taken out again detached: its gradient is not 0."""
    p = topk_logp.exp()  # (N, T, K)
    z_ref = (ref_topk_logp.exp() * ~topk_is_sampled).sum(-1).clamp_min(1e-12)
    return (p.sum(-1) - (p * topk_is_sampled).sum(-1).detach()) / z_ref


def ppo(used, adv, clip_low, clip_high):
    A = adv[:, None]
    return -torch.minimum(used * A, used.clamp(1 - clip_low, 1 + clip_high) * A)


def loss_pull_outside_clip(ratio, r_anchor, adv, lam=1.05, beta=0.1, clip_low=0.2, clip_high=0.2):
    """The clip around lam * rho only; the pull added outside it, never gated."""
    neg = (adv < 0)[:, None]
    push = ppo(torch.where(neg, lam * ratio, ratio), adv, clip_low, clip_high)
    return push + torch.where(neg, beta * r_anchor * adv[:, None], 0 * r_anchor)


def loss_clip_rho_then_rectify(ratio, r_anchor, adv, lam=1.05, beta=0.1, clip_low=0.2, clip_high=0.2):
    """r~ built from the clipped rho: the clip applied outside r~."""
    A, neg = adv[:, None], (adv < 0)[:, None]
    clipped = torch.where(neg, lam * ratio.clamp(1 - clip_low, 1 + clip_high) - beta * r_anchor,
                          ratio.clamp(1 - clip_low, 1 + clip_high))
    return -torch.minimum(torch.where(neg, lam * ratio - beta * r_anchor, ratio) * A, clipped * A)


def loss_rectify_every_token(ratio, r_anchor, adv, lam=1.05, beta=0.1, clip_low=0.2, clip_high=0.2):
    return ppo(lam * ratio - beta * r_anchor, adv, clip_low, clip_high)


def loss_pull_sign(ratio, r_anchor, adv, lam=1.05, beta=0.1, clip_low=0.2, clip_high=0.2):
    used = torch.where((adv < 0)[:, None], lam * ratio + beta * r_anchor, ratio)  # + where - belongs
    return ppo(used, adv, clip_low, clip_high)


def loss_anchor_detached(ratio, r_anchor, *args, **knobs):
    return project_token_loss(ratio, r_anchor.detach(), *args, **knobs)


def pull_keeps_sampled(pi, ref_pi, y, k):
    in_s = torch.zeros_like(pi).index_fill_(0, ref_pi.topk(k).indices, 1.0)  # y stays in S
    return pi * (in_s - (pi * in_s).sum()) / (ref_pi * in_s).sum()


def k3_unweighted(pi, ref_pi, y):
    """The log-ratio where the importance weight belongs."""
    return (ref_pi[y].log() - pi[y].log()) * -one_node.push_force(pi, y)


def pass_plug_in(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return 1 - (1 - c / n) ** k


def pass_any_of_first_k(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return float(any(([False] * (n - c) + [True] * c)[:k]))  # the samples in the order drawn


def pass_no_raise(n, c, k):
    return 1.0 if n - c < k else 1 - math.comb(n - c, k) / math.comb(n, k)


def pass_checks_only_k(n, c, k):
    if k > n:
        raise ValueError("k > n")
    return pass_no_raise(n, c, k)  # c < 0, c > n and k < 1 pass unnoticed


def mask_from_pad(completion_ids, eos):
    pad = eos[0]  # pad == EOS: drops the EOS itself
    return (completion_ids != pad).float(), ~torch.isin(completion_ids, torch.tensor(eos)).any(1)


def mask_before_eos(completion_ids, eos):
    mask, truncated = completion_mask(completion_ids, eos)
    is_eos = torch.isin(completion_ids, torch.tensor(eos))
    return mask * ~(is_eos & (is_eos.cumsum(1) == 1)), truncated  # the first EOS left out


def mask_first_eos_id_only(completion_ids, eos):
    return completion_mask(completion_ids, eos[:1])


def mask_truncated_from_last_token(completion_ids, eos):
    mask, _ = completion_mask(completion_ids, eos)
    return mask, ~torch.isin(completion_ids[:, -1], torch.tensor(eos))


CASES = {  # checker: (the project's answer, {planted bug: its function})
    "group_advantages": (apo.group_advantages, {
        "population std": adv_population_std, "no eps": adv_no_eps,
        "sign flip": lambda rewards, eps=1e-6: -apo.group_advantages(rewards, eps=eps)}),
    "anchor_ratio": (apo.anchor_ratio, {
        "sampled token kept in S": anchor_keeps_sampled, "Z_ref over all of M": anchor_z_over_all_of_m,
        "Z_ref not clamped": anchor_unclamped, "y's own entry has a gradient": anchor_sampled_in_gradient,
        "detached": lambda *a: apo.anchor_ratio(*a).detach()}),
    "apo_token_loss": (project_token_loss, {
        "pull outside the clip": loss_pull_outside_clip, "clip outside r~": loss_clip_rho_then_rectify,
        "r~ on every token": loss_rectify_every_token, "pull sign flipped": loss_pull_sign,
        "r_anchor detached (right values, no pull)": loss_anchor_detached}),
    "gating_beta": (project_gating_beta, {
        "lam - clip_low": lambda lam=1.05, clip_low=0.2: lam - clip_low,
        "1 + clip_low - lam": lambda lam=1.05, clip_low=0.2: 1 + clip_low - lam}),
    "push_force": (one_node.push_force, {"sign flip": lambda pi, y: -one_node.push_force(pi, y)}),
    "pull_force": (one_node.pull_force, {
        "sampled token kept in S": pull_keeps_sampled,
        "sign flip": lambda pi, ref_pi, y, k: -one_node.pull_force(pi, ref_pi, y, k)}),
    "k3_force": (one_node.k3_force, {"no importance weight": k3_unweighted}),
    "k3_expected_force": (one_node.k3_expected_force, {"sign flip": lambda pi, ref_pi: pi - ref_pi}),
    "pass_at_k": (pass_at_k, {"1 - (1 - c/n)^k": pass_plug_in, "any of the first k": pass_any_of_first_k,
                              "k > n does not raise": pass_no_raise,
                              "only k > n raises": pass_checks_only_k}),
    "completion_mask": (completion_mask, {
        "mask from the pad id": mask_from_pad, "EOS left out": mask_before_eos,
        "only the first EOS id": mask_first_eos_id_only,
        "truncated from the last token": mask_truncated_from_last_token}),
}
STUBS = {"group_advantages": ("ex1_group_advantages", "group_advantages"),  # name -> (file, function)
         "anchor_ratio": ("ex2_anchor_ratio", "anchor_ratio"),
         "apo_token_loss": ("ex3_apo_loss", "apo_token_loss"), "gating_beta": ("ex3_apo_loss", "gating_beta"),
         **{f: ("ex4_forces", f) for f in ("push_force", "pull_force", "k3_force", "k3_expected_force")},
         "pass_at_k": ("ex5_pass_at_k", "pass_at_k"),
         "completion_mask": ("ex6_completion_mask", "completion_mask")}


def committed(module):
    """The namespace of exercises/MODULE.py as committed (`git show HEAD:`), so that a student who solves
    the stubs in place still has a green project suite; the working copy outside a git checkout."""
    path = ROOT / "exercises" / f"{module}.py"
    try:
        source = subprocess.run(["git", "show", f"HEAD:exercises/{module}.py"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        source = path.read_text()
    namespace = {"__name__": f"committed_{module}"}
    exec(compile(source, str(path), "exec"), namespace)  # noqa: S102 - our own file, as committed
    return namespace


@pytest.mark.parametrize("name", sorted(CASES))
def test_checker_passes_the_project_implementation(name):
    getattr(checks, f"check_{name}")(CASES[name][0])


@pytest.mark.parametrize("name, bug", [(n, b) for n in sorted(CASES) for b in CASES[n][1]])
def test_checker_fails_a_planted_bug(name, bug):
    with pytest.raises(AssertionError):
        getattr(checks, f"check_{name}")(CASES[name][1][bug])


def test_every_checker_is_tested_here_and_every_committed_stub_is_unsolved():
    checkers = {n.removeprefix("check_") for n in dir(checks) if n.startswith("check_")}
    assert checkers == set(CASES) | {"prediction"}
    assert set(STUBS) == set(CASES)
    for name, (module, function) in STUBS.items():
        with pytest.raises(NotImplementedError):
            getattr(checks, f"check_{name}")(committed(module)[function])
    prediction = committed("ex7_predict_gated_pull")["PREDICTION"]
    assert prediction is None
    with pytest.raises(NotImplementedError):
        checks.check_prediction(prediction)


def test_ex7_the_experiment_measures_c_and_only_c_passes(capsys):
    """APO at beta = 0.5 (above the gate 0.25): negative-advantage tokens get no gradient while
    r~ < 0.8, but positive ones train as in GRPO, so pass@1 rises nearly as much; without the
    push on wrong tokens (negative squeezing) pass@64 stays far above GRPO's; once r_anchor < 0.5
    the pull acts as well. The margins are wide: gain ratio about 0.8 (threshold 0.5), pass@64
    about +0.17 (threshold 0.02)."""
    result = checks.gated_pull_experiment()
    assert checks.outcome(result) == "C"
    checks.check_prediction("C")
    assert "measured outcome: C" in capsys.readouterr().out
    for wrong in ("A", "B", "D", "c", 3):
        with pytest.raises(AssertionError):
            checks.check_prediction(wrong)
