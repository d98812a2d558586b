"""Two of the paper's figures on the tree toy: its Figure 2 (gradient dynamics) and Figure 5
(sensitivity to beta, lam and K).

Run:  python toy/tree_paper.py   (47 s measured on 2 idle CPU cores; writes toy/tree_paper.png)

Figure 2, "gradient dynamics": the paper says the KL term's gradient conflicts with the reward
term's, while APO's pull is aligned with the safe manifold (METHOD.md §3, §4c, Proposition 2.1).
Here, on every step's batch of the tree toy (toy/tree_demo.py, report seeds, tuned knobs), with
g(L) = the gradient of a loss with respect to theta:
  reward  = -g(L_grpo)                         the GRPO surrogate's ascent direction
  kl      = -(g(L_grpo_kl) - g(L_grpo))        the k3 term of grpo_kl (its run)
  pull    = -(g(L_apo) - g(L_apo, r_anchor held constant))   APO's pull on the anchors (its
                                               run): the gradient through the anchors only, so 0
                                               at a token the clip gates
  support = +g(J_support)                      J_support: the policy's mass on the reference top-K
                                               at the batch's positions of wrong completions
and it prints and draws cos(kl, reward), cos(pull, reward), cos(kl, support), cos(pull, support)
over training (mean and standard error over seeds). A cosine of 0 means orthogonal; < 0, conflict.

Figure 5, "sensitivity": APO trained at each beta of tree_demo's grid, at lam from 1.0 to 1.2,
and at every anchor-set size K (the world's own top-K, which places the correct leaves, stays
at 3), the other two at their defaults; pass@1 and pass@64 on the report seeds. Nothing is picked
here: it shows the shape of each curve (the paper reports an inverted U in pass@1 for λ and K).
"""

import dataclasses
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from plumbing import cli  # noqa: E402
from toy import tree_demo  # noqa: E402
from toy.tree_plots import METHOD_COLORS  # noqa: E402
from toy.tree_world import evaluate, make_world  # noqa: E402

PAIRS = (("kl", "reward"), ("pull", "reward"), ("kl", "support"), ("pull", "support"))
LAM_GRID = (1.0, 1.02, 1.05, 1.1, 1.2)  # the paper's 1.05 in the middle
SWEEPS = {"beta": tree_demo.BETA_GRID, "lam": LAM_GRID, "top_k": None}  # top_k: 1 .. branching


@dataclasses.dataclass
class Config(tree_demo.Config):
    """The tree toy's flags, and where this script writes."""
    plot: str = cli.option("toy/tree_paper.png", "PNG path")
    every: int = cli.option(10, "steps between two cosines printed")


def cosine(a, b):
    """Cosine of two flattened gradients; nan when either is zero (a step whose wrong tokens are
    all gated has no pull)."""
    na, nb = a.norm(), b.norm()
    return (a.flatten() @ b.flatten() / (na * nb)).item() if na > 0 and nb > 0 else float("nan")


def directions(theta, batch, knob, cfg):
    """The four directions of the module docstring, on one batch: {name: gradient wrt theta}."""
    def grad(loss):
        return torch.autograd.grad(loss, theta, retain_graph=True)[0]
    loss_of, wrong = batch["loss_of"], (batch["adv"] < 0).float()[:, None]  # (N, 1) wrong completions
    g_grpo = grad(loss_of("grpo", 0.0)[0])
    support = (batch["topk_logp"].exp().sum(-1) * wrong).sum()  # J_support on wrong completions
    return {"reward": -g_grpo, "support": grad(support),
            "kl": -(grad(loss_of("grpo_kl", knob)[0]) - g_grpo),
            "pull": -(grad(loss_of("apo", knob)[0]) - grad(loss_of("apo", knob, anchors_grad=False)[0]))}


def gradient_dynamics(cfg, seeds):
    """cos of PAIRS at every step: {pair: (seeds, steps) tensor}. kl pairs from grpo_kl's run at its
    knob, pull pairs from apo's run at its knob (each pair measured in the run of its method)."""
    out = {f"cos({a}, {b})": [] for a, b in PAIRS}
    for seed in seeds:
        tree, ref_logits, correct = make_world(cfg, seed)
        for method, knob in (("grpo_kl", cfg.kl_coef), ("apo", cfg.beta)):
            rows = []

            def on_batch(step, theta, batch):
                d = directions(theta, batch, knob, cfg)
                rows.append({f"cos({a}, {b})": cosine(d[a], d[b]) for a, b in PAIRS
                             if a == ("kl" if method == "grpo_kl" else "pull")})
            tree_demo.train(tree, ref_logits, correct, method, knob, cfg, seed, on_batch=on_batch)
            for key in rows[0]:
                out[key].append([r[key] for r in rows])
    return {k: torch.tensor(v) for k, v in out.items()}


def sensitivity(cfg, seeds):
    """APO's pass@1, pass@64 and clip_frac (the share of tokens the gate removed) at every setting
    of SWEEPS: {knob: [(value, {metric: (seeds,)})]}."""
    out = {}
    for knob, grid in SWEEPS.items():
        for value in grid or range(1, cfg.branching + 1):
            run = dataclasses.replace(cfg, **{knob: value})  # the loss's knobs; the world keeps cfg's K
            metrics = {"pass@1": [], "pass@64": [], "clip_frac": []}
            for seed in seeds:
                tree, ref_logits, correct = make_world(cfg, seed)
                final, clip_frac = tree_demo.train(tree, ref_logits, correct, "apo", run.beta, run, seed)
                m = evaluate(tree, final, ref_logits, correct, cfg.top_k) | {"clip_frac": clip_frac}
                for k in metrics:
                    metrics[k].append(m[k])
            out.setdefault(knob, []).append((value, {k: torch.tensor(v) for k, v in metrics.items()}))
    return out


def nanmean_se(v):
    """Mean and standard error over seeds (dim 0), ignoring nan (a step with no pull, or the first
    step's k3 term: zero while the policy is the reference); nan with no value (mean) or one (SE)."""
    ok = ~v.isnan()
    n = ok.sum(0)
    mean = torch.where(ok, v, 0).sum(0) / n  # nan where n = 0
    var = torch.where(ok, (v - mean) ** 2, 0).sum(0) / (n - 1)  # nan where n < 2
    return mean, (var / n).sqrt()


def report(cos, sens, cfg):
    """Print both tables; returns the JSON-able numbers."""
    steps = list(range(cfg.every, cfg.steps + 1, cfg.every))
    print(f"\nFigure 2: cosines between gradients on each step's batch (mean ± s.e. over {cfg.seeds} seeds)")
    print(f"{'step':<20}" + "".join(f"{s:>7}" for s in steps))
    result = {"cosines": {}, "sensitivity": {}}
    for key, v in cos.items():
        mean, se = nanmean_se(v)
        result["cosines"][key] = {"mean": mean.tolist(), "se": se.tolist()}
        print(f"{key:<20}" + "".join(f"{mean[s - 1]:>+7.2f}" for s in steps)
              + f"   mean over steps {mean.nanmean():+.3f} ({int((~mean.isnan()).sum())} steps with a value)")
    print(f"\nFigure 5: APO's sensitivity, report seeds (the others at beta={cfg.beta}, lam={cfg.lam}, "
          f"K={cfg.top_k})")
    for knob, rows in sens.items():
        result["sensitivity"][knob] = []
        for value, m in rows:
            cells = {k: (v.mean().item(), tree_demo.stderr(v)) for k, v in m.items()}
            result["sensitivity"][knob].append({"value": value, **cells})
            print(f"  {knob:<6} {value:<7g}" + "".join(f"  {k} {a:.3f}±{s:.3f}"
                                                       for k, (a, s) in cells.items()))
    return result


def plot(result, cfg, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 4, figsize=(17, 4))
    colors = {"kl": METHOD_COLORS["grpo_kl"], "pull": METHOD_COLORS["apo"]}
    for key, r in result["cosines"].items():  # a moving mean of up to 10 steps: one batch is noisy
        w = min(10, len(r["mean"]))
        mean, se = (torch.tensor(r[k], dtype=torch.float64).unfold(0, w, 1).nanmean(-1)
                    for k in ("mean", "se"))
        steps = range(w, len(mean) + w)
        line = "-" if "reward" in key else "--"
        ax[0].plot(steps, mean, color=colors[key[4:key.index(",")]], linestyle=line, label=key)
        ax[0].fill_between(steps, mean - se, mean + se, color=colors[key[4:key.index(",")]], alpha=0.2)
    ax[0].axhline(0, color="0.5", lw=0.8)
    ax[0].set(xlabel="step", ylabel="cosine, mean of 10 steps", title="Figure 2: gradients (band: mean s.e.)")
    ax[0].legend(fontsize=8)
    for a, (knob, rows) in zip(ax[1:], result["sensitivity"].items()):
        xs = [r["value"] for r in rows]
        for metric, style in (("pass@1", "-o"), ("pass@64", "--s")):
            a.errorbar(xs, [r[metric][0] for r in rows], yerr=[r[metric][1] for r in rows], fmt=style,
                       color=METHOD_COLORS["apo"], ms=4, capsize=2, label=f"apo {metric}")
        a.axvline(getattr(cfg, knob), color="0.5", lw=0.8, linestyle=":")
        a.set(xlabel=knob, title=f"Figure 5: APO against {knob}")
        a.set_xscale("log" if knob == "beta" else "linear")
        a.legend(fontsize=8)
    fig.suptitle(f"tree toy ({cfg.seeds} report seeds); the paper's Figures 2 and 5", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"figure: {path}")


def main(argv=None):
    cfg = tree_demo.parse_args(argv, Config, __doc__)
    if cfg.every < 1:
        sys.exit("error: --every must be at least 1")
    seeds = tree_demo.seed_sets(cfg)[0]
    print(f"knobs: beta={cfg.beta}, kl_coef={cfg.kl_coef}, lam={cfg.lam}, K={cfg.top_k}; "
          f"report seeds {seeds}")
    result = report(gradient_dynamics(cfg, seeds), sensitivity(cfg, seeds), cfg)
    if not cfg.no_plot:
        plot(result, cfg, cfg.plot)
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
