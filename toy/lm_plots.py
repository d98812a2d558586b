"""The figures of the tiny-LM demo (toy/lm_demo.py), from the numbers it computed.

Nothing here trains or evaluates: each function takes lm_demo's summary (pass@k per method and
seed), its derived numbers, the training curves and the forgotten-problems view, and writes a
PNG (matplotlib's Agg backend, no screen needed).
  plot_main      python toy/lm_demo.py  -> toy/lm_demo.png
  plot_forgotten python toy/lm_demo.py  -> toy/lm_forgotten.png
"""

import math

from toy import tasks
from toy.tree_plots import METHOD_COLORS  # one colour per method in every figure of the repository


def style(name):
    """Colour and line style: base dashed, the one-sign ablations dotted (as the tree toy)."""
    return METHOD_COLORS[name], {"base": "--", "psr": ":", "nsr": ":"}.get(name, "-")


def _se(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs)) if len(xs) > 1 else 0.0


def smooth(values, width=10):
    values = [v for v in values if v is not None]
    return [sum(values[max(0, i - width + 1):i + 1]) / min(i + 1, width) for i in range(len(values))]


def plot_main(summary, derived, curves, args, ks):
    """pass@k +- SE; reward, safe-manifold mass and entropy over training; what each model samples."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 3, figsize=(15, 8))
    ax = ax.ravel()
    for name, r in summary.items():
        color, line = style(name)
        ses = [_se(r["per_seed_curve"][k]) for k in ks]
        ax[0].errorbar(ks, [r["curve"][k] for k in ks], yerr=ses, marker="o", ms=4, capsize=3, color=color,
                       linestyle=line, label=name)
    ax[0].set(xscale="log", xlabel="k", ylabel="pass@k", title="held-out arith: pass@k (+- SE over seeds)")
    ax[0].set_xticks(ks, [str(k) for k in ks])
    panels = (("reward_mean", "training reward"), ("safe_mass", "mass on the reference top-8"),
              ("entropy", "policy entropy (nats / token)"))
    for i, (key, label) in enumerate(panels, start=1):
        for m, runs in curves.items():
            for j, c in enumerate(runs):
                ax[i].plot(c["step"], smooth(c[key]), color=style(m)[0], linestyle=style(m)[1], alpha=0.8,
                           label=None if j else m)
        ax[i].set(xlabel="RL step", title=label + " (mean of 10 steps)")
    names, cats = list(summary), list(tasks.CATEGORY_SHARE)
    width = 0.8 / len(names)
    for i, name in enumerate(names):  # grouped bars: one group per category of problem, one bar per model
        xs = [x + width * (i - (len(names) - 1) / 2) for x in range(len(cats))]
        vals = derived["by_category"][name]
        ax[4].bar(xs, [derived["add_first_share"][name][k] for k in cats], width=width, color=style(name)[0])
        ax[5].bar(xs, [vals[f"{k} pass@64"][0] for k in cats], yerr=[vals[f"{k} pass@64"][1] for k in cats],
                  width=width, color=style(name)[0], label=name, capsize=2)
    ax[4].set(ylabel="share of samples", yscale="log", title="samples that 'add first'")
    ax[5].set(ylabel="pass@64 (+- SE over seeds)", title="pass@64 by category of problem")
    for a in ax[4:]:
        a.set_xticks(range(len(cats)), cats)
    for a in ax[[0, 1, 2, 3, 5]]:
        a.legend(fontsize=8)
    fig.suptitle(f"tiny LM on CPU: {args.steps} steps, B={args.prompts_per_step}, G={args.group_size}, "
                 f"lr={args.lr}, beta={args.beta}, kl_coef={args.kl_coef} "
                 f"(kl_on_wrong {args.kl_on_wrong_coef}); "
                 f"n={args.n} x {args.problems} held-out problems, {args.seeds} seed(s)")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=100)
    print(f"figure: {args.plot}")


def plot_forgotten(f, args, problems, methods, shown=40):
    """Left: the problems GRPO forgot (selected on the other seeds), one row each, coloured by the
    solve rate on the held-out seed. Right: base c/n against each trained model's c/n (pooled over
    seeds) for every held-out problem."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    names = list(f["held_out_rate"])
    cols = math.ceil(len(methods) / 2)
    fig = plt.figure(figsize=(4 + 3.6 * cols, 9))
    grid = fig.add_gridspec(2, cols + 1, width_ratios=[1.3] + [1] * cols)
    a0 = fig.add_subplot(grid[:, 0])
    rows = f["index"][:shown]
    cells = [[f["held_out_rate"][m][i] for m in names] for i in rows] or [[0.0] * len(names)]
    im = a0.imshow(cells, aspect="auto", cmap="viridis", vmin=0, vmax=max(0.05, max(map(max, cells))))
    a0.set_xticks(range(len(names)), names, rotation=45)
    a0.set_yticks(range(len(rows)), [f"{problems[i]['problem'][8:-1]} ({f['categories'][i]})" for i in rows],
                  fontsize=6)
    where = ("selected on the other seeds", "on the held-out seed") if f["held_out"] else \
        ("one seed: selected on the same samples", "on that seed")
    a0.set_title(f"forgotten by GRPO: {len(f['index'])} problems\n({where[0]})", fontsize=9)
    fig.colorbar(im, ax=a0, label=f"solve rate c/n {where[1]}")
    for j, m in enumerate(methods):
        a = fig.add_subplot(grid[j // cols, j % cols + 1])
        color = style(m)[0]
        for category, marker in zip(tasks.CATEGORY_SHARE, ("o", "s", "^")):  # hollow: both strategies work
            xs = [f["rate"]["base"][i] for i, x in enumerate(f["categories"]) if x == category]
            ys = [f["rate"][m][i] for i, x in enumerate(f["categories"]) if x == category]
            a.scatter(xs, ys, s=14, marker=marker, edgecolors=color, alpha=0.6, label=category,
                      facecolors="none" if category == "both" else color)
        a.plot([0, 1], [0, 1], color=style("base")[0], linestyle="--", lw=1)
        sqrt = (lambda x: np.sqrt(np.clip(x, 0, None)), np.square)  # spreads out the rarely solved
        a.set_xscale("function", functions=sqrt)
        a.set_yscale("function", functions=sqrt)
        a.set(xlabel="base c/n (square-root axis)", ylabel=f"{m} c/n", xlim=(0, 1), ylim=(0, 1),
              title=f"{m}: solves {f['kept'][m]} of {sum(f['sizes'])} held-out", )
        a.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.plot_forgotten, dpi=100)
    print(f"figure: {args.plot_forgotten}")
