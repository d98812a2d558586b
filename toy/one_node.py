"""One decoding position: where GRPO's push, APO's pull and the KL term send the freed mass.

Run:  python toy/one_node.py       (2.2 s on 2 CPU cores, 1.8 s of it importing torch and exiting;
                                    writes toy/one_node.png)

Six tokens (METHOD.md §4b); the sampled y is wrong (A = -1, ratio 1). Each force Δz = -dL/dz, per unit
|A| (and beta, kl_coef), comes by autograd through `apo.policy_loss` and in closed form:

    push (grpo)   Δz_k = pi_k - [k == y]                          each k rises by its own pi_k
    pull (apo)    Δz_j = pi_j ([j in S] - sum_S pi) / Z_ref,      S = TopK(pi_ref) minus {y}
    k3 at y       Δz   = (pi_ref(y)/pi(y) - 1) (onehot(y) - pi);  E_{y ~ pi}[Δz] = pi_ref - pi
    apo = lam push + beta pull;  grpo_kl = kl_on_wrong = push + kl_coef k3 (at a wrong completion's token)

Push and pull are ∝ pi_j: the freed mass goes mostly to the habit (an anchor: the pull feeds it too),
and both fade on a dying token. A sampled j's k3 force carries the weight pi_ref(j)/pi(j): its mean
tends to pi_ref(j), not 0. Departures: none; APO's r~ = 0.95 is inside the clip band (Decision 1).
"""

import dataclasses
import gc
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import apo  # noqa: E402  (the repository root is not a package)
from plumbing import cli  # noqa: E402

TOKENS = ("habit", "wrong y", "valid A", "valid B", "rare valid", "tail")
PI = (0.80, 0.12, 0.04, 0.02, 0.002, 0.018)  # the policy after some RL: a habit, a rare valid token squeezed
REF = (0.55, 0.06, 0.20, 0.05, 0.08, 0.06)  # the reference; its top-3: habit, valid A, rare valid
Y, RARE, LR = 1, 4, 0.2  # the sampled (wrong) token, the token whose fate we follow; the Δp step's lr
LAM, BETA, K = 1.05, 0.1, 3  # APO's push and pull (the paper's), and the size of the top-K M
RARE_COLUMNS = ("push at y", "pull at y /beta", "k3 at y /c", "pi_j*k3 at j /c", "E_y k3 /c")  # per knob


@dataclasses.dataclass
class Config:
    kl_coef: float = cli.option(0.1, "k3 weight c: equal to beta, force for force (train.py: 1e-3)")
    out: str = cli.option("toy/one_node.png", "PNG path of the figure")


def push_force(pi, y):
    """GRPO at A = -1, ratio 1: Δz = pi - onehot(y), (V,) -> (V,); each k != y rises by its own pi_k."""
    return pi - torch.zeros_like(pi).index_fill_(0, torch.tensor(y), 1.0)


def pull_force(pi, ref_pi, y, k):
    """APO's pull per unit beta, d r_anchor / dz = pi_j ([j in S] - sum_S pi) / Z_ref."""
    in_s = torch.zeros_like(pi).index_fill_(0, ref_pi.topk(k).indices, 1.0)  # (V,) 1 on M
    in_s[y] = 0.0  # exclusive anchors: the sampled token is never its own anchor
    z_ref = (ref_pi * in_s).sum().clamp_min(apo.Z_REF_MIN)  # S empty: 0 / 1e-12 = no pull
    return pi * (in_s - (pi * in_s).sum()) / z_ref


def k3_force(pi, ref_pi, y):
    """-d k3 / dz at the sampled y per unit kl_coef; d k3 / d log pi(y) = 1 - pi_ref(y)/pi(y), a weight."""
    return (ref_pi[y] / pi[y] - 1) * -push_force(pi, y)


def k3_expected_force(pi, ref_pi):
    """sum_y pi(y) k3_force(y) = sum_y (pi_ref(y) - pi(y)) (onehot(y) - pi) = pi_ref - pi."""
    return ref_pi - pi


def autograd_force(kind, pi, ref_pi, y, k, adv=-1.0, **knobs):
    """The same by autograd: Δz = -dL/dz of apo.policy_loss(kind) at one token, logits log pi: (V,)."""
    z = pi.log().view(1, 1, -1).requires_grad_(True)  # (N=1, T=1, V) logits
    topk_ids = ref_pi.topk(k).indices.view(1, 1, k)  # (1, 1, K) the reference top-K, M
    logp = apo.gather_logp(z, torch.tensor([[[y]]])).view(1, 1)  # (1, 1) log pi(y), with grad
    loss = apo.policy_loss(logp, logp.detach(), torch.tensor([adv], dtype=pi.dtype), torch.ones(1, 1), kind,
                           ref_logp=ref_pi[y].log().view(1, 1), topk_logp=apo.gather_logp(z, topk_ids),
                           ref_topk_logp=ref_pi.log()[topk_ids], topk_is_sampled=topk_ids == y, **knobs)[0]
    return -torch.autograd.grad(loss, z)[0].view(-1)


def rare_forces(p, pi, ref_pi):
    """RARE_COLUMNS, (5,): the forces on the rare token j once pi(j) = p, the others rescaled."""
    pi = torch.where(torch.arange(len(pi)) == RARE, p, pi * (1 - p) / (1 - pi[RARE]))  # (V,) sums to 1
    return torch.stack([push_force(pi, Y), pull_force(pi, ref_pi, Y, K), k3_force(pi, ref_pi, Y),
                        p * k3_force(pi, ref_pi, RARE), k3_expected_force(pi, ref_pi)])[:, RARE]


def plot(pi, ref, table, out):
    """Left: the forces per token, grouped bars; right: the force on the rare token as it dies."""
    from matplotlib.figure import Figure  # no pyplot, no screen; a 0.5 s import, so only here
    fig = Figure(figsize=(13, 4.6))  # margins by hand: a constrained layout would draw it twice
    ax = fig.subplots(1, 2, gridspec_kw=dict(left=0.05, right=0.99, bottom=0.16, top=0.93, wspace=0.16))
    colors, styles, widths = ("C0", "C3", "C1", "C1", "C2"), ("-", "-", "-", ":", "-"), (2, 2, 2, 3, 7)
    for i, col in enumerate((0, 1, 2, 4)):  # a group of 4 bars per token, as on the right
        x = [t + 0.2 * i - 0.3 for t in range(6)]
        ax[0].bar(x, table[i].tolist(), 0.2, label=RARE_COLUMNS[col], color=colors[col])
    ax[0].axhline(0, color="k", lw=0.6)
    ax[0].set(title=f"Δz per unit knob: push (grpo), pull (apo), k3 (grpo_kl, kl_on_wrong); K = {K}",
              xticks=range(6), xticklabels=[f"{t}\npi {p:g}\nref {r:g}" for t, p, r in zip(TOKENS, PI, REF)])
    probs = torch.logspace(-5, -1.3, 40, dtype=torch.float64)  # pi(rare) from 1e-5 to 0.05
    curves = torch.stack([rare_forces(p, pi, ref) for p in probs]).abs()  # (40, 5)
    for col in range(5):  # E_y k3: wide and faint, below pi_j*k3 at j, which it matches as pi_j -> 0
        ax[1].loglog(probs, curves[:, col], styles[col], color=colors[col], lw=widths[col],
                     alpha=0.4 if col == 4 else 1, zorder=1 if col == 4 else 2, label=RARE_COLUMNS[col])
    ax[1].axhline(ref[RARE].item(), color="0.5", lw=0.8)
    ax[1].axvline(pi[RARE].item(), color="0.5", lw=0.8, ls=":")
    ax[1].set(xlabel="pi_j = pi(rare valid)", ylabel="|force on the rare valid token|",
              title=f"as it dies: ∝ pi_j -> 0, or -> pi_ref(j) = {ref[RARE]:g} (grey)")
    ax[1].minorticks_off()  # and labels 1e-05, not mathtext's: half the drawing time
    ax[1].xaxis.set_major_formatter("{x:.0e}")
    ax[1].yaxis.set_major_formatter("{x:.0e}")
    for a in ax:
        a.legend(fontsize=8)
    fig.savefig(out, dpi=120)
    print(f"figure: {out}")


def main(argv=None):
    cfg = cli.parse(Config, argv, __doc__.split("\n")[0])
    c, pi, ref = cfg.kl_coef, torch.tensor(PI, dtype=torch.float64), torch.tensor(REF, dtype=torch.float64)
    table = push, pull, k3y, ek3 = (push_force(pi, Y), pull_force(pi, ref, Y, K), k3_force(pi, ref, Y),
                                    k3_expected_force(pi, ref))  # (V,) each, per unit knob
    print("Δz = -dL/dz per unit knob at the sampled wrong y (E_y k3: its mean over y ~ pi)")
    print(f"{'token':<11}{'pi':>7}{'pi_ref':>8}{'push':>10}{'pull':>10}{'k3 at y':>10}{'E_y k3':>10}")
    for i, t in enumerate(TOKENS):
        print(f"{t:<11}{pi[i]:>7.3f}{ref[i]:>8.3f}" + "".join(f"{f[i]:>+10.4f}" for f in table))
    forces = {"grpo": ("push", push, autograd_force("grpo", pi, ref, Y, K)),  # (formula, closed, autograd)
              "apo": (f"{LAM}*push + {BETA}*pull", LAM * push + BETA * pull,
                      autograd_force("apo", pi, ref, Y, K, lam=LAM, beta=BETA)),
              **{m: (f"push + {c}*k3 at y", push + c * k3y, autograd_force(m, pi, ref, Y, K, kl_coef=c))
                 for m in ("grpo_kl", "kl_on_wrong")}}
    print(f"\none SGD step of lr {LR} on the logits: Δp for each loss (grpo_kl = kl_on_wrong at this sample)")
    print(f"{'token':<11}" + "".join(f"{m:>12}" for m in forces))
    dp = [torch.softmax(pi.log() + LR * auto, -1) - pi for *_, auto in forces.values()]  # (V,) per loss
    for i, t in enumerate(TOKENS):
        print(f"{t:<11}" + "".join(f"{d[i]:>+12.6f}" for d in dp))
    print(f"\nforce Δz on the rare valid token (pi {pi[RARE]:g}, pi_ref {ref[RARE]:g}): closed | autograd")
    for m, (formula, closed, auto) in forces.items():
        print(f"  {m:<12}{formula:<24}{closed[RARE]:>+.6f} | {auto[RARE]:+.6f}")
    # A = 0 leaves only grpo_kl's k3 term: weight its force at each y by how often y is sampled
    auto_ek3 = sum(pi[y] * autograd_force("grpo_kl", pi, ref, y, K, adv=0.0, kl_coef=1.0) for y in range(6))
    print(f"  {'E_y~pi k3':<12}{'pi_ref - pi, per c':<24}{ek3[RARE]:>+.6f} | {auto_ek3[RARE]:+.6f}"
          "  (the sum over y of pi_y * autograd at y)")
    print("\nforce on the rare valid token j as pi_j shrinks (the others rescaled), per unit knob")
    print(f"{'pi_j':>8}" + "".join(f"{name:>17}" for name in RARE_COLUMNS))
    for p in (5e-2, 1e-2, 1e-3, 1e-4, 1e-5):  # pi(rare valid); the other tokens rescaled
        print(f"{p:>8.0e}" + "".join(f"{f:>+17.3e}" for f in rare_forces(p, pi, ref)))
    print(f"push, pull and k3 at y fall ∝ pi_j; E_y k3 -> pi_ref(j) = {ref[RARE]:g} (sampled j: k3 ∝ 1/pi_j)")
    plot(pi, ref, table, cfg.out)
    return {m: auto for m, (*_, auto) in forces.items()}


if __name__ == "__main__":
    main()
    gc.freeze()  # exit without a last GC sweep over the 200k objects torch and matplotlib made: 0.3 s
