"""Watching a run: the line train.py prints for every step, and the training curves of one or more
runs, drawn from their metrics.jsonl; also eval.py's pass@k figure (`draw_pass_at_k`).

    python -m plumbing.curves runs/apo                          # writes runs/apo/curves.png
    python -m plumbing.curves runs/apo runs/grpo -o cmp.png     # several runs overlaid, one colour each

train.py calls `refresh(OUT)` at every checkpoint and at the end, so OUT/curves.png follows a
long run a person watches; this script redraws it for a finished or a running run (a
half-written last line is skipped; when a step was logged twice, the later line wins).
Panels, each drawn when some run logged it (keys defined in README "Metrics"): reward, pass@G,
response length, entropy, clip_frac, safe_mass, r_anchor, KL and held-out pass@1. The TRL
example's metrics.jsonl is read too: its key names are mapped onto ours (ALIASES).

Departures: none (the paper, METHOD.md, shows reward, entropy and pass@k curves; these are ours).
"""

import argparse
import json
import math
import os
import re
import sys

FILE = "curves.png"
PANELS = (  # (metrics key, panel title)
    ("reward_mean", "reward (mean of the step's samples)"),
    ("pass@G", "pass@G (a group has a correct sample)"),
    ("response_len", "response length (tokens)"),
    ("entropy", "entropy of the policy (nats/token)"),
    ("clip_frac", "clip_frac (tokens clipped)"),
    ("safe_mass", "safe_mass (policy mass on ref top-K)"),
    ("r_anchor", "r_anchor (APO anchor ratio)"),
    ("kl", "KL to the reference (k3)"),
    ("heldout_pass@1", "held-out pass@1 (--eval-every)"),
)
ALIASES = {"reward": "reward_mean", "completions/mean_length": "response_len"}  # the TRL example's names
PASS_AT_G = re.compile(r"pass@(\d+)")  # pass@G, G the group size; pass@1 is the reward itself
LINE_STYLES = ("-", "--", ":", "-.")  # eval.py --compare: one per run
SMOOTH_POINTS = 25  # above this many steps, a moving average over 1/SMOOTH_POINTS of them is drawn too


def step_line(m, loss, steps, group_size, tail_chars=300):
    """The fixed-format line of one step (keys in README "Metrics"), then its sample when it has one:
    the completion's last `tail_chars` characters, where the answer is."""
    nan = float("nan")
    extra = {"apo": f"safe {m.get('safe_mass', nan):.3f} r_anc {m.get('r_anchor', nan):.3f}",
             "grpo_kl": f"kl {m.get('kl', nan):.4f}", "kl_on_wrong": f"kl {m.get('kl', nan):.4f}",
             }.get(loss, "-")
    line = (f"step {m['step']:>4}/{steps} | reward {m['reward_mean']:.3f} | pass@{group_size} "
            f"{m[f'pass@{group_size}']:.2f} | zero_std {m['zero_std_frac']:.2f} | len "
            f"{m['response_len']:6.1f} | trunc {m['truncated_frac']:.2f} | ent {m['entropy']:.3f} | "
            f"clip {m['clip_frac']:.3f} | {extra} | loss {m['loss']:+.4f} | {m['seconds']:.1f}s")
    if "sample" in m:
        s = m["sample"]
        line += (f"\n  sample (reward {s['reward']:.0f}, gold {s['answer']!r}): "
                 f"{s['completion'][-tail_chars:]!r}")
    return line


class CurvesError(ValueError):
    """Nothing to draw (no folder, no metrics.jsonl, no step logged); the message says which."""


def read_metrics(run):
    """The rows of a run's metrics.jsonl (`run` is its folder or the file), one per step, in
    step order, keys renamed by ALIASES and pass@G stored as "pass@G"."""
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise CurvesError(f"{path!r} does not exist; give a run folder that holds metrics.jsonl")
    by_step = {}
    with open(path, errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:  # a half-written last line, or a line cut by a crash
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                by_step[row["step"]] = _normalise(row)
    return [by_step[s] for s in sorted(by_step)]


def _normalise(row):
    out = {ALIASES.get(k, k): v for k, v in row.items()}
    for key, value in row.items():
        m = PASS_AT_G.fullmatch(key)
        if m and int(m.group(1)) > 1:
            out["pass@G"] = value
    return out


def series(rows, key):
    """(steps, values) where `key` holds a finite number."""
    points = [(r["step"], float(r[key])) for r in rows if isinstance(r.get(key), (int, float))
              and not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return [s for s, _ in points], [v for _, v in points]


def moving_average(values, width):
    """Trailing mean over `width` values (fewer at the start).

    >>> moving_average([1.0, 3.0, 5.0, 7.0], 2)
    [1.0, 2.0, 4.0, 6.0]
    """
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - width] if i >= width else 0.0)
        out.append(total / min(i + 1, width))
    return out


def run_labels(runs):
    """A run's folder name, or the path as given when two runs share a name."""
    names = [os.path.basename(os.path.normpath(r)) or r for r in runs]
    return [r if names.count(n) > 1 else n for r, n in zip(runs, names)]


def _plain(text):
    """`text` drawn as itself by matplotlib: a `$` would start LaTeX math (a file name can hold one)."""
    return str(text).replace("$", r"\$")


def draw(runs, path):
    """Draw the runs' curves into `path` (written atomically: a viewer never sees half a PNG)."""
    from matplotlib.figure import Figure  # heavy: only when drawing
    data = [(_plain(label), read_metrics(run)) for label, run in zip(run_labels(runs), runs)]
    panels = [(key, title) for key, title in PANELS if any(series(rows, key)[0] for _, rows in data)]
    if not panels:
        raise CurvesError(f"no step is logged yet in {', '.join(map(repr, runs))}; try after the first step")
    cols = min(3, len(panels))
    fig = Figure(figsize=(4.4 * cols, 3.0 * math.ceil(len(panels) / cols)))
    axes = fig.subplots(math.ceil(len(panels) / cols), cols, squeeze=False).flatten()
    for ax, (key, title) in zip(axes, panels):
        for i, (label, rows) in enumerate(data):
            steps, values = series(rows, key)
            width = len(values) // SMOOTH_POINTS
            ax.plot(steps, values, color=f"C{i % 10}", alpha=0.35 if width > 1 else 1.0, lw=1,
                    marker="o" if len(values) < 30 else None, ms=3, label=None if width > 1 else label)
            if width > 1:
                ax.plot(steps, moving_average(values, width), color=f"C{i % 10}", lw=2, label=label)
        ax.set(title=title, xlabel="step")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    if len(data) > 1:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp"
    fig.savefig(tmp, format=os.path.splitext(path)[1][1:] or "png", dpi=100)
    os.replace(tmp, path)
    return path


def refresh(out, say=print):
    """Redraw OUT/curves.png for train.py; a failure is reported in one line, never raised (a plot
    must not stop a training run)."""
    try:
        draw([out], os.path.join(out, FILE))
    except Exception as e:
        say(f"note: could not draw {os.path.join(out, FILE)} ({type(e).__name__}: {str(e)[:120]})")


# ----------------------------------------------------------------------- eval.py's pass@k

def pass_at_k_problem(benchmarks):
    """What is wrong with a results.json's benchmarks for draw_pass_at_k, or None: each is a dict whose
    pass@K entries (K >= 1) are numbers in [0, 1], and one pass@K at least is there."""
    found = 0
    for name, r in benchmarks.items():
        if not isinstance(r, dict):
            return f"benchmark {name!r} is not a table of pass@k"
        for key, value in r.items():
            if not key.startswith("pass@"):
                continue
            if not re.fullmatch(r"pass@[1-9][0-9]*", key, re.ASCII):
                return f"{name} has a key {key!r}, where pass@K needs a whole K >= 1"
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                return f"{name} {key} is {value!r}, not a number in [0, 1]"
            found += 1
    return None if found else "it holds no pass@k value"


def draw_pass_at_k(runs, path):
    """eval.py's figure: pass@k against k (log2 axis) of (label, results.json) runs, one colour per
    benchmark, one line style per run."""
    from matplotlib.figure import Figure  # heavy: only when drawing
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    names = list(dict.fromkeys(name for _, res in runs for name in res["benchmarks"]))
    all_ks = set()
    for m, (label, res) in enumerate(runs):
        for name, r in res["benchmarks"].items():
            ks = sorted(int(key[5:]) for key in r if key.startswith("pass@"))
            all_ks.update(ks)
            ax.plot(ks, [r[f"pass@{k}"] for k in ks], marker="o", color=f"C{names.index(name) % 10}",
                    linestyle=LINE_STYLES[m % len(LINE_STYLES)],
                    label=_plain(name if len(runs) == 1 else f"{label} · {name}"))
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])
    title = runs[0][0] if len(runs) == 1 else f"{len(runs)} runs: colour = benchmark, line style = run"
    ax.set(xlabel="k (samples)", ylabel="pass@k", ylim=(-0.02, 1.02), title=_plain(title))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)



def main(argv=None):
    """The CLI; returns the exit code (2 with one `error: ...` line when there is nothing to draw)."""
    ap = argparse.ArgumentParser(prog="python -m plumbing.curves",
                                 description="Draw training curves from runs' metrics.jsonl.")
    ap.add_argument("runs", nargs="+", help="run folders (the --out of train.py) or metrics.jsonl files")
    ap.add_argument("-o", "--out", default=None,
                    help=f"image path; default RUN/{FILE} for one run, ./{FILE} for several")
    a = ap.parse_args(argv)
    one = a.runs[0] if os.path.isdir(a.runs[0]) else os.path.dirname(a.runs[0])  # a file: its folder
    path = a.out or (os.path.join(one, FILE) if len(a.runs) == 1 else FILE)
    try:
        draw(a.runs, path)
    except (CurvesError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
