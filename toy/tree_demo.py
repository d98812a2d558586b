"""Recursive Space Contraction in seconds: GRPO, KL and APO on a tree of tokens.

Run:  python toy/tree_demo.py             (about 15 s on 2 CPU cores; writes toy/tree_demo.png)
      python toy/tree_demo.py --trace     (about 15 s: evaluated every 20 steps, writes toy/tree_trace.png)
      python toy/tree_demo.py --frontier  (about 100 s: re-tunes every knob, writes toy/tree_frontier.png)

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

Contraction over time (--trace). A correct leaf is "rare" if the base gives it pi_ref < 1 %
(RARE_MAX_PROB; about 60 % of them). rare_kept, the geometric mean of pi/pi_ref over the rare
leaves, is the share of its base probability that a typical rare leaf keeps; under GRPO it falls
at every evaluation: a branch that lost mass is sampled less, so it loses more. Their summed pi
(rare_total) rises instead: the few that become a prompt's favourite gain more than the rest lose.

Which force (METHOD.md §4): psr and nsr keep GRPO's loss on one sign's tokens only (positive
sharpening alone, negative squeezing alone; no knob). Here nsr collapses the most, psr the least.

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
from toy import tree_plots  # noqa: E402
from toy.tree_world import COVERAGE_MIN_PROB, KS, evaluate, make_world, sample_paths  # noqa: E402

RARE_MAX_PROB = COVERAGE_MIN_PROB  # a correct leaf is "rare" if the base gives it < 1 %: base misses it
CLIP_LOW = 0.2  # apo.policy_loss's default clip, passed explicitly: the clip! mark depends on it

REPORT_SEED0 = 0  # the table and the frontier report seeds 0..seeds-1
TUNING_SEED0 = 100  # knobs are tuned on seeds 100..100+seeds-1, never on a reported seed
KL_GRID = (0.003, 0.0069, 0.016, 0.036, 0.083, 0.19, 0.44, 1.0)  # no visible effect .. pass@1 ~ base
BETA_GRID = (0.01, 0.019, 0.037, 0.072, 0.14, 0.27, 0.52, 1.0)  # no visible effect .. r~ starts ~0.05
GRIDS = {"grpo_kl": KL_GRID, "kl_on_wrong": KL_GRID, "apo": BETA_GRID}  # 8 log-spaced tries each
KNOB = {"grpo_kl": "kl_coef", "kl_on_wrong": "kl_on_wrong_coef", "apo": "beta"}  # Config field
TUNED = {"grpo_kl": 0.036, "kl_on_wrong": 0.083, "apo": 0.14}  # the rule's picks; re-derive: --frontier
TUNED_ON = (100, 101, 102)  # the tuning seeds TUNED was picked on (--frontier with the default --seeds 3)
UNTUNED = ("base", "grpo", "psr", "nsr")  # no knob: psr, nsr keep GRPO's loss on one sign's tokens only


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
    trace: bool = cli.option(False, "evaluate the tuned methods as they train: contraction over time")
    trace_every: int = cli.option(20, "steps between two evaluations of --trace (plus step 0 and the last)")
    no_plot: bool = cli.option(False, "skip the PNG figure")
    plot: str = cli.option("toy/tree_demo.png", "PNG path of the default run")
    frontier_plot: str = cli.option("toy/tree_frontier.png", "PNG path of --frontier")
    trace_plot: str = cli.option("toy/tree_trace.png", "PNG path of --trace")
    json: str = cli.option(None, "write results as JSON here")


def parse_args(argv=None, config=Config, doc=__doc__):
    """The flags of `config` (Config, or toy/tree_paper.py's subclass), checked."""
    ap = cli.build_parser(config, doc.split("\n")[0])
    cfg = config(**vars(ap.parse_args(argv)))
    checks = [  # (holds, the one line that says what to fix); the first failure exits with code 2
        (min(cfg.prompts, cfg.branching, cfg.depth, cfg.correct, cfg.steps, cfg.seeds, cfg.trace_every) >= 1,
         "--prompts, --branching, --depth, --correct, --steps, --seeds and --trace-every must be at least 1"),
        (not (cfg.frontier and cfg.trace), "choose one of --frontier and --trace"),
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


# ------------------------------------------------------------------------------ training

def train(tree, ref_logits, correct, method, knob, cfg, seed, on_step=lambda step, logits: None,
          on_batch=None):
    """Train theta with `method` at `knob` (beta for apo, kl_coef for the KL kinds); returns the
    final policy logits (P, nodes, b) and the fraction of clipped tokens, averaged over steps.
    `on_step(step, logits)` sees the detached policy (P, nodes, b) at step 0 (the reference) and
    after each update 1..steps (--trace). `on_batch(step, theta, batch)` sees each step's batch
    before the update (toy/tree_paper.py: gradients of several losses on it). Neither draws random
    numbers, so results stay the same."""
    torch.manual_seed(1000 + seed)  # the same sampling seed for every method
    theta = torch.zeros(ref_logits.shape[1:], requires_grad=True)  # (nodes, b) shared
    opt = torch.optim.Adam([theta], lr=cfg.lr)
    P, G, D = cfg.prompts, cfg.group_size, cfg.depth
    mask = torch.ones(P * G, D)  # (N, T) every token of a path counts
    clip_fracs = []  # with ratio = 1 only APO's r~ can leave the clip band
    on_step(0, ref_logits)
    for step in range(1, cfg.steps + 1):
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
        def loss_of(kind, value, lam=cfg.lam, anchors_grad=True):  # each kind reads only its knob `value`
            return apo.policy_loss(  # anchors_grad=False: r_anchor a constant (toy/tree_paper.py)
                logp, logp.detach(), adv, mask, kind=kind, ref_logp=ref_logp,
                topk_logp=topk_logp if anchors_grad else topk_logp.detach(), ref_topk_logp=ref_topk_logp,
                topk_is_sampled=topk_ids == y[..., None], lam=lam, clip_low=CLIP_LOW,
                beta=value, kl_coef=value)
        loss, m = loss_of(method, knob)
        if on_batch:
            on_batch(step, theta, {"loss_of": loss_of, "adv": adv, "mask": mask, "logp": logp,
                                   "ref_logp": ref_logp, "topk_logp": topk_logp,
                                   "ref_topk_logp": ref_topk_logp,
                                   "topk_is_sampled": topk_ids == y[..., None]})
        opt.zero_grad()
        loss.backward()
        opt.step()
        clip_fracs.append(m["clip_frac"])
        on_step(step, (ref_logits + theta).detach())  # after the update: the policy of step `step`
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
    """Standard error std/sqrt(n) over dim 0 of (seeds,) or (seeds, steps) results; nan for one seed."""
    std = v.std(0) if len(v) > 1 else torch.full_like(v[0], float("nan"))
    return (std.double() / len(v) ** 0.5).tolist()


def mean_se(per_seed):
    """{name: {metric: mean over seeds}} and {name: {metric: standard error}}; lists for traced metrics."""
    return ({n: {k: v.mean(0).tolist() for k, v in m.items()} for n, m in per_seed.items()},
            {n: {k: stderr(v) for k, v in m.items()} for n, m in per_seed.items()})


def label(method, knob):
    return f"{method} {'beta' if method == 'apo' else 'kl_coef'}={knob:g}"


def knob_source(cfg):
    """Where the knobs came from: TUNED (picked on TUNED_ON) or the command line."""
    own = [label(m, getattr(cfg, KNOB[m])) for m in GRIDS if getattr(cfg, KNOB[m]) != TUNED[m]]
    return (f"defaults: each the pick of 8 settings on tuning seeds {list(TUNED_ON)} by max pass@1 + pass@64 "
            f"(--frontier)" + (f"; set on the command line: {', '.join(own)}" if own else ""))


def tuned_runs(cfg):
    """(name, method, knob) of the default run: base, grpo, the one-sign ablations psr and nsr (no knob),
    and each regularised method at its knob."""
    return [(m, m, 0.0) for m in UNTUNED] + [(m, m, getattr(cfg, KNOB[m])) for m in GRIDS]


def clipped_at_start(method, knob, cfg):
    """tree_demo.py departure 3: r~ = lam - beta at step 0 is below the clip band (METHOD.md Decision 1)."""
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
    runs = [(m, m, 0.0) for m in UNTUNED] + [(label(m, k), m, k) for m, grid in grids.items() for k in grid]
    tuning = run_seeds(cfg, tuning_seeds, runs)
    means = mean_se(tuning)[0]
    picks = {m: grid[pick([means[label(m, k)] for k in grid])] for m, grid in grids.items()}
    return tuning, run_seeds(cfg, report_seeds, runs), picks


# ------------------------------------------------------------------------------ contraction over time

TRACE_METRICS = {  # the metrics of --trace: title of the table (and panel), log y-axis (None: not drawn)
    "pass@64": ("pass@64 (exact)", False),
    "coverage": (f"coverage: share of correct leaves with pi >= {COVERAGE_MIN_PROB:g}", False),
    "rare_kept": (f"rare_kept: geo. mean of pi/pi_ref, correct leaves with pi_ref < {RARE_MAX_PROB:g}", True),
    "rare_total": ("rare_total: summed pi of a prompt's rare leaves", None),  # a few winners dominate it
}


def trace_point(tree, logits, ref_logits, correct, top_k):
    """The TRACE_METRICS of the policy `logits` (P, nodes, b); "rare": pi_ref(leaf) < RARE_MAX_PROB."""
    log_pi = torch.log_softmax(logits, -1)[:, tree.nodes, tree.actions].sum(-1)  # (P, L) log pi(leaf | p)
    log_ref = torch.log_softmax(ref_logits, -1)[:, tree.nodes, tree.actions].sum(-1)  # (P, L) log pi_ref
    rare = correct & (log_ref.exp() < RARE_MAX_PROB)  # (P, L) the correct leaves the base rarely samples
    m = evaluate(tree, logits, ref_logits, correct, top_k)
    return {"pass@64": m["pass@64"], "coverage": m["coverage"],
            "rare_kept": (log_pi - log_ref)[rare].mean().exp().item(),  # nan if no leaf is rare
            "rare_total": (log_pi.exp() * rare).sum(-1).mean().item()}


def trace(cfg, seeds, runs):
    """run_seeds, but evaluated by trace_point at step 0, every cfg.trace_every steps and the last step.
    Returns the steps and {name: {metric: (seeds, steps)}}."""
    steps = sorted(set(range(0, cfg.steps, cfg.trace_every)) | {cfg.steps})
    per_seed = {}
    for seed in seeds:
        tree, ref_logits, correct = make_world(cfg, seed)
        for name, method, knob in runs:
            policy = dict.fromkeys(steps, ref_logits)  # step -> logits (P, nodes, b) after that update
            if method != "base":  # base is never trained: the reference at every step
                train(tree, ref_logits, correct, method, knob, cfg, seed, on_step=policy.__setitem__)
            rows = [trace_point(tree, policy[s], ref_logits, correct, cfg.top_k) for s in steps]
            for key in rows[0]:
                per_seed.setdefault(name, {}).setdefault(key, []).append([r[key] for r in rows])
    return steps, {name: {k: torch.tensor(v) for k, v in m.items()} for name, m in per_seed.items()}


# ------------------------------------------------------------------------------ main

def run_default(cfg):
    """Every method at its tuned setting on the report seeds: the table, paired differences, figure."""
    print(f"knobs: {', '.join(label(m, getattr(cfg, KNOB[m])) for m in GRIDS)}\n       {knob_source(cfg)}")
    per_seed = run_seeds(cfg, seed_sets(cfg)[0], tuned_runs(cfg))
    mean, se = mean_se(per_seed)
    tree_plots.print_table(mean, se, [f"pass@{k}" for k in KS] + ["coverage", "safe_mass", "clip_frac"])
    print(f"(± = standard error over {cfg.seeds} seeds, mostly world-to-world spread; paired rows cancel it)")
    cols = ("pass@1", "pass@64", "coverage")  # apo minus each method, seed by seed (same worlds)
    print(f"\n{'apo minus, paired by seed':<35}" + "".join(f"{c:>13}" for c in cols))
    for b in ("grpo", "psr", "nsr", "grpo_kl", "kl_on_wrong"):
        d = [per_seed["apo"][c] - per_seed[b][c] for c in cols]  # (seeds,) each
        print(f"  {b:<33}" + "".join(f"{v.mean().item():>+7.3f}±{stderr(v):.3f}" for v in d))
    if not cfg.no_plot:
        tree_plots.plot(mean, se, KS, cfg, seed_sets(cfg)[0], cfg.plot)
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
        tree_plots.print_table(*mean_se(per_seed), ("pass@1", "pass@64", "coverage", "clip_frac"), 28, marks)
    print("\npicked: " + ", ".join(label(m, k) + ("" if k == TUNED[m] else f" (TUNED says {TUNED[m]:g}!)")
                                   for m, k in picks.items()))
    gate = cfg.lam - 1 + CLIP_LOW
    print(f"clip!: beta > lam - 1 + clip_low = {gate:.2f}: r~ is below the clip band until r_anchor < "
          f"{gate:.2f}/beta; the pull acts only once the anchors have lost mass")
    if not cfg.no_plot:
        tree_plots.plot_frontier(*mean_se(report), GRIDS, picks, label,
                                 lambda m, k: clipped_at_start(m, k, cfg), report_seeds, cfg.frontier_plot)
    return {"picks": picks, "tuning": mean_se(tuning)[0], "report": mean_se(report)[0],
            "report_stderr": mean_se(report)[1]}


def run_trace(cfg):
    """Every method at its tuned setting on the report seeds, evaluated as it trains: tables, figure."""
    steps, per_seed = trace(cfg, seed_sets(cfg)[0], tuned_runs(cfg))
    print(f"knobs: {', '.join(label(m, getattr(cfg, KNOB[m])) for m in GRIDS)}\nrare: the correct leaves with"
          f" pi_ref < {RARE_MAX_PROB:g}; cells: mean over the report seeds, last: s.e. at step {cfg.steps}")
    mean, se = mean_se(per_seed)
    tree_plots.print_trace(steps, mean, se, TRACE_METRICS)
    if not cfg.no_plot:
        tree_plots.plot_trace(steps, mean, se, TRACE_METRICS, cfg, seed_sets(cfg)[0], cfg.trace_plot)
    return {"steps": steps, "methods": mean, "stderr": se}


def main(argv=None):
    t0 = time.time()
    cfg = parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give
    print(f"config: P={cfg.prompts} b={cfg.branching} D={cfg.depth} G={cfg.group_size} steps={cfg.steps} "
          f"lr={cfg.lr} K={cfg.top_k} lam={cfg.lam} report seeds {seed_sets(cfg)[0]}")
    out = run_frontier(cfg) if cfg.frontier else run_trace(cfg) if cfg.trace else run_default(cfg)
    seconds = time.time() - t0
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump({"config": dataclasses.asdict(cfg), "seconds": seconds, **out}, f, indent=2)
    print(f"seconds: {seconds:.1f}")
    return out


if __name__ == "__main__":
    main()
