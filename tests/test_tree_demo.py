"""The tree toy shows Recursive Space Contraction, and its comparison of methods is fair."""

import doctest
import json
import math

import pytest
import torch

from toy import tree_demo


def test_short_run_shows_grpo_collapse_and_apo_keeps_more_pass64(tmp_path):
    out = tmp_path / "toy.json"
    tree_demo.main(["--seeds", "1", "--steps", "120", "--no-plot", "--json", str(out)])
    r = json.loads(out.read_text())["methods"]
    assert r["grpo"]["pass@1"] > 1.5 * r["base"]["pass@1"]  # GRPO learns ...
    assert r["grpo"]["pass@64"] < r["base"]["pass@64"] - 0.03  # ... and loses pass@64
    assert r["apo"]["pass@64"] > r["grpo"]["pass@64"] + 0.03  # APO keeps more of it
    assert r["apo"]["pass@1"] > 1.5 * r["base"]["pass@1"]
    assert r["nsr"]["pass@64"] < r["grpo"]["pass@64"] - 0.1  # here negative-only updates collapse most,
    assert r["psr"]["pass@64"] > r["grpo"]["pass@64"]  # and positive-only ones least


def test_exact_pass_at_k_equals_enumeration_for_base():
    """pass@k from the toy equals 1-(1-p)^k with p summed leaf by leaf in a plain loop."""
    args = tree_demo.parse_args(["--prompts", "3", "--branching", "3", "--depth", "2", "--top-k", "2"])
    tree, ref_logits, correct = tree_demo.make_world(args, seed=0)
    m = tree_demo.evaluate(tree, ref_logits, ref_logits, correct, args.top_k)
    total = 0.0
    for p in range(3):
        prob = 0.0
        for a0 in range(3):
            for a1 in range(3):
                pa0 = ref_logits[p, 0].softmax(-1)[a0]
                pa1 = ref_logits[p, 1 + a0].softmax(-1)[a1]
                prob += (pa0 * pa1).item() * correct[p, a0 * 3 + a1].item()
        total += 1 - (1 - prob) ** 4
    assert abs(m["pass@4"] - total / 3) < 1e-6


def test_bad_flag_gives_a_clear_error(capsys):
    with pytest.raises(SystemExit) as e:
        tree_demo.parse_args(["--top-k", "0"])
    assert e.value.code == 2
    assert "--top-k must be between 1" in capsys.readouterr().err


ALL_FOUR = ["--branching", "3", "--depth", "2", "--top-k", "2", "--correct", "4"]  # every top-K path correct


@pytest.mark.parametrize("flags", [[], ALL_FOUR])
def test_each_prompt_has_exactly_correct_distinct_leaves_inside_the_reference_topk(flags):
    """Checked leaf by leaf in a loop. The second case marks all 4 top-K paths of a 3-ary, depth-2
    tree: drawing with replacement would almost surely mark fewer."""
    cfg = tree_demo.parse_args(flags)
    tree, ref_logits, correct = tree_demo.make_world(cfg, seed=0)
    top = ref_logits.topk(cfg.top_k, dim=-1).indices.tolist()  # (P, nodes, K)
    for p in range(cfg.prompts):
        leaves = correct[p].nonzero().flatten().tolist()
        assert len(leaves) == cfg.correct
        for leaf in leaves:
            node = 0
            for d in range(cfg.depth):
                a = leaf // cfg.branching ** (cfg.depth - 1 - d) % cfg.branching
                assert a in top[p][node]
                node = tree.child(node, d, a)


def test_tuning_and_report_seed_sets_are_disjoint(capsys):
    for seeds in ("1", "3", str(tree_demo.TUNING_SEED0 - tree_demo.REPORT_SEED0)):
        report, tuning = tree_demo.seed_sets(tree_demo.parse_args(["--seeds", seeds]))
        assert len(report) == len(tuning) == int(seeds) and not set(report) & set(tuning)
    with pytest.raises(SystemExit) as e:
        tree_demo.parse_args(["--seeds", str(tree_demo.TUNING_SEED0 - tree_demo.REPORT_SEED0 + 1)])
    assert e.value.code == 2 and "--seeds must be at most" in capsys.readouterr().err


def test_selection_rule_picks_the_hand_computed_setting():
    rows = [{"pass@1": 0.28, "pass@64": 0.70},   # 0.98  weakest setting, GRPO-like
            {"pass@1": 0.26, "pass@64": 0.81},   # 1.07  <- the largest sum
            {"pass@1": 0.21, "pass@64": 0.86},   # 1.07  tie: the weaker setting (above) wins
            {"pass@1": 0.10, "pass@64": 0.90}]   # 1.00  best pass@64 alone, not picked
    assert tree_demo.pick(rows) == 1
    assert tree_demo.pick(rows[2:]) == 0
    assert tree_demo.pick([{"pass@1": 0.3, "pass@64": 0.5}, {"pass@1": 0.2, "pass@64": 0.9}]) == 1


def test_frontier_tunes_on_tuning_seeds_only_and_picks_the_best_sum(monkeypatch):
    cfg = tree_demo.parse_args(["--prompts", "4", "--branching", "3", "--depth", "2", "--top-k", "2",
                                "--steps", "5", "--seeds", "2"])
    grids = {"grpo_kl": (0.01, 1.0), "apo": (0.05, 0.5)}
    seen, make_world = [], tree_demo.make_world
    monkeypatch.setattr(tree_demo, "make_world", lambda c, seed: seen.append(seed) or make_world(c, seed))
    tuning, report, picks = tree_demo.frontier(cfg, grids)
    report_seeds, tuning_seeds = tree_demo.seed_sets(cfg)
    assert seen == tuning_seeds + report_seeds  # tune first, on the tuning seeds; then report
    for method, grid in grids.items():  # by hand: mean over tuning seeds of pass@1 + pass@64
        sums = [sum((tuning[tree_demo.label(method, k)][c].sum().item() for c in ("pass@1", "pass@64")))
                / len(tuning_seeds) for k in grid]
        assert picks[method] == grid[sums.index(max(sums))]


def test_tuned_defaults_are_settings_of_their_grids():
    cfg = tree_demo.parse_args([])
    for method, grid in tree_demo.GRIDS.items():
        assert tree_demo.TUNED[method] in grid
        assert getattr(cfg, tree_demo.KNOB[method]) == tree_demo.TUNED[method]
    assert len({len(grid) for grid in tree_demo.GRIDS.values()}) == 1  # the same budget for every knob


def test_docstring_examples_run():
    assert doctest.testmod(tree_demo).failed == 0


SMALL_TRACE = ["--prompts", "8", "--steps", "25", "--trace-every", "10", "--seeds", "1"]


def test_trace_has_step_0_every_trace_every_steps_the_last_and_every_metric():
    cfg = tree_demo.parse_args(SMALL_TRACE)
    steps, per_seed = tree_demo.trace(cfg, [0], tree_demo.tuned_runs(cfg))
    assert steps == [0, 10, 20, 25]
    assert list(per_seed) == ["base", "grpo", "psr", "nsr", "grpo_kl", "kl_on_wrong", "apo"]
    for metrics in per_seed.values():
        assert set(metrics) == set(tree_demo.TRACE_METRICS)
        assert all(v.shape == (1, len(steps)) for v in metrics.values())  # (seeds, steps)


def test_at_step_0_every_method_equals_base():
    """Every method starts from the reference: same policy, same numbers, before any update."""
    cfg = tree_demo.parse_args(SMALL_TRACE + ["--seeds", "2"])
    _, per_seed = tree_demo.trace(cfg, [0, 1], tree_demo.tuned_runs(cfg))
    for name, metrics in per_seed.items():
        for key, v in metrics.items():
            assert torch.equal(v[:, 0], per_seed["base"][key][:, 0]), (name, key)
    assert (per_seed["base"]["rare_kept"] == 1).all()


def test_last_traced_step_is_the_trained_policy_of_the_default_run():
    """The trace records the policy after each update: its last column is what run_seeds evaluates."""
    cfg = tree_demo.parse_args(SMALL_TRACE)
    runs = tree_demo.tuned_runs(cfg)
    _, traced = tree_demo.trace(cfg, [0], runs)
    final = tree_demo.run_seeds(cfg, [0], runs)
    for name, _, _ in runs:
        for key in ("pass@64", "coverage"):
            assert traced[name][key][0, -1].item() == pytest.approx(final[name][key][0].item(), abs=1e-6)


def test_rare_metrics_match_a_leaf_by_leaf_loop():
    """rare_kept and rare_total of a perturbed policy, against a plain loop over paths and leaves."""
    cfg = tree_demo.parse_args(["--prompts", "4", "--branching", "3", "--depth", "2", "--top-k", "2",
                                "--correct", "3"])
    tree, ref_logits, correct = tree_demo.make_world(cfg, seed=0)
    logits = ref_logits + torch.randn(ref_logits.shape, generator=torch.Generator().manual_seed(1))
    m = tree_demo.trace_point(tree, logits, ref_logits, correct, cfg.top_k)
    log_ratios, total = [], 0.0
    for p in range(cfg.prompts):
        for a0 in range(3):
            for a1 in range(3):
                pi = (logits[p, 0].softmax(-1)[a0] * logits[p, 1 + a0].softmax(-1)[a1]).item()
                ref = (ref_logits[p, 0].softmax(-1)[a0] * ref_logits[p, 1 + a0].softmax(-1)[a1]).item()
                if correct[p, a0 * 3 + a1] and ref < tree_demo.RARE_MAX_PROB:
                    log_ratios.append(math.log(pi / ref))
                    total += pi / cfg.prompts
    assert 0 < len(log_ratios) < correct.sum().item()  # some correct leaves rare, some not: the mask matters
    assert m["rare_kept"] == pytest.approx(math.exp(sum(log_ratios) / len(log_ratios)), rel=1e-4)
    assert m["rare_total"] == pytest.approx(total, rel=1e-4)


def test_grpo_squeezes_the_rare_correct_leaves_step_after_step():
    """Recursive Space Contraction over time, on the default world (seed 0, 60 steps): under GRPO the
    typical rare correct leaf loses probability at every traced step, not only by the end."""
    cfg = tree_demo.parse_args(["--steps", "60", "--trace-every", "20"])
    steps, per_seed = tree_demo.trace(cfg, [0], [("grpo", "grpo", 0.0)])
    kept = per_seed["grpo"]["rare_kept"][0].tolist()  # (steps,) seed 0: 1.0, then ~0.60, 0.25, 0.19
    assert steps == [0, 20, 40, 60]
    assert all(later < earlier for earlier, later in zip(kept, kept[1:])), kept
    assert kept[-1] < 0.5 * kept[0]


def test_trace_writes_its_figure(tmp_path):
    png = tmp_path / "trace.png"
    tree_demo.main(SMALL_TRACE + ["--trace", "--trace-plot", str(png)])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_knobs_say_where_they_came_from():
    """With --seeds 10 the defaults were still picked on seeds 100-102; a knob given on the command
    line is named as such."""
    assert "tuning seeds [100, 101, 102]" in tree_demo.knob_source(tree_demo.parse_args(["--seeds", "10"]))
    assert "command line: apo beta=0.5" in tree_demo.knob_source(tree_demo.parse_args(["--beta", "0.5"]))
    assert "command line" not in tree_demo.knob_source(tree_demo.parse_args([]))
