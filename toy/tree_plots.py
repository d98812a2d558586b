"""The printed tables and the figures of the tree toy (toy/tree_demo.py), from plain numbers.

Nothing here trains or evaluates: each function takes the {method or setting: {metric: value}}
means and standard errors that toy/tree_demo.py computed (and its Config, for the titles) and
prints a table or writes a PNG (matplotlib's Agg backend, no screen needed). It imports nothing
of the project, so that toy/tree_demo.py can import it.
  plot          python toy/tree_demo.py            -> toy/tree_demo.png
  plot_frontier python toy/tree_demo.py --frontier -> toy/tree_frontier.png
  plot_trace    python toy/tree_demo.py --trace    -> toy/tree_trace.png
"""

# One colour per method in every panel of every figure of the repository (base is dashed).
METHOD_COLORS = {"base": "0.45", "grpo": "C0", "grpo_kl": "C1", "kl_on_wrong": "C2", "apo": "C3",
                 "psr": "C4", "nsr": "C5"}  # psr, nsr: the one-sign ablations, dotted
SPREAD = ("pass@", "coverage")  # table columns printed as mean±standard error


def print_table(mean, se, cols, width=16, marks=None):
    """One row per method or setting; `marks` adds text at the end of a row."""
    spread = [c.startswith(SPREAD) for c in cols]
    print(f"{'method':<{width}}" + "".join(f"{c:>13}" if s else f"{c:>10}" for c, s in zip(cols, spread)))
    for name, m in mean.items():
        cells = [f"{m[c]:>7.3f}±{se[name][c]:.3f}" if s else f"{m[c]:>10.3f}" for c, s in zip(cols, spread)]
        print(f"{name:<{width}}" + "".join(cells) + (marks or {}).get(name, ""))


def print_trace(steps, mean, se, metrics):
    """One table per metric of `metrics` ({key: (title, ...)}): a row per method, a column per traced
    step (its mean over seeds), then the standard error at the last step."""
    for key, (title, _) in metrics.items():
        print(f"\n{title}\n{'step':<12}" + "".join(f"{s:>6}" for s in steps) + f"{'s.e.':>7}")
        for name, m in mean.items():
            print(f"{name:<12}" + "".join(f"{x:>6.3f}" for x in m[key]) + f"  ±{se[name][key][-1]:.3f}")


def _axes(ncols, figsize):
    import matplotlib
    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt
    return plt.subplots(1, ncols, figsize=figsize)


def _save(fig, title, path):
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def _style(name):
    return {"color": METHOD_COLORS[name], "linestyle": {"base": "--", "psr": ":", "nsr": ":"}.get(name, "-")}


def _world(cfg):
    return f"P={cfg.prompts}, b={cfg.branching}, D={cfg.depth}, G={cfg.group_size}, K={cfg.top_k}"


def plot(mean, se, ks, cfg, seeds, path):
    """pass@k against k, and pass@64 against pass@1 (± s.e.), one colour per method."""
    fig, ax = _axes(2, (11, 4.2))
    for name, m in mean.items():
        ax[0].plot(ks, [m[f"pass@{k}"] for k in ks], marker="o", label=name, **_style(name))
        ax[1].errorbar(m["pass@1"], m["pass@64"], se[name]["pass@64"], se[name]["pass@1"], marker="o",
                       color=METHOD_COLORS[name], label=name)
    ax[0].set(xscale="log", xlabel="k", ylabel="pass@k", title="pass@k after training (exact)")
    ax[0].set_xticks(ks, [str(k) for k in ks])
    ax[1].set(xlabel="pass@1", ylabel="pass@64", title="each method at its tuned setting (± s.e.)")
    for a in ax:
        a.legend(fontsize=7)
    _save(fig, f"Tree toy: {_world(cfg)}; kl_coef {cfg.kl_coef:g} (grpo_kl), {cfg.kl_on_wrong_coef:g} "
          f"(kl_on_wrong), beta {cfg.beta:g}, tuned on other seeds; mean over report seeds {seeds}; all "
          "settings: --frontier", path)


def plot_frontier(mean, se, grids, picks, label, clipped, seeds, path):
    """pass@1 against pass@64 and against coverage along each method's grid of settings; `label(m, k)`
    names a setting's row in `mean`, `clipped(m, k)` marks apo's clipped pull at step 0."""
    fig, ax = _axes(2, (14, 6))
    for a, y in zip(ax, ("pass@64", "coverage")):
        a.axhline(mean["base"][y], color=METHOD_COLORS["base"], linestyle="--",
                  label=f"base (pass@1 {mean['base']['pass@1']:.3f}, off the left edge)")
        for m, grid in [(m, None) for m in ("grpo", "psr", "nsr") if m in mean] + list(grids.items()):
            names = [m] if grid is None else [label(m, k) for k in grid]
            xs, ys = ([mean[n][c] for n in names] for c in ("pass@1", y))
            a.errorbar(xs, ys, [se[n][y] for n in names], [se[n]["pass@1"] for n in names], fmt="none",
                       ecolor=METHOD_COLORS[m], alpha=0.25, elinewidth=1)  # s.e. over seeds: faint
            a.plot(xs, ys, "D" if grid is None else "o-", ms=4 + 4 * (grid is None), color=METHOD_COLORS[m],
                   label=m if grid is None else f"{label(m, grid[0])}..{grid[-1]:g}")
            for k, px, py in zip(grid or (), xs, ys):
                a.annotate(f"{k:g}", (px, py), fontsize=7, color=METHOD_COLORS[m], xytext=(4, 2),
                           textcoords="offset points")
                if clipped(m, k):
                    a.plot(px, py, "o", ms=8, mfc="white", color=METHOD_COLORS[m])
                if k == picks[m]:
                    a.plot(px, py, "*", ms=17, color=METHOD_COLORS[m], mec="k")
        a.set(xlabel="pass@1", ylabel=y, title=f"pass@1 vs {y} across each method's knob")
        a.legend(fontsize=8)
    _save(fig, f"Tree toy trade-off: mean over report seeds {seeds}, faint bars ± s.e. (mostly "
          "world-to-world spread). Star: the rule's pick on the tuning seeds; hollow: apo with r~ below "
          "the clip band at step 0", path)


def plot_trace(steps, mean, se, metrics, cfg, seeds, path):
    """A panel per metric of `metrics` ({key: (title, log y-axis?)}; None: not drawn) against training
    step, a line per method with a ±1 s.e. band; `mean`, `se`: {method: {key: list over steps}}."""
    panels = {key: (title, log_y) for key, (title, log_y) in metrics.items() if log_y is not None}
    fig, ax = _axes(len(panels), (5.2 * len(panels), 4.4))
    for a, (key, (title, log_y)) in zip(ax, panels.items()):
        for name, m in mean.items():
            lo, hi = ([v + sign * e for v, e in zip(m[key], se[name][key])] for sign in (-1, 1))
            a.plot(steps, m[key], marker="o", ms=3, label=name, **_style(name))
            a.fill_between(steps, lo, hi, color=METHOD_COLORS[name], alpha=0.15, lw=0)
        a.set(xlabel="training step", ylabel=key, yscale="log" if log_y else "linear")
        a.set_title(title, fontsize=9)
        a.legend(fontsize=7)
    _save(fig, f"Tree toy over training: {_world(cfg)}; each method at its tuned knob; mean over report "
          f"seeds {seeds}, bands ± s.e. (mostly world-to-world spread)", path)
