"""Recursive Space Contraction in seconds: GRPO, KL and APO on a tree of tokens.

Run:  python toy/tree_demo.py            (about 10 s on 2 CPU cores; writes toy/tree_demo.png)
      python toy/tree_demo.py --beta 0.05,0.1,0.3,1.0 --no-plot     (a beta sweep)

The world (APO_SPEC §2). A "completion" is D tokens, each picked from b actions: a path from
the root of a b-ary tree to one of its b**D leaves. There are P prompts; each prompt marks a
few leaves correct (reward 1) and the rest wrong (reward 0). The policy at a node is

    logits(p, node) = base(node) + prompt(p, node) + theta(node)

where `base` and `prompt` are fixed random tables (the pretrained model; `prompt` is the
part that differs between prompts, so the prompts disagree about which branch is right)
and `theta` is the only trainable table, **shared by every prompt**, as an LLM's weights
are. That sharing is what lets Pass@K fall: sharpening toward one prompt's answer takes
mass from another prompt's. With a separate table per prompt it cannot happen. The
reference model is the initial policy (theta = 0); its top-K at each node is the "safe
manifold", and every correct leaf is a path through the reference top-K (in the paper 97 %
of ground-truth tokens are in the reference top-8).

Training calls the very functions train.py uses: `apo.group_advantages`, `apo.gather_logp`,
`apo.topk_logp` and `apo.policy_loss`, with the completion tokens laid out as (N, T=D).
Evaluation is exact: every leaf's probability is enumerated, so pass@k = mean over prompts
of 1 - (1 - p_success)**k with no sampling noise.

Departures from the paper, on purpose:
1. A table policy, not a transformer; one gradient step per batch (ratio = 1, so the clip
   acts only through APO's rectified ratio); Adam on theta.
2. The toy default beta is not the paper's 0.1 when the sweep shows a clearer picture
   elsewhere; the value used is printed with every run.
"""

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import apo  # noqa: E402  (the repository root is not a package)

METHODS = ("grpo", "grpo_kl", "kl_on_wrong", "apo")
KS = (1, 4, 16, 64)
COVERAGE_MIN_PROB = 0.01  # leaf "covered" if pi >= 1 %: 64 draws then find it >= 47 % of the time


class Args:
    """Defaults of the toy; every one is a flag (see --help)."""
    prompts = 32         # P prompts
    branching = 8        # b actions at every node ("vocabulary")
    depth = 3            # D tokens per completion
    correct = 3          # correct leaves per prompt
    group_size = 8       # G samples per prompt per step
    steps = 200          # training steps
    lr = 0.1             # Adam learning rate on theta
    top_k = 3            # K: size of the reference top-K safe manifold
    beta = 0.2           # APO pull (the paper: 0.1; weak in this toy, see the README sweep)
    lam = 1.05           # APO push
    kl_coef = 0.05       # k3 weight for grpo_kl and kl_on_wrong
    base_scale = 2.0     # spread of the pretrained logits: larger = peakier reference
    prompt_scale = 1.5   # spread of the prompt-specific logits
    seeds = 3            # results are averaged over seeds 0..seeds-1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = {
        "prompts": "number of prompts P", "branching": "actions per node b",
        "depth": "tokens per completion D", "correct": "correct leaves per prompt",
        "group_size": "samples per prompt per step G", "steps": "training steps",
        "lr": "Adam learning rate", "top_k": "reference top-K (safe manifold size)",
        "lam": "APO push on wrong tokens", "kl_coef": "k3 weight for the KL baselines",
        "base_scale": "std of the shared pretrained logits",
        "prompt_scale": "std of the prompt-specific logits",
        "seeds": "number of seeds to average",
    }
    for name, h in helps.items():
        default = getattr(Args, name)
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default, help=h)
    p.add_argument("--beta", type=str, default=str(Args.beta),
                   help="APO pull; a comma list (0.05,0.1,0.3) runs a sweep of apo only")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG figure")
    p.add_argument("--plot", type=str, default="toy/tree_demo.png", help="PNG path")
    p.add_argument("--json", type=str, default=None, help="write results as JSON here")
    args = p.parse_args(argv)
    try:
        args.betas = [float(b) for b in args.beta.split(",")]
    except ValueError:
        p.error(f"--beta must be a number or a comma list of numbers, got {args.beta!r}")
    for name in ("prompts", "branching", "depth", "correct", "group_size", "steps", "seeds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.group_size < 2:
        p.error("--group-size must be at least 2: group advantages need two samples")
    if not 1 <= args.top_k <= args.branching:
        p.error(f"--top-k must be between 1 and --branching ({args.branching})")
    return args


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
        self.nodes = torch.stack([self.offset[d] + leaves // b ** (depth - d)
                                  for d in range(depth)], 1)  # (L, D)

    def child(self, node, d, action):
        """Node id reached from `node` (at level d) by `action`; at level D-1 the leaf index."""
        in_level = (node - self.offset[d]) * self.b + action
        return in_level if d == self.depth - 1 else self.offset[d + 1] + in_level


def make_world(args, seed):
    """Fixed pretrained logits and each prompt's correct leaves, all from one seed."""
    g = torch.Generator().manual_seed(seed)
    tree = Tree(args.branching, args.depth)
    base = torch.randn(tree.n_nodes, args.branching, generator=g) * args.base_scale
    prompt = torch.randn(args.prompts, tree.n_nodes, args.branching, generator=g) * args.prompt_scale
    ref_logits = base + prompt  # (P, nodes, b) the reference = initial policy
    topk_ids = ref_logits.topk(args.top_k, dim=-1).indices  # (P, nodes, K)
    correct = torch.zeros(args.prompts, args.branching ** args.depth, dtype=torch.bool)
    for p in range(args.prompts):
        for _ in range(args.correct):
            # a correct leaf is a path that stays inside the reference top-K at every node
            node = 0
            for d in range(args.depth):
                a = topk_ids[p, node, torch.randint(args.top_k, (1,), generator=g)].item()
                node = tree.child(node, d, a)
            correct[p, node] = True
    return tree, ref_logits, correct


# ---------------------------------------------------------------------------- evaluation

def evaluate(tree, logits, ref_logits, correct, top_k):
    """Exact metrics of the policy `logits` (P, nodes, b) by enumerating every leaf."""
    logpi = torch.log_softmax(logits, dim=-1)  # (P, nodes, b) tiny: the toy may use it
    leaf_p = logpi[:, tree.nodes, tree.actions].sum(-1).exp()  # (P, L) pi(leaf | prompt)
    p_success = (leaf_p * correct).sum(-1)  # (P,) chance that one sample is correct
    # E[unbiased pass@k estimator] = 1 - (1-p)^k for i.i.d. samples; here it is exact
    out = {f"pass@{k}": (1 - (1 - p_success) ** k).mean().item() for k in KS}
    out["coverage"] = (leaf_p[correct] >= COVERAGE_MIN_PROB).float().mean().item()
    out["safe_mass"] = safe_mass(tree, logpi.exp(), ref_logits.topk(top_k, dim=-1).indices)
    return out


def safe_mass(tree, pi, ref_topk_ids):
    """Sum of pi_theta over the reference top-K at a node, averaged over the nodes the
    policy visits (weighted by the chance its path passes there) and over the D levels."""
    mass = pi.gather(-1, ref_topk_ids).sum(-1)  # (P, nodes)
    visit = torch.zeros_like(mass)  # (P, nodes) probability that a sampled path passes here
    visit[:, 0] = 1.0
    for d in range(tree.depth - 1):
        lo, hi, nxt = tree.offset[d], tree.offset[d + 1], tree.offset[d + 2]
        visit[:, hi:nxt] = (visit[:, lo:hi, None] * pi[:, lo:hi]).flatten(1)
    return ((visit * mass).sum(-1) / tree.depth).mean().item()


# ------------------------------------------------------------------------------ training

def sample_paths(tree, logits, group_size):
    """G root-to-leaf paths per prompt. Returns nodes, tokens (N, D) and leaf ids (N,)."""
    P = logits.shape[0]
    prompt_of = torch.arange(P).repeat_interleave(group_size)  # (N,)
    node = torch.zeros(P * group_size, dtype=torch.long)  # (N,) all start at the root
    nodes, tokens = [], []
    for d in range(tree.depth):
        probs = torch.softmax(logits[prompt_of, node], dim=-1)  # (N, b)
        a = torch.multinomial(probs, 1).squeeze(1)  # (N,) sampled token
        nodes.append(node)
        tokens.append(a)
        node = tree.child(node, d, a)
    return torch.stack(nodes, 1), torch.stack(tokens, 1), node, prompt_of


def train(tree, ref_logits, correct, method, beta, args, seed, history=None):
    """Train theta with `method`; returns the final policy logits (P, nodes, b) and the
    fraction of tokens whose gradient the clip removed, averaged over steps."""
    torch.manual_seed(1000 + seed)  # the same sampling seed for every method
    theta = torch.zeros(ref_logits.shape[1:], requires_grad=True)  # (nodes, b) shared
    opt = torch.optim.Adam([theta], lr=args.lr)
    P, G, D = args.prompts, args.group_size, args.depth
    mask = torch.ones(P * G, D)  # (N, T) every token of a path counts
    clip_fracs = []  # with ratio = 1 only APO's r~ can leave the clip band
    for step in range(args.steps):
        logits = ref_logits + theta  # (P, nodes, b) the current policy, with grad
        with torch.no_grad():
            nodes, y, leaf, prompt_of = sample_paths(tree, logits, G)  # (N, D) each
        rewards = correct[prompt_of, leaf].float().view(P, G)  # (P, G) verifiable reward
        adv = apo.group_advantages(rewards).view(-1)  # (N,)
        pol = logits[prompt_of[:, None], nodes]  # (N, D, b) policy logits at visited nodes
        ref = ref_logits[prompt_of[:, None], nodes]  # (N, D, b) reference logits
        logp = apo.gather_logp(pol, y[..., None]).squeeze(-1)  # (N, D) log pi_theta(y_t)
        ref_logp = apo.gather_logp(ref, y[..., None]).squeeze(-1)  # (N, D) log pi_ref(y_t)
        topk_ids, ref_topk_logp = apo.topk_logp(ref, args.top_k)  # (N, D, K) each
        anchor_logp = apo.gather_logp(pol, topk_ids)  # (N, D, K) log pi_theta at anchors
        loss, m = apo.policy_loss(
            logp, logp.detach(), adv, mask, kind=method, ref_logp=ref_logp,
            anchor_logp=anchor_logp, ref_topk_logp=ref_topk_logp,
            anchor_is_sampled=topk_ids == y[..., None], beta=beta, lam=args.lam,
            kl_coef=args.kl_coef)
        opt.zero_grad()
        loss.backward()
        opt.step()
        clip_fracs.append(m["clip_frac"])
        if history is not None and (step % 10 == 9 or step == 0):
            with torch.no_grad():
                m = evaluate(tree, ref_logits + theta, ref_logits, correct, args.top_k)
            history.append((step + 1, m["pass@1"], m["pass@64"], m["coverage"]))
    return (ref_logits + theta).detach(), sum(clip_fracs) / len(clip_fracs)


# ---------------------------------------------------------------- negative squeezing, close up

SQUEEZE_LOGITS = [3.0, 2.0, 1.5, 0.5, 0.0, -0.5, -1.0, -1.5]  # one node: a peaked reference
SQUEEZE_WRONG = 1  # the token pushed down: the reference's second choice, inside the top-K


def squeeze(kind, beta, args, steps=40, lr=0.1):
    """Push one wrong token down again and again (A = -1, plain SGD on the logits) and
    record the probabilities: under GRPO the freed mass follows pi (rich get richer,
    APO_SPEC §2); APO's pull sends more of it to the reference's other top-K tokens, and
    once the anchors have gained enough that r~ = lam - beta * r_anchor drops below
    1 - clip_low, the clip stops the push altogether (Decision 1)."""
    logits = torch.tensor(SQUEEZE_LOGITS, requires_grad=True)  # (b,)
    ref_ids, ref_topk_logp = apo.topk_logp(logits.detach()[None, None], args.top_k)  # (1, 1, K)
    y = torch.tensor([[SQUEEZE_WRONG]])  # (N=1, T=1) the sampled wrong token
    probs = []
    for _ in range(steps):
        probs.append(torch.softmax(logits.detach(), -1))
        pol = logits[None, None]  # (1, 1, b)
        logp = apo.gather_logp(pol, y[..., None]).squeeze(-1)  # (1, 1)
        loss, _ = apo.policy_loss(
            logp, logp.detach(), torch.tensor([-1.0]), torch.ones(1, 1), kind=kind,
            anchor_logp=apo.gather_logp(pol, ref_ids), ref_topk_logp=ref_topk_logp,
            anchor_is_sampled=ref_ids == y[..., None], beta=beta, lam=args.lam)
        grad, = torch.autograd.grad(loss, logits)
        logits = (logits - lr * grad).detach().requires_grad_(True)
    probs = torch.stack(probs)  # (steps, b)
    in_topk = torch.zeros(len(SQUEEZE_LOGITS), dtype=torch.bool)
    in_topk[ref_ids.flatten()] = True
    groups = {"top-1 (dominant)": probs[:, 0],
              "other top-K anchors": probs[:, in_topk].sum(-1) - probs[:, 0] - probs[:, SQUEEZE_WRONG],
              "pushed wrong token": probs[:, SQUEEZE_WRONG],
              "tail (outside top-K)": probs[:, ~in_topk].sum(-1)}
    return {name: v.clamp_min(0.0).tolist() for name, v in groups.items()}  # clamp: -0.00


# ------------------------------------------------------------------------------ reporting

def run_all(args):
    """Every method on every seed; returns mean metrics and mean learning curves."""
    runs = [("base", None)] + [(m, None) for m in METHODS if m != "apo"]
    runs += [("apo", b) for b in args.betas]
    sums, curves = {}, {}
    for seed in range(args.seeds):
        tree, ref_logits, correct = make_world(args, seed)
        for method, beta in runs:
            name = method if beta is None or len(args.betas) == 1 else f"apo(beta={beta:g})"
            history = []
            final, clip_frac = (ref_logits, 0.0) if method == "base" else train(
                tree, ref_logits, correct, method, beta, args, seed, history)
            m = evaluate(tree, final, ref_logits, correct, args.top_k)
            m["clip_frac"] = clip_frac
            for key, v in m.items():
                sums.setdefault(name, {}).setdefault(key, 0.0)
                sums[name][key] += v / args.seeds
            if history:
                curves.setdefault(name, torch.zeros(len(history), 4))
                curves[name] += torch.tensor(history) / args.seeds
    return sums, {k: v.tolist() for k, v in curves.items()}


def print_table(results):
    cols = [f"pass@{k}" for k in KS] + ["coverage", "safe_mass", "clip_frac"]
    print(f"{'method':<16}" + "".join(f"{c:>10}" for c in cols))
    for name, m in results.items():
        print(f"{name:<16}" + "".join(f"{m[c]:>10.3f}" for c in cols))
    print("\npass@64 (exact, averaged over prompts and seeds)")
    for name, m in results.items():
        print(f"  {name:<16}{'#' * round(50 * m['pass@64']):<50} {m['pass@64']:.3f}")


def plot(results, curves, squeezes, args, path):
    import matplotlib
    matplotlib.use("Agg")  # no screen needed
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 4, figsize=(18, 4))
    color = {name: f"C{i}" for i, name in enumerate(results)}  # one colour per method everywhere
    for name, m in results.items():
        ax[0].plot(KS, [m[f"pass@{k}"] for k in KS], marker="o", label=name, color=color[name],
                   linestyle="--" if name == "base" else "-")
    ax[0].set(xscale="log", xlabel="k", ylabel="pass@k", title="pass@k after training (exact)")
    ax[0].set_xticks(KS, [str(k) for k in KS])
    for name, c in curves.items():
        c = torch.tensor(c)
        ax[1].plot(c[:, 0], c[:, 1], label=name, color=color[name])
        ax[1].plot(c[:, 0], c[:, 2], color=color[name], linestyle=":")
        ax[2].plot(c[:, 0], c[:, 3], label=name, color=color[name])
    ax[1].set(xlabel="step", ylabel="pass@1 (solid), pass@64 (dotted)", title="during training")
    ax[2].set(xlabel="step", ylabel=f"coverage (correct leaves with pi >= {COVERAGE_MIN_PROB})",
              title="coverage of correct leaves")
    for kind, style in (("grpo", "-"), ("apo", "--")):
        for (name, v), color in zip(squeezes[kind].items(), ("C0", "C2", "C3", "C7")):
            ax[3].plot(v, style, color=color, label=f"{kind}: {name}")
    ax[3].set(xlabel="times the wrong token was pushed down (SGD, lr 0.1)",
              ylabel="probability", title="one node: grpo (solid) vs apo (dashed)")
    for a in ax:
        a.legend(fontsize=7)
    fig.suptitle(f"Tree toy: P={args.prompts} prompts, b={args.branching}, D={args.depth}, "
                 f"G={args.group_size}, K={args.top_k}, beta={args.beta}, lam={args.lam}, "
                 f"{args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"figure: {path}")


def main(argv=None):
    t0 = time.time()
    args = parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give
    print(f"config: P={args.prompts} b={args.branching} D={args.depth} G={args.group_size} "
          f"steps={args.steps} lr={args.lr} K={args.top_k} beta={args.beta} lam={args.lam} "
          f"kl_coef={args.kl_coef} seeds={args.seeds}")
    if 0.1 not in args.betas:
        print("note: the paper's beta is 0.1; in this toy it gives a weak effect (README has the sweep)")
    results, curves = run_all(args)
    print_table(results)
    squeezes = {k: squeeze(k, args.betas[0], args) for k in ("grpo", "apo")}
    print(f"\nnegative squeezing at one node ({len(next(iter(squeezes['grpo'].values())))} pushes):")
    for kind, groups in squeezes.items():
        print(f"  {kind:<5}" + "  ".join(f"{n} {v[0]:.2f}->{v[-1]:.2f}" for n, v in groups.items()))
    seconds = time.time() - t0
    if not args.no_plot:
        plot(results, curves, squeezes, args, args.plot)
    if args.json:
        if len(args.betas) > 1:  # the JSON always has "apo": the first beta of a sweep
            results["apo"] = results[f"apo(beta={args.betas[0]:g})"]
        config = {k: v for k, v in vars(args).items() if k not in ("no_plot", "plot", "json")}
        with open(args.json, "w") as f:
            json.dump({"config": config, "seconds": seconds, "methods": results}, f, indent=2)
    print(f"seconds: {seconds:.1f}")
    return results


if __name__ == "__main__":
    main()
