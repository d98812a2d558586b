"""Your solutions, graded:  python -m pytest exercises -q        (one exercise: add -k ex3)

Each test hands your function to its checker in exercises/checks.py; a failure names the input,
the expected value and what your function returned. Until you write a function its test fails
with NotImplementedError.
"""

from exercises import (
    checks,
    ex1_group_advantages,
    ex2_anchor_ratio,
    ex3_apo_loss,
    ex4_forces,
    ex5_pass_at_k,
    ex6_completion_mask,
    ex7_predict_gated_pull,
)


def test_ex1_group_advantages():
    checks.check_group_advantages(ex1_group_advantages.group_advantages)


def test_ex2_anchor_ratio():
    checks.check_anchor_ratio(ex2_anchor_ratio.anchor_ratio)


def test_ex3_apo_token_loss():
    checks.check_apo_token_loss(ex3_apo_loss.apo_token_loss)


def test_ex3_gating_beta():
    checks.check_gating_beta(ex3_apo_loss.gating_beta)


def test_ex4_push_force():
    checks.check_push_force(ex4_forces.push_force)


def test_ex4_pull_force():
    checks.check_pull_force(ex4_forces.pull_force)


def test_ex4_k3_force():
    checks.check_k3_force(ex4_forces.k3_force)


def test_ex4_k3_expected_force():
    checks.check_k3_expected_force(ex4_forces.k3_expected_force)


def test_ex5_pass_at_k():
    checks.check_pass_at_k(ex5_pass_at_k.pass_at_k)


def test_ex6_completion_mask():
    checks.check_completion_mask(ex6_completion_mask.completion_mask)


def test_ex7_prediction():
    checks.check_prediction(ex7_predict_gated_pull.PREDICTION)
