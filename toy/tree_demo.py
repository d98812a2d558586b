"""Recursive Space Contraction in seconds: GRPO, KL and APO on a tree of tokens.

Run:  python toy/tree_demo.py             (about 6 s on 2 CPU cores; writes toy/tree_demo.png)
      python toy/tree_demo.py --frontier  (about 40 s: re-tunes every knob, writes toy/tree_frontier.png)

The world (METHOD.md §2). A completion is a path of D tokens (b actions each) to a leaf of a
tree; each of P prompts marks `correct` distinct leaves correct. The policy is logits(p, node) =
base(node) + prompt(p, node) + theta(node): fixed random tables (the pretrained model) plus
`theta`, the only trained table, **shared by every prompt** as an LLM's weights are, which is
what lets Pass@K fall. The reference top-K at each node is the safe manifold (METHOD.md §3);
every correct leaf is a path through it. Training calls the `apo` functions train.py uses
(METHOD.md §1, §3, §4); pass@k = mean of 1 - (1 - p_success)**k is exact (leaves enumerated).

A fair comparison. Each regularised method has one knob, kl_coef for grpo_kl and kl_on_wrong
(METHOD.md §4), beta for apo (lam stays at the paper's 1.05), and the same budget: the 8
log-spaced settings of its grid, from "no visible effect" to "too strong", tried on tuning
seeds 100..102, never on the reported seeds 0..2. The rule, fixed before any tuning run: the
largest pass@1 + pass@64 on the tuning seeds, a tie going to the weaker setting (a sum has no
threshold to tune after the fact, and weighs both ends of the trade-off the paper claims to
break). TUNED holds the picks; `--frontier` re-derives them and plots the whole trade-off.

Departures from the paper, on purpose:
1. A table policy, not a transformer; one gradient step per batch (ratio = 1, so the clip
   acts only through APO's rectified ratio); Adam on theta.
2. beta and kl_coef are the toy's own tuned values, not the paper's 0.1 and 1e-3.
3. With the clip at 0.2, r~ = lam - beta*r_anchor (ratio 1) is in the clip band only while
   r_anchor <= (lam - 1 + clip_low)/beta (METHOD.md Decision 1): for beta > 0.25 a wrong token
   gets no gradient until its anchors have lost mass, a gated pull (marked `clip!`).
"""

import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
import apo  # noqa: E402  (the repository root is not a package)
from plumbing import cli  # noqa: E402

# One colour per method in every panel of every figure of the repository (base is dashed).
METHOD_COLORS = {"base": "0.45", "grpo": "C0", "grpo_kl": "C1", "kl_on_wrong": "C2", "apo": "C3"}
KS = (1, 4, 16, 64)
COVERAGE_MIN_PROB = 0.01  # leaf "covered" if pi >= 1 %: 64 draws then find it >= 47 % of the time
CLIP_LOW = 0.2  # apo.policy_loss's default clip, passed explicitly: the clip! mark depends on it

REPORT_SEED0 = 0  # the table and the frontier report seeds 0..seeds-1
TUNING_SEED0 = 100  # knobs are tuned on seeds 100..100+seeds-1, never on a reported seed
KL_GRID = (0.003, 0.0069, 0.016, 0.036, 0.083, 0.19, 0.44, 1.0)  # no visible effect .. pass@1 ~ base
BETA_GRID = (0.01, 0.019, 0.037, 0.072, 0.14, 0.27, 0.52, 1.0)  # no visible effect .. r~ starts ~0.05
GRIDS = {"grpo_kl": KL_GRID, "kl_on_wrong": KL_GRID, "apo": BETA_GRID}  # 8 log-spaced tries each
KNOB = {"grpo_kl": "kl_coef", "kl_on_wrong": "kl_on_wrong_coef", "apo": "beta"}  # Config field
TUNED = {"grpo_kl": 0.036, "kl_on_wrong": 0.083, "apo": 0.14}  # the rule's picks; re-derive: --frontier


@dataclasses.dataclass
class Config:
    """GRPO, KL and APO on a tree of tokens (every field is a flag; see --help)."""
    prompts: int = cli.option(32, "number of prompts P")
    branching: int = cli.option(8, "actions per node b (the 'vocabulary')")
    depth: int = cli.option(3, "tokens per completion D")
    correct: int = cli.option(3, "distinct correct leaves per prompt")
    group_size: int = cli.option(8, "samples per prompt per step G")
    steps: int = cli.option(200, "training steps")
    lr: float = cli.option(0.1, "Adam learning rate on theta")
    top_k: int = cli.option(3, "K: size of the reference top-K safe manifold")
    beta: float = cli.option(TUNED["apo"], "APO pull (tuned; the paper: 0.1)")
    lam: float = cli.option(1.05, "APO push (the paper's value, not tuned)")
    kl_coef: float = cli.option(TUNED["grpo_kl"], "k3 weight of grpo_kl (tuned)")
    kl_on_wrong_coef: float = cli.option(TUNED["kl_on_wrong"], "k3 weight of kl_on_wrong (tuned)")
    base_scale: float = cli.option(2.0, "std of the shared pretrained logits: larger = peakier")
    prompt_scale: float = cli.option(1.5, "std of the prompt-specific logits")
    seeds: int = cli.option(3, f"seeds per set: report {REPORT_SEED0}.., tuning {TUNING_SEED0}..")
    frontier: bool = cli.option(False, "tune every knob on the tuning seeds and plot the frontier")
    no_plot: bool = cli.option(False, "skip the PNG figure")
    plot: str = cli.option("toy/tree_demo.png", "PNG path of the default run")
    frontier_plot: str = cli.option("toy/tree_frontier.png", "PNG path of --frontier")
    json: str = cli.option(None, "write results as JSON here")


def parse_args(argv=None):
    ap = cli.build_parser(Config, __doc__.split("\n")[0])
    cfg = Config(**vars(ap.parse_args(argv)))
    checks = [  # (holds, the one line that says what to fix); the first failure exits with code 2
        (min(cfg.prompts, cfg.branching, cfg.depth, cfg.correct, cfg.steps, cfg.seeds) >= 1,
         "--prompts, --branching, --depth, --correct, --steps and --seeds must be at least 1"),
        (cfg.group_size >= 2, "--group-size must be at least 2: group advantages need two samples"),
        (1 <= cfg.top_k <= cfg.branching, f"--top-k must be between 1 and --branching ({cfg.branching})"),
        (cfg.correct <= cfg.top_k ** cfg.depth, "--correct must be at most top_k ** depth (top-K paths)"),
        (cfg.seeds <= TUNING_SEED0 - REPORT_SEED0, f"--seeds must be at most {TUNING_SEED0 - REPORT_SEED0}"
         " so that tuning and report seeds stay apart"),
        (not cli.non_finite_floats(cfg), f"these flags must be finite numbers: {cli.non_finite_floats(cfg)}"),
        (min(cfg.beta, cfg.kl_coef, cfg.kl_on_wrong_coef) >= 0, "--beta and the kl coefs must be >= 0"),
    ]
    for holds, message in checks:
        if not holds:
            ap.error(message)
    return cfg


def seed_sets(cfg):
    """(report seeds, tuning seeds): disjoint because parse_args keeps seeds <= TUNING_SEED0."""
    return [REPORT_SEED0 + i for i in range(cfg.seeds)], [TUNING_SEED0 + i for i in range(cfg.seeds)]


# ------------------------------------------------------------------------------ the world

class Tree:
    """Index arithmetic of a complete b-ary tree of depth D (internal nodes numbered by level)."""

    def __init__(self, b, depth):
        self.b, self.depth = b, depth
        self.offset = [(b ** d - 1) // (b - 1) if b > 1 else d for d in range(depth + 1)]
        self.n_nodes = self.offset[depth]  # internal nodes: levels 0..D-1
        leaves = torch.arange(b ** depth)  # (L,)
        # actions[l, d]: the d-th token on the path to leaf l; nodes[l, d]: the node it is taken at
        self.actions = torch.stack([(leaves // b ** (depth - 1 - d)) % b for d in range(depth)], 1)
        self.nodes = torch.stack([self.offset[d] + leaves // b ** (depth - d) for d in range(depth)], 1)

    def child(self, node, d, action):
        """Node id reached from `node` (at level d) by `action`; at level D-1 the leaf index."""
        in_level = (node - self.offset[d]) * self.b + action
        return in_level if d == self.depth - 1 else self.offset[d + 1] + in_level


def make_world(cfg, seed):
    """Fixed pretrained logits and each prompt's correct leaves, all from one seed."""
    g = torch.Generator().manual_seed(seed)
    tree = Tree(cfg.branching, cfg.depth)
    base = torch.randn(tree.n_nodes, cfg.branching, generator=g) * cfg.base_scale
    prompt = torch.randn(cfg.prompts, tree.n_nodes, cfg.branching, generator=g) * cfg.prompt_scale
    ref_logits = base + prompt  # (P, nodes, b) the reference = initial policy
    topk_ids = ref_logits.topk(cfg.top_k, dim=-1).indices  # (P, nodes, K)
    in_topk = torch.zeros_like(ref_logits, dtype=torch.bool).scatter_(-1, topk_ids, True)
    on_manifold = in_topk[:, tree.nodes, tree.actions].all(-1)  # (P, L) path stays in the top-K
    # `correct` distinct leaves per prompt, uniform among the K**D on-manifold ones
    score = torch.rand(on_manifold.shape, generator=g).masked_fill(~on_manifold, -1.0)  # (P, L)
    chosen = score.topk(cfg.correct, dim=-1).indices  # (P, correct) distinct by construction
    correct = torch.zeros_like(on_manifold).scatter_(-1, chosen, True)  # (P, L)
    return tree, ref_logits, correct


def evaluate(tree, logits, ref_logits, correct, top_k):
    """Exact metrics of the policy `logits` (P, nodes, b) by enumerating every leaf."""
    logpi = torch.log_softmax(logits, dim=-1)  # (P, nodes, b) tiny: the toy may use it
    leaf_p = logpi[:, tree.nodes, tree.actions].sum(-1).exp()  # (P, L) pi(leaf | prompt)
    p_success = (leaf_p * correct).sum(-1)  # (P,) chance that one sample is correct
    # E[unbiased pass@k estimator] = 1 - (1-p)^k for i.i.d. samples; here it is exact
    out = {f"pass@{k}": (1 - (1 - p_success) ** k).mean().item() for k in KS}
    out["coverage"] = (leaf_p[correct] >= COVERAGE_MIN_PROB).float().mean().item()
    mass = logpi.exp().gather(-1, ref_logits.topk(top_k, dim=-1).indices).sum(-1)  # (P, nodes) on top-K
    # safe_mass: top-K mass at the D nodes of a path, averaged over the D levels, expected over paths
    out["safe_mass"] = (leaf_p * mass[:, tree.nodes].mean(-1)).sum(-1).mean().item()
    return out


# ------------------------------------------------------------------------------ training

def sample_paths(tree, logits, group_size):
    """G root-to-leaf paths per prompt. Returns nodes, tokens (N, D), leaf ids and prompt ids (N,)."""
    P = logits.shape[0]
    prompt_of = torch.arange(P).repeat_interleave(group_size)  # (N,)
    node = torch.zeros(P * group_size, dtype=torch.long)  # (N,) all start at the root
    nodes, tokens = [], []
    for d in range(tree.depth):
        probs = torch.softmax(logits[prompt_of, node], dim=-1)  # (N, b)
        tokens.append(torch.multinomial(probs, 1).squeeze(1))  # (N,) sampled token
        nodes.append(node)
        node = tree.child(node, d, tokens[-1])
    return torch.stack(nodes, 1), torch.stack(tokens, 1), node, prompt_of


def train(tree, ref_logits, correct, method, knob, cfg, seed):
    """Train theta with `method` at `knob` (beta for apo, kl_coef for the KL kinds); returns the
    final policy logits (P, nodes, b) and the fraction of clipped tokens, averaged over steps."""
    torch.manual_seed(1000 + seed)  # the same sampling seed for every method
    theta = torch.zeros(ref_logits.shape[1:], requires_grad=True)  # (nodes, b) shared
    opt = torch.optim.Adam([theta], lr=cfg.lr)
    P, G, D = cfg.prompts, cfg.group_size, cfg.depth
    mask = torch.ones(P * G, D)  # (N, T) every token of a path counts
    clip_fracs = []  # with ratio = 1 only APO's r~ can leave the clip band
    for _ in range(cfg.steps):
        logits = ref_logits + theta  # (P, nodes, b) the current policy, with grad
        with torch.no_grad():
            nodes, y, leaf, prompt_of = sample_paths(tree, logits, G)  # (N, D) each
        rewards = correct[prompt_of, leaf].float().view(P, G)  # (P, G) verifiable reward
        adv = apo.group_advantages(rewards).view(-1)  # (N,)
        pol = logits[prompt_of[:, None], nodes]  # (N, D, b) policy logits at visited nodes
        ref = ref_logits[prompt_of[:, None], nodes]  # (N, D, b) reference logits
        logp = apo.gather_logp(pol, y[..., None]).squeeze(-1)  # (N, D) log pi_theta(y_t)
        ref_logp = apo.gather_logp(ref, y[..., None]).squeeze(-1)  # (N, D) log pi_ref(y_t)
        topk_ids, ref_topk_logp = apo.reference_topk(ref, cfg.top_k)  # (N, D, K) each
        topk_logp = apo.gather_logp(pol, topk_ids)  # (N, D, K) log pi_theta at anchors
        loss, m = apo.policy_loss(
            logp, logp.detach(), adv, mask, kind=method, ref_logp=ref_logp,
            topk_logp=topk_logp, ref_topk_logp=ref_topk_logp,
            topk_is_sampled=topk_ids == y[..., None], lam=cfg.lam, clip_low=CLIP_LOW,
            beta=knob, kl_coef=knob)  # each kind reads only its own knob
        opt.zero_grad()
        loss.backward()
        opt.step()
        clip_fracs.append(m["clip_frac"])
    return (ref_logits + theta).detach(), sum(clip_fracs) / len(clip_fracs)


# ------------------------------------------------------------------------------ tuning

def run_seeds(cfg, seeds, runs):
    """Train and evaluate each (name, method, knob) of `runs` on each seed: {name: {metric: (seeds,)}}."""
    per_seed = {}
    for seed in seeds:
        tree, ref_logits, correct = make_world(cfg, seed)
        for name, method, knob in runs:
            final, clip_frac = (ref_logits, 0.0) if method == "base" else train(
                tree, ref_logits, correct, method, knob, cfg, seed)
            m = evaluate(tree, final, ref_logits, correct, cfg.top_k) | {"clip_frac": clip_frac}
            for key, v in m.items():
                per_seed.setdefault(name, {}).setdefault(key, []).append(v)
    return {name: {k: torch.tensor(v) for k, v in m.items()} for name, m in per_seed.items()}


def stderr(v):
    """Standard error std/sqrt(n) of a (seeds,) tensor of results; nan for a single seed."""
    return v.std().item() / len(v) ** 0.5 if len(v) > 1 else float("nan")


def mean_se(per_seed):
    """{name: {metric: mean over seeds}} and {name: {metric: standard error}}."""
    return ({n: {k: v.mean().item() for k, v in m.items()} for n, m in per_seed.items()},
            {n: {k: stderr(v) for k, v in m.items()} for n, m in per_seed.items()})


def label(method, knob):
    return f"{method} {'beta' if method == 'apo' else 'kl_coef'}={knob:g}"


def clipped_at_start(method, knob, cfg):
    """Departure 3: r~ = lam - beta at step 0 is below the clip band (METHOD.md Decision 1)."""
    return method == "apo" and cfg.lam - knob < 1 - CLIP_LOW


def pick(rows):
    """The selection rule: index of the largest pass@1 + pass@64; a tie goes to the weaker
    (earlier) setting of the grid.

    >>> pick([{"pass@1": 0.30, "pass@64": 0.70}, {"pass@1": 0.25, "pass@64": 0.80},
    ...       {"pass@1": 0.20, "pass@64": 0.85}, {"pass@1": 0.10, "pass@64": 0.90}])
    1
    """
    scores = [round(r["pass@1"] + r["pass@64"], 9) for r in rows]  # round: 0.25+0.80 == 0.20+0.85
    return max(range(len(rows)), key=lambda i: (scores[i], -i))


def frontier(cfg, grids=GRIDS):
    """Tune every knob on the tuning seeds by `pick`, then run every grid on the report seeds.
    Returns per-seed results on the tuning and the report seeds, and {method: picked setting}."""
    report_seeds, tuning_seeds = seed_sets(cfg)
    runs = [("base", "base", 0.0), ("grpo", "grpo", 0.0)]
    runs += [(label(m, k), m, k) for m, grid in grids.items() for k in grid]
    tuning = run_seeds(cfg, tuning_seeds, runs)
    means = mean_se(tuning)[0]
    picks = {m: grid[pick([means[label(m, k)] for k in grid])] for m, grid in grids.items()}
    return tuning, run_seeds(cfg, report_seeds, runs), picks


SE_COLS = [f"pass@{k}" for k in KS] + ["coverage"]  # printed as mean±standard error


def print_table(per_seed, cols=(*SE_COLS, "safe_mass", "clip_frac"), width=16, marks=None):
    mean, se = mean_se(per_seed)
    print(f"{'method':<{width}}" + "".join(f"{c:>13}" if c in SE_COLS else f"{c:>10}" for c in cols))
    for name, m in mean.items():
        cells = [f"{m[c]:>7.3f}±{se[name][c]:.3f}" if c in SE_COLS else f"{m[c]:>10.3f}" for c in cols]
        print(f"{name:<{width}}" + "".join(cells) + (marks or {}).get(name, ""))


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


def plot(mean, se, cfg, path):
    fig, ax = _axes(2, (11, 4.2))
    for name, m in mean.items():
        ax[0].plot(KS, [m[f"pass@{k}"] for k in KS], marker="o", label=name, color=METHOD_COLORS[name],
                   linestyle="--" if name == "base" else "-")
        ax[1].errorbar(m["pass@1"], m["pass@64"], se[name]["pass@64"], se[name]["pass@1"], marker="o",
                       color=METHOD_COLORS[name], label=name)
    ax[0].set(xscale="log", xlabel="k", ylabel="pass@k", title="pass@k after training (exact)")
    ax[0].set_xticks(KS, [str(k) for k in KS])
    ax[1].set(xlabel="pass@1", ylabel="pass@64", title="each method at its tuned setting (± s.e.)")
    for a in ax:
        a.legend(fontsize=7)
    _save(fig, f"Tree toy: P={cfg.prompts}, b={cfg.branching}, D={cfg.depth}, G={cfg.group_size}, "
          f"K={cfg.top_k}; kl_coef {cfg.kl_coef:g} (grpo_kl), {cfg.kl_on_wrong_coef:g} (kl_on_wrong), beta "
          f"{cfg.beta:g}, tuned on other seeds; mean over report seeds {seed_sets(cfg)[0]}; all settings: "
          "--frontier", path)


def plot_frontier(per_seed, picks, cfg, path):
    (mean, se), (fig, ax) = mean_se(per_seed), _axes(2, (14, 6))
    for a, y in zip(ax, ("pass@64", "coverage")):
        a.axhline(mean["base"][y], color=METHOD_COLORS["base"], linestyle="--",
                  label=f"base (pass@1 {mean['base']['pass@1']:.3f}, off the left edge)")
        for m, grid in [("grpo", None)] + list(GRIDS.items()):
            names = ["grpo"] if grid is None else [label(m, k) for k in grid]
            xs, ys = ([mean[n][c] for n in names] for c in ("pass@1", y))
            a.errorbar(xs, ys, [se[n][y] for n in names], [se[n]["pass@1"] for n in names], fmt="none",
                       ecolor=METHOD_COLORS[m], alpha=0.25, elinewidth=1)  # s.e. over seeds: faint
            a.plot(xs, ys, "D" if grid is None else "o-", ms=4 + 4 * (grid is None), color=METHOD_COLORS[m],
                   label=m if grid is None else f"{label(m, grid[0])}..{grid[-1]:g}")
            for k, px, py in zip(grid or (), xs, ys):
                a.annotate(f"{k:g}", (px, py), fontsize=7, color=METHOD_COLORS[m], xytext=(4, 2),
                           textcoords="offset points")
                if clipped_at_start(m, k, cfg):
                    a.plot(px, py, "o", ms=8, mfc="white", color=METHOD_COLORS[m])
                if k == picks[m]:
                    a.plot(px, py, "*", ms=17, color=METHOD_COLORS[m], mec="k")
        a.set(xlabel="pass@1", ylabel=y, title=f"pass@1 vs {y} across each method's knob")
        a.legend(fontsize=8)
    _save(fig, f"Tree toy trade-off: mean over report seeds {seed_sets(cfg)[0]}, faint bars ± s.e. (mostly "
          "world-to-world spread). Star: the rule's pick on the tuning seeds; hollow: apo with r~ below "
          "the clip band at step 0", path)


# ------------------------------------------------------------------------------ main

def run_default(cfg):
    """Every method at its tuned setting on the report seeds: the table, paired differences, figure."""
    print(f"knobs: {', '.join(label(m, getattr(cfg, KNOB[m])) for m in GRIDS)}\n       defaults: each "
          f"the pick of 8 settings on tuning seeds {seed_sets(cfg)[1]} by max pass@1 + pass@64 (--frontier)")
    runs = [("base", "base", 0.0), ("grpo", "grpo", 0.0)] + [(m, m, getattr(cfg, KNOB[m])) for m in GRIDS]
    per_seed = run_seeds(cfg, seed_sets(cfg)[0], runs)
    print_table(per_seed)
    print(f"(± = standard error over {cfg.seeds} seeds, mostly world-to-world spread; paired rows cancel it)")
    cols = ("pass@1", "pass@64", "coverage")  # apo minus each method, seed by seed (same worlds)
    print(f"\n{'apo minus, paired by seed':<35}" + "".join(f"{c:>13}" for c in cols))
    for b in ("grpo", "grpo_kl", "kl_on_wrong"):
        d = [per_seed["apo"][c] - per_seed[b][c] for c in cols]  # (seeds,) each
        print(f"  {b:<33}" + "".join(f"{v.mean().item():>+7.3f}±{stderr(v):.3f}" for v in d))
    mean, se = mean_se(per_seed)
    if not cfg.no_plot:
        plot(mean, se, cfg, cfg.plot)
    return {"methods": mean, "stderr": se}


def run_frontier(cfg):
    """Re-derive TUNED on the tuning seeds, then the frontier of every grid on the report seeds."""
    tuning, report, picks = frontier(cfg)
    report_seeds, tuning_seeds = seed_sets(cfg)
    for title, per_seed in ((f"tuning seeds {tuning_seeds}; the rule picks here", tuning),
                            (f"report seeds {report_seeds}; the frontier figure", report)):
        mean, marks = mean_se(per_seed)[0], {}
        for m, k in ((m, k) for m, grid in GRIDS.items() for k in grid):
            r = mean[label(m, k)]
            marks[label(m, k)] = (f"{r['pass@1'] + r['pass@64']:>8.3f}" + "  <- pick" * (k == picks[m])
                                  + "  clip!" * clipped_at_start(m, k, cfg))
        print(f"\n{title} (last column: pass@1 + pass@64)")
        print_table(per_seed, ("pass@1", "pass@64", "coverage", "clip_frac"), 28, marks)
    print("\npicked: " + ", ".join(label(m, k) + ("" if k == TUNED[m] else f" (TUNED says {TUNED[m]:g}!)")
                                   for m, k in picks.items()))
    gate = cfg.lam - 1 + CLIP_LOW
    print(f"clip!: beta > lam - 1 + clip_low = {gate:.2f}: r~ is below the clip band until r_anchor < "
          f"{gate:.2f}/beta; the pull acts only once the anchors have lost mass")
    if not cfg.no_plot:
        plot_frontier(report, picks, cfg, cfg.frontier_plot)
    return {"picks": picks, "tuning": mean_se(tuning)[0], "report": mean_se(report)[0],
            "report_stderr": mean_se(report)[1]}


def main(argv=None):
    t0 = time.time()
    cfg = parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give
    print(f"config: P={cfg.prompts} b={cfg.branching} D={cfg.depth} G={cfg.group_size} steps={cfg.steps} "
          f"lr={cfg.lr} K={cfg.top_k} lam={cfg.lam} report seeds {seed_sets(cfg)[0]}")
    out = run_frontier(cfg) if cfg.frontier else run_default(cfg)
    seconds = time.time() - t0
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump({"config": dataclasses.asdict(cfg), "seconds": seconds, **out}, f, indent=2)
    print(f"seconds: {seconds:.1f}")
    return out


if __name__ == "__main__":
    main()
