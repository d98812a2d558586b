"""Exercise 4: the forces on the logits at one position, in closed form (METHOD.md §4b; about 30 minutes).

One decoding position: logits z, pi = softmax(z), a sampled wrong token y (advantage A = -1), ratio 1.
A force is the change one gradient step makes to the logits, Delta z = -dL/dz, (V,). Derive each on
paper from its loss, then write it as a few tensor operations on probabilities (no autograd):

    push  (GRPO)        L = -A * rho                                       per unit |A|
    pull  (APO)         the part of L = -A * (lam * rho - beta * r_anchor)
                        that comes from r_anchor (exercise 2)              per unit beta
    k3 at y             L = k3 = e^u - u - 1,  u = log pi_ref(y) - log pi(y)   per unit kl_coef
    expected k3         the k3 force averaged over y ~ pi                  per unit kl_coef

Useful: d log pi(i) / d z_j = [i == j] - pi(j). All inputs are 1-D float tensors of probabilities
(V,) summing to 1 (float64 in the checker); y and k are ints. Each function returns a (V,) tensor.

Fill in the four functions, then run:  python -m pytest exercises -q -k ex4
"""

import torch  # noqa: F401  (you will need it)

Z_REF_MIN = 1e-12  # clamp Z_ref against 0/0 only (METHOD.md Decision 4)


def push_force(pi, y):
    """GRPO's push at the sampled y: Delta z (V,). Which tokens rise, and by how much each?"""
    raise NotImplementedError("exercise 4: push_force")


def pull_force(pi, ref_pi, y, k):
    """APO's pull per unit beta: Delta z = d r_anchor / dz, (V,).

    S = TopK(ref_pi, k) minus {y} (use ref_pi.topk(k)); Z_ref = sum_{j in S} ref_pi(j), clamped
    below at Z_REF_MIN. An empty S (k = 1 and y the reference's top-1) gives zeros, no nan.
    Write it with pi_j, [j in S] and sum_{i in S} pi_i.
    """
    raise NotImplementedError("exercise 4: pull_force")


def k3_force(pi, ref_pi, y):
    """-d k3 / dz at the sampled y, per unit kl_coef, (V,). Hint: d k3 / d log pi(y) = 1 - pi_ref(y)/pi(y)."""
    raise NotImplementedError("exercise 4: k3_force")


def k3_expected_force(pi, ref_pi):
    """sum over y of pi(y) * k3_force(pi, ref_pi, y), (V,): simplify it to a one-line closed form.

    (Which KL is this the negative gradient of? Not the one k3's value estimates.)
    """
    raise NotImplementedError("exercise 4: k3_expected_force")
