"""The checkers of the exercises: one `check_<name>(fn)` per function a student writes.

Run them on your solutions:  python -m pytest exercises -q        (exercises/README.md)

A checker returns None when `fn` is right and raises AssertionError naming the input, the expected
value and what `fn` returned when it is wrong. No expected value comes from the project's own code:
they are hand-computed numbers, slow Python loops, brute force over subsets, and autograd through
formulas written out here. tests/test_exercises.py checks the checkers themselves: each passes the
project's implementation and fails planted bugs.
"""

import functools
import itertools
import math
from fractions import Fraction

import torch

Z_MIN = 1e-12  # the clamp of Z_ref against 0/0 when the anchor set is empty (METHOD.md Decision 4)


def _fail(what, inputs, expected, got):
    raise AssertionError(f"{what}\n  input:    {inputs}\n  expected: {expected}\n  got:      {got}")


def _tensor_close(got, expected, what, inputs, atol=1e-4):
    """got: what fn returned; expected: a nested list or a tensor of the right shape."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    if not isinstance(got, torch.Tensor):
        _fail(f"{what}: expected a torch.Tensor", inputs, expected.tolist(), type(got).__name__)
    if tuple(got.shape) != tuple(expected.shape):
        _fail(f"{what}: wrong shape", inputs, tuple(expected.shape), tuple(got.shape))
    got64 = got.detach().double()
    if not torch.isfinite(got64).all():
        _fail(f"{what}: nan or inf in the result", inputs, expected.tolist(), got64.tolist())
    if not torch.allclose(got64, expected, atol=atol, rtol=0):
        at = tuple((got64 - expected).abs().gt(atol).nonzero()[0].tolist())  # the first entry that differs
        what += f" (first difference at index {list(at)}: expected {expected[at]:.6g}, got {got64[at]:.6g})"
        _fail(what, inputs, [[round(v, 6) for v in row] for row in expected.view(len(expected), -1).tolist()],
              [[round(v, 6) for v in row] for row in got64.view(len(got64), -1).tolist()])


# ------------------------------------------------------------------ ex1 group advantages (§1)

def _slow_advantages(rows, eps):
    """(R_i - mean) / (unbiased std + eps) per row, in plain Python."""
    out = []
    for row in rows:
        mean = sum(row) / len(row)
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / (len(row) - 1))  # divide by G - 1
        out.append([(r - mean) / (std + eps) for r in row])
    return out


def check_group_advantages(fn):
    g = torch.Generator().manual_seed(0)
    cases = [([[1.0, 0.0, 0.0, 1.0]], None),  # hand: +-0.5 / sqrt(1/3) = +-0.8660
             ([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], None),  # all equal: exactly 0, no nan
             ([[0.0, 1e-6]], None),  # std 7.07e-7 is smaller than eps = 1e-6: 0.2929, not 0.7071
             ([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], 0.5),  # eps is an argument
             ((torch.rand(3, 8, generator=g) < 0.4).float().tolist(), None),
             (torch.rand(2, 5, generator=g).tolist(), None)]  # rewards need not be 0/1
    for rows, eps in cases:
        rewards = torch.tensor(rows)
        got = fn(rewards) if eps is None else fn(rewards, eps=eps)
        inputs = f"rewards={rows}" + ("" if eps is None else f", eps={eps}")
        _tensor_close(got, _slow_advantages(rows, 1e-6 if eps is None else eps), "group_advantages", inputs)


# ------------------------------------------------------------- ex2 the anchor ratio (§3)

def _slow_anchor_ratio(topk_logp, ref_topk_logp, topk_is_sampled):
    """r_anchor (N, T) and d r_anchor / d topk_logp (N, T, K), one position at a time."""
    N, T, K = topk_logp.shape
    r, grad = torch.zeros(N, T, dtype=torch.float64), torch.zeros(N, T, K, dtype=torch.float64)
    for i, t in itertools.product(range(N), range(T)):
        anchors = [k for k in range(K) if not topk_is_sampled[i, t, k]]  # S = TopK minus {y}
        z_ref = max(sum(math.exp(ref_topk_logp[i, t, k]) for k in anchors), Z_MIN)
        r[i, t] = sum(math.exp(topk_logp[i, t, k]) for k in anchors) / z_ref
        for k in anchors:  # d (pi(k) / Z_ref) / d log pi(k) = pi(k) / Z_ref; the sampled entry: 0
            grad[i, t, k] = math.exp(topk_logp[i, t, k]) / z_ref
    return r, grad


def _anchor_case(N, T, K, seed):
    """Random log-probs of the policy and the reference at K ids, and at most one sampled id per row."""
    g = torch.Generator().manual_seed(seed)
    topk_logp = torch.log_softmax(torch.randn(N, T, K + 2, generator=g, dtype=torch.float64), -1)[..., :K]
    ref_topk_logp = torch.log_softmax(torch.randn(N, T, K + 2, generator=g, dtype=torch.float64), -1)[..., :K]
    y = torch.randint(0, K + 1, (N, T, 1), generator=g)  # y = K: the sampled token is outside the top-K
    return topk_logp, ref_topk_logp, torch.arange(K) == y


def check_anchor_ratio(fn):
    hand = (torch.tensor([[[0.5, 0.2, 0.1]]]).log(), torch.tensor([[[0.6, 0.3, 0.05]]]).log(),
            torch.tensor([[[True, False, False]]]))  # S = {1, 2}: (0.2 + 0.1) / (0.3 + 0.05) = 0.8571
    k1_empty = (torch.tensor([[[-0.2], [-1.0]]]), torch.tensor([[[-0.1], [-0.5]]]),
                torch.tensor([[[True], [False]]]))  # K = 1: S empty (r = 0), then S = M
    cases = [hand, k1_empty, _anchor_case(2, 3, 4, 0), _anchor_case(3, 2, 8, 1)]
    for topk_logp, ref_topk_logp, sampled in cases:
        inputs = (f"topk_logp={topk_logp.tolist()}, ref_topk_logp={ref_topk_logp.tolist()}, "
                  f"topk_is_sampled={sampled.tolist()}")
        expected, expected_grad = _slow_anchor_ratio(topk_logp, ref_topk_logp, sampled)
        x = topk_logp.clone().requires_grad_(True)
        got = fn(x, ref_topk_logp.clone(), sampled.clone())
        _tensor_close(got, expected, "anchor_ratio: r_anchor", inputs)
        if not got.requires_grad:
            _fail("anchor_ratio: r_anchor must carry a gradient to topk_logp (do not detach it)", inputs,
                  "requires_grad=True", "requires_grad=False")
        (grad,) = torch.autograd.grad(got.sum(), x)
        if not torch.isfinite(grad).all():
            _fail("anchor_ratio: nan in the gradient (an empty anchor set gives r_anchor 0, gradient 0)",
                  inputs, expected_grad.tolist(), grad.tolist())
        if grad[sampled].abs().sum() > 1e-9:
            _fail("anchor_ratio: the gradient at the sampled token's own entry must be 0 (it is never its "
                  "own anchor)", inputs, expected_grad.tolist(), grad.tolist())
        _tensor_close(grad.reshape(-1, grad.shape[-1]), expected_grad.view(-1, grad.shape[-1]),
                      "anchor_ratio: d r_anchor / d topk_logp, rows (n, t)", inputs, atol=1e-6)


# --------------------------------------------------------- ex3 the APO per-token loss (§3, Decision 1)

def _token_loss(rho, r_anchor, adv, lam, beta, clip_low, clip_high):
    """L_t of one token in plain floats: r~ only where A < 0, inside the PPO clip."""
    used = lam * rho - beta * r_anchor if adv < 0 else rho
    clipped = min(max(used, 1 - clip_low), 1 + clip_high)
    return -min(used * adv, clipped * adv)


def _finite_difference(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def check_apo_token_loss(fn):
    ratios, anchors, advs = (0.5, 0.85, 1.0, 1.1, 1.5), (0.3, 1.0, 1.7), (1.0, 0.5, 0.0, -0.5, -1.0)
    settings = [dict(lam=1.05, beta=0.1, clip_low=0.2, clip_high=0.2), dict(lam=1.05, beta=0.5, clip_low=0.2,
                clip_high=0.2), dict(lam=1.2, beta=0.3, clip_low=0.1, clip_high=0.3)]
    pairs = list(itertools.product(ratios, anchors))  # the T positions of every row
    for knobs in settings:
        ratio = torch.tensor([[p[0] for p in pairs]] * len(advs), dtype=torch.float64, requires_grad=True)
        r_anchor = torch.tensor([[p[1] for p in pairs]] * len(advs), dtype=torch.float64, requires_grad=True)
        adv = torch.tensor(advs, dtype=torch.float64)
        inputs = (f"ratio={ratio.tolist()[0]} (every row), r_anchor={r_anchor.tolist()[0]}, "
                  f"adv={list(advs)}, {knobs}")
        expected = [[_token_loss(rho, r, a, **knobs) for rho, r in pairs] for a in advs]
        got = fn(ratio, r_anchor, adv, **knobs)
        _tensor_close(got, expected, "apo_token_loss: L_t (rows: adv; columns: (ratio, r_anchor))",
                      inputs, 1e-9)
        if not got.requires_grad:
            _fail("apo_token_loss: L_t must carry a gradient to ratio and r_anchor (do not detach)", inputs,
                  "requires_grad=True", "requires_grad=False")
        grads = torch.autograd.grad(got.sum(), (ratio, r_anchor), allow_unused=True)
        for name, grad, which in (("ratio", grads[0], 0), ("r_anchor", grads[1], 1)):
            grad = torch.zeros_like(ratio) if grad is None else grad
            for (i, a), (j, (rho, r)) in itertools.product(enumerate(advs), enumerate(pairs)):
                used = knobs["lam"] * rho - knobs["beta"] * r if a < 0 else rho
                if min(abs(used - 1 + knobs["clip_low"]), abs(used - 1 - knobs["clip_high"])) < 1e-4:
                    continue  # on the edge of the clip band the derivative is not defined
                point = [rho, r]

                def loss_at(x):  # L_t as a function of this one input
                    point[which] = x
                    return _token_loss(point[0], point[1], a, **knobs)
                want = _finite_difference(loss_at, (rho, r)[which])
                if abs(grad[i, j].item() - want) > 1e-5:
                    hint = " (the clip removes this token's gradient)" if want == 0 and a != 0 else ""
                    _fail(f"apo_token_loss: dL/d{name} at ratio={rho}, r_anchor={r}, adv={a}{hint}", inputs,
                          round(want, 6), round(grad[i, j].item(), 6))


def check_gating_beta(fn):
    """The smallest beta whose token at ratio 1, r_anchor 1, A = -1 gets no gradient, by bisection."""
    def gated(beta, lam, clip_low):  # dL/drho exactly 0 at rho = 1
        loss = lambda rho: _token_loss(rho, 1.0, -1.0, lam, beta, clip_low, 0.2)  # noqa: E731
        return _finite_difference(loss, 1.0, 1e-9) == 0.0

    for lam, clip_low in ((1.05, 0.2), (1.0, 0.2), (1.2, 0.1), (1.05, 0.3)):
        lo, hi = 0.0, 2.0  # not gated at 0, gated at 2
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if gated(mid, lam, clip_low) else (mid, hi)
        got = fn() if (lam, clip_low) == (1.05, 0.2) else fn(lam=lam, clip_low=clip_low)  # defaults first
        if not isinstance(got, (int, float)) or abs(got - hi) > 1e-6:
            _fail("gating_beta", f"lam={lam}, clip_low={clip_low}", round(hi, 6), got)


# ------------------------------------------------------------- ex4 the forces at one position (§4b)

def _force(loss_of_logits, pi):
    """Delta z = -dL/dz at z = log pi, by autograd: (V,)."""
    z = pi.log().clone().requires_grad_(True)
    return -torch.autograd.grad(loss_of_logits(z), z)[0]


def _short(probs):
    return [round(p, 4) for p in probs.tolist()]


def _anchors(ref_pi, y, k):
    top = sorted(range(len(ref_pi)), key=lambda j: -ref_pi[j].item())[:k]  # M = TopK(pi_ref)
    return [j for j in top if j != y]  # S = M minus {y}


def _oracle_forces(pi, ref_pi, y, k):
    """push, pull, k3 at y: Delta z of A = -1 at ratio 1, per unit |A|, beta, kl_coef."""
    S = _anchors(ref_pi, y, k)
    z_ref = max(sum(ref_pi[j].item() for j in S), Z_MIN)
    push = _force(lambda z: torch.softmax(z, -1)[y] / torch.softmax(z, -1)[y].detach(), pi)  # L = -A * rho
    pull = -_force(lambda z: sum((torch.softmax(z, -1)[j] for j in S), z.sum() * 0) / z_ref, pi)  # +dr_anchor
    u = lambda z: ref_pi[y].log() - torch.log_softmax(z, -1)[y]  # noqa: E731
    k3 = _force(lambda z: u(z).exp() - u(z) - 1, pi)
    return push, pull, k3


def _force_cases():
    """(pi, ref_pi, y, k): small random vocabularies, every y, K = 1..3; float64, no ties."""
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        V = 5 + seed
        pi = torch.softmax(2 * torch.randn(V, generator=g, dtype=torch.float64), -1)
        ref_pi = torch.softmax(2 * torch.randn(V, generator=g, dtype=torch.float64), -1)
        for y, k in itertools.product(range(V), (1, 2, 3)):
            yield pi, ref_pi, y, k


def _check_force(fn, name, which):
    for pi, ref_pi, y, k in _force_cases():
        args = {"push_force": (pi, y), "pull_force": (pi, ref_pi, y, k), "k3_force": (pi, ref_pi, y)}[name]
        inputs = f"pi={_short(pi)}, ref_pi={_short(ref_pi)}, y={y}" + (f", k={k}" * (name == "pull_force"))
        expected = _oracle_forces(pi, ref_pi, y, k)[which]
        _tensor_close(fn(*args).view(1, -1), expected.view(1, -1), name, inputs, 1e-8)


def check_push_force(fn):
    _check_force(fn, "push_force", 0)


def check_pull_force(fn):
    _check_force(fn, "pull_force", 1)


def check_k3_force(fn):
    _check_force(fn, "k3_force", 2)


def check_k3_expected_force(fn):
    """sum over y of pi(y) * (the k3 force at y), enumerated."""
    for pi, ref_pi, y0, k in _force_cases():
        if y0 or k > 1:
            continue  # once per world
        expected = sum(pi[y] * _oracle_forces(pi, ref_pi, y, 1)[2] for y in range(len(pi)))
        inputs = f"pi={_short(pi)}, ref_pi={_short(ref_pi)}"
        _tensor_close(fn(pi, ref_pi).view(1, -1), expected.view(1, -1), "k3_expected_force", inputs, 1e-8)


# ------------------------------------------------------------------ ex5 pass@k (§6)

def _brute_pass_at_k(n, c, k):
    """The share of the k-subsets of n samples (the first c correct) that hold a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def check_pass_at_k(fn):
    cases = [(n, c, k, _brute_pass_at_k(n, c, k))
             for n in range(1, 9) for c in range(n + 1) for k in range(1, n + 1)]
    cases += [(n, c, k, float(1 - Fraction(math.comb(n - c, k), math.comb(n, k))))  # exact, huge binomials
              for n, c, k in ((200, 3, 100), (1000, 10, 500), (1000, 1, 1), (100, 0, 50), (100, 95, 10))]
    for n, c, k, expected in cases:
        got = fn(n, c, k)
        if not isinstance(got, (int, float)) or not abs(got - expected) <= 1e-9:
            _fail("pass_at_k", f"n={n}, c={c}, k={k}", expected, got)
    for n, c, k in ((4, 1, 5), (3, 0, 4), (4, -1, 1), (4, 5, 1), (4, 1, 0)):  # k > n, c < 0, c > n, k < 1
        what = "pass_at_k: k > n, c < 0, c > n and k < 1 must raise ValueError"
        try:
            got = fn(n, c, k)
        except ValueError:
            continue
        except Exception as e:  # noqa: BLE001  (any other error is the student's bug to see)
            _fail(what, f"n={n}, c={c}, k={k}", "ValueError", repr(e))
        _fail(what, f"n={n}, c={c}, k={k}", "ValueError", got)


# -------------------------------------------------------------- ex6 the completion mask (rollout.py)

def _slow_mask(rows, eos):
    masks, truncated = [], []
    for row in rows:
        first = next((t for t, tok in enumerate(row) if tok in eos), None)  # the first EOS, if any
        masks.append([1.0 if first is None or t <= first else 0.0 for t in range(len(row))])
        truncated.append(first is None)
    return masks, truncated


def check_completion_mask(fn):
    cases = [([[5, 6, 0, 0], [5, 0, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0]], [0]),  # pad == EOS == 0
             ([[5, 9, 0, 0], [5, 6, 7, 9], [9, 3, 5, 0], [5, 6, 7, 8]], [0, 9]),  # two EOS ids, pad 0
             ([[5, 2, 99, 99], [5, 6, 7, 2], [5, 6, 7, 8]], [2]),  # pad 99 != EOS 2
             ([[4, 0, 4, 0, 4]], [0])]  # a later EOS does not reopen the mask
    for rows, eos in cases:
        inputs = f"completion_ids={rows}, eos={eos}"
        got = fn(torch.tensor(rows), list(eos))
        if not (isinstance(got, tuple) and len(got) == 2):
            _fail("completion_mask must return (mask, truncated)", inputs, "a tuple of 2 tensors", got)
        expected_mask, expected_truncated = _slow_mask(rows, eos)
        _tensor_close(got[0], expected_mask, "completion_mask: mask", inputs, 0.0)
        if not got[0].is_floating_point():
            _fail("completion_mask: mask must be float", inputs, "a float tensor", got[0].dtype)
        if not isinstance(got[1], torch.Tensor) or [bool(v) for v in got[1].tolist()] != expected_truncated:
            _fail("completion_mask: truncated (no EOS in the row)", inputs, expected_truncated, got[1])


# ------------------------------------------------ ex7 predict, then run: the gated pull (Decision 1)

OPTIONS = ("A", "B", "C", "D")  # defined in exercises/ex7_predict_gated_pull.py
EX7_BETA, EX7_SEEDS, EX7_STEPS = 0.5, (0, 1), 120
EX7_WORLD = ["--prompts", "32", "--branching", "8", "--depth", "3", "--correct", "3", "--group-size", "8",
             "--lr", "0.1", "--top-k", "3", "--lam", "1.05", "--base-scale", "2.0", "--prompt-scale", "1.5"]
SAME = 0.02  # pass@64 within this of GRPO's counts as "the same"


@functools.lru_cache(maxsize=1)
def gated_pull_experiment():
    """base, grpo and apo at beta = EX7_BETA on the tree toy: {name: {metric: mean over EX7_SEEDS}}."""
    from toy import tree_demo  # only this exercise needs the toy
    cfg = tree_demo.parse_args(EX7_WORLD + ["--steps", str(EX7_STEPS)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: as the toy runs itself
    rows = {"base": [], "grpo": [], f"apo beta={EX7_BETA:g}": []}
    try:
        for seed in EX7_SEEDS:
            tree, ref_logits, correct = tree_demo.make_world(cfg, seed)
            base = tree_demo.evaluate(tree, ref_logits, ref_logits, correct, cfg.top_k)  # the untrained model
            rows["base"].append(base | {"clip_frac": 0.0})
            for name, method, knob in (("grpo", "grpo", 0.0), (f"apo beta={EX7_BETA:g}", "apo", EX7_BETA)):
                final, clip_frac = tree_demo.train(tree, ref_logits, correct, method, knob, cfg, seed)
                rows[name].append(tree_demo.evaluate(tree, final, ref_logits, correct, cfg.top_k)
                                  | {"clip_frac": clip_frac})
    finally:
        torch.set_num_threads(threads)
    return {name: {key: sum(r[key] for r in runs) / len(runs) for key in ("pass@1", "pass@64", "clip_frac")}
            for name, runs in rows.items()}


def outcome(result):
    """The option that the measured numbers make true (the options are exclusive and exhaustive)."""
    base, grpo, apo = result.values()
    if apo["pass@1"] - base["pass@1"] < 0.5 * (grpo["pass@1"] - base["pass@1"]):
        return "A"
    d64 = apo["pass@64"] - grpo["pass@64"]
    return "B" if abs(d64) <= SAME else "C" if d64 > 0 else "D"


def check_prediction(prediction):
    if prediction is None:
        raise NotImplementedError("write your PREDICTION (one of A, B, C, D) in "
                                  "exercises/ex7_predict_gated_pull.py before you run the experiment")
    if prediction not in OPTIONS:
        _fail("PREDICTION must be one of the options", "PREDICTION", OPTIONS, repr(prediction))
    result = gated_pull_experiment()
    base, grpo = result["base"], result["grpo"]
    apo = result[f"apo beta={EX7_BETA:g}"]
    lines = [f"tree toy, {EX7_STEPS} steps, mean over seeds {list(EX7_SEEDS)}",
             f"{'':<14}{'pass@1':>8}{'pass@64':>9}{'clip_frac':>11}"]
    lines += [f"{name:<14}{m['pass@1']:>8.3f}{m['pass@64']:>9.3f}{m['clip_frac']:>11.3f}"
              for name, m in result.items()]
    gain = (apo["pass@1"] - base["pass@1"]) / (grpo["pass@1"] - base["pass@1"])
    lines.append(f"apo's pass@1 gain = {gain:.2f} of grpo's; pass@64 apo - grpo = "
                 f"{apo['pass@64'] - grpo['pass@64']:+.3f}; measured outcome: {outcome(result)}")
    print("\n".join(lines))
    if prediction != outcome(result):
        raise AssertionError(f"your prediction {prediction} is not what happened:\n" + "\n".join(lines)
                             + "\nWrite down why before you change PREDICTION (exercises/README.md, ex7).")
