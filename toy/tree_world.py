"""The world of the tree toy (toy/tree_demo.py): a tree of tokens, its prompts' correct leaves, and
exact evaluation by enumerating every leaf.

A completion is a path of D tokens (b actions each) to one of b**D leaves. Each of P prompts marks
`correct` distinct leaves correct, all on paths through the reference's top-K at every node (the safe
manifold, METHOD.md §3). The reference (the "pretrained model") is logits(p, node) = base(node) +
prompt(p, node), fixed random tables; tree_demo.py trains a table theta(node) shared by every prompt.
"""

import torch

KS = (1, 4, 16, 64)
COVERAGE_MIN_PROB = 0.01  # leaf "covered" if pi >= 1 %: 64 draws then find it >= 47 % of the time


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
    # safe_mass: the safe-manifold mass at the D nodes of a path, averaged over levels, expected over paths
    out["safe_mass"] = (leaf_p * mass[:, tree.nodes].mean(-1)).sum(-1).mean().item()
    return out


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
