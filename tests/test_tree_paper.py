"""toy/tree_paper.py: the paper's Figures 2 and 5 on the tree toy. The gradient directions are
the terms they name, the hook changes no training, and the sweep's default setting is the default
run's APO."""

import dataclasses
import json

import pytest
import torch

from toy import tree_demo, tree_paper
from toy.tree_world import evaluate, make_world


def small(**kw):
    return dataclasses.replace(tree_paper.Config(), **{"steps": 3, "seeds": 1, "prompts": 8, **kw})


def test_the_batch_hook_changes_no_training():
    cfg = small()
    tree, ref, correct = make_world(cfg, 0)
    seen = []
    plain, _ = tree_demo.train(tree, ref, correct, "apo", cfg.beta, cfg, 0)
    hooked, _ = tree_demo.train(tree, ref, correct, "apo", cfg.beta, cfg, 0,
                                on_batch=lambda step, theta, batch: seen.append(
                                    tree_paper.directions(theta, batch, cfg.beta, cfg)))
    assert torch.equal(plain, hooked) and len(seen) == cfg.steps


@pytest.mark.parametrize("beta", [0.14, 0.5])  # 0.5: every wrong token gated at first (r~ = 0.55)
def test_pull_and_kl_directions_are_the_gradients_of_the_terms_they_name(beta):
    """At every step the pull is minus the gradient of sum over the wrong tokens *inside the clip
    band* (r~ = lam * ratio - beta * r_anchor >= 1 - clip_low; the ratio is 1 here) of
    A * beta * r_anchor / tokens, and the KL direction minus the gradient of kl_coef * mean k3:
    both written out here, not through apo.policy_loss. A gated token has no pull."""
    cfg = small(steps=30, beta=beta)
    tree, ref, correct = make_world(cfg, 0)
    seen = {"gated": 0, "pulled": 0}

    def on_batch(step, theta, b):
        d = tree_paper.directions(theta, b, beta, cfg)
        adv = b["adv"][:, None].expand_as(b["logp"])  # (N, D)
        pi, ref_pi = b["topk_logp"].exp(), b["ref_topk_logp"].exp()  # (N, D, K)
        anchors = ~b["topk_is_sampled"]
        r_anchor = (pi * anchors).sum(-1) / (ref_pi * anchors).sum(-1)
        in_band = (cfg.lam - beta * r_anchor.detach() >= 1 - tree_demo.CLIP_LOW) & (adv < 0)
        seen["gated"] += int(((adv < 0) & ~in_band).sum())
        seen["pulled"] += int(in_band.sum())
        pull_loss = (adv * beta * r_anchor * in_band).sum() / adv.numel()
        want = -torch.autograd.grad(pull_loss, theta, retain_graph=True)[0]
        assert torch.allclose(d["pull"], want, atol=1e-7, rtol=1e-5)
        delta = b["ref_logp"] - b["logp"]
        k3 = (delta.exp() - delta - 1) * b["mask"]
        want = -torch.autograd.grad(beta * k3.sum() / b["mask"].sum(), theta, retain_graph=True)[0]
        assert torch.allclose(d["kl"], want, atol=1e-7, rtol=1e-5)

    tree_demo.train(tree, ref, correct, "apo", beta, cfg, 0, on_batch=on_batch)
    assert seen["pulled"] > 0 and (seen["gated"] > 0 if beta == 0.5 else True)


def test_cosine_is_nan_for_a_zero_gradient_and_signed_otherwise():
    a = torch.tensor([1.0, 0.0])
    assert tree_paper.cosine(a, -a) == pytest.approx(-1.0) and tree_paper.cosine(a, torch.zeros(2)) != 0.0
    assert torch.isnan(torch.tensor(tree_paper.cosine(a, torch.zeros(2))))


def test_short_run_writes_both_figures_numbers_and_the_default_setting_is_the_default_apo(tmp_path):
    path = tmp_path / "paper.json"
    result = tree_paper.main(["--steps", "3", "--every", "1", "--seeds", "1", "--prompts", "8", "--no-plot",
                              "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(result))
    assert set(result["cosines"]) == {f"cos({a}, {b})" for a, b in tree_paper.PAIRS}
    assert all(len(r["mean"]) == 3 for r in result["cosines"].values())
    sens = result["sensitivity"]
    assert [len(sens[k]) for k in ("beta", "lam", "top_k")] == [len(tree_demo.BETA_GRID), 5, 8]
    cfg = small()
    tree, ref, correct = make_world(cfg, 0)
    final, _ = tree_demo.train(tree, ref, correct, "apo", cfg.beta, cfg, 0)
    want = evaluate(tree, final, ref, correct, cfg.top_k)["pass@1"]
    at_default = [r for r in sens["top_k"] if r["value"] == cfg.top_k][0]
    assert at_default["pass@1"][0] == pytest.approx(want, abs=1e-6)
    at_k1 = [r for r in sens["top_k"] if r["value"] == 1][0]
    assert at_k1["pass@1"][0] != pytest.approx(want, abs=1e-6)  # K reaches the loss
