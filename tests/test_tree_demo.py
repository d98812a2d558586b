"""The tree toy shows Recursive Space Contraction and APO's recovery on a short run."""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "toy"))
import tree_demo  # noqa: E402


def test_short_run_shows_grpo_collapse_and_apo_keeps_more_pass64(tmp_path):
    out = tmp_path / "toy.json"
    tree_demo.main(["--seeds", "1", "--steps", "120", "--no-plot", "--json", str(out)])
    r = json.loads(out.read_text())["methods"]
    assert r["grpo"]["pass@1"] > 1.5 * r["base"]["pass@1"]  # GRPO learns ...
    assert r["grpo"]["pass@64"] < r["base"]["pass@64"] - 0.03  # ... and loses pass@64
    assert r["apo"]["pass@64"] > r["grpo"]["pass@64"] + 0.03  # APO keeps more of it
    assert r["apo"]["pass@1"] > 1.5 * r["base"]["pass@1"]


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
    import pytest
    with pytest.raises(SystemExit) as e:
        tree_demo.parse_args(["--top-k", "0"])
    assert e.value.code == 2
    assert "--top-k must be between 1" in capsys.readouterr().err
