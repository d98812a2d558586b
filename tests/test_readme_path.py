"""The README's "Start here" table stays true: every line range covers exactly the functions it names.

A row reads `[`FILE` lines A-B](FILE#LA-LB): `name`, `name`, ...`. Each named function or class of
FILE must lie inside A-B, every public top-level definition inside A-B must be named (a range may not
quietly grow to cover more), B must be the last line of the last one named, and the minutes and the
line count the README states must be the sums of the table's own rows.
"""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
ROW_RE = re.compile(r"^\| (\d+) \| (.*?) \| (.*?) \| (\d+) \|$", re.M)
RANGE_RE = re.compile(r"\[`(\w+\.py)` lines (\d+)-(\d+)\]\(\1#L\2-L\3\)")
CORE = ("apo.py", "rollout.py", "train.py")  # the one-step core path whose lines the README counts


def start_here():
    section = README[README.index("## Start here"):README.index("## Files")]
    return section, ROW_RE.findall(section)


def definitions(path):
    """{name: (first line, last line)} of the top-level functions and classes, decorators included."""
    tree = ast.parse((ROOT / path).read_text())
    return {n.name: (min([n.lineno] + [d.lineno for d in n.decorator_list]), n.end_lineno)
            for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def code_rows():
    for _, read, _, _ in start_here()[1]:
        for path, a, b in RANGE_RE.findall(read):
            names = re.findall(r"`(\w+)`", read.split("):", 1)[1])
            yield path, int(a), int(b), names


def test_the_table_has_code_rows():
    rows = list(code_rows())
    assert len(rows) >= 6 and {path for path, *_ in rows} >= set(CORE)


@pytest.mark.parametrize("path, a, b, names", list(code_rows()), ids=lambda x: str(x))
def test_each_range_covers_exactly_the_functions_it_names(path, a, b, names):
    defs = definitions(path)
    missing = [n for n in names if n not in defs]
    assert not missing, f"{path} has no {missing}"
    outside = [n for n in names if not a <= defs[n][0] <= defs[n][1] <= b]
    assert not outside, f"{path} lines {a}-{b} do not hold {[(n, defs[n]) for n in outside]}"
    unnamed = [n for n, (s, e) in defs.items() if a <= s <= b and not n.startswith("_") and n not in names]
    assert not unnamed, f"{path} lines {a}-{b} also cover {unnamed}: name them or shrink the range"
    last = max(defs[n][1] for n in names)
    assert b == last, f"{path}: the range should end at line {last}, the end of the last function named"


def test_the_stated_totals_are_the_sums_of_the_rows():
    section, rows = start_here()
    minutes = sum(int(m) for *_, m in rows)
    assert 60 <= minutes <= 90, f"the path takes {minutes} minutes"
    assert f"about {minutes} minutes" in section
    core = {}
    for path, a, b, _ in code_rows():
        core[path] = core.get(path, 0) + b - a + 1
    lines = sum(core[p] for p in CORE)
    assert f"the code is {lines} lines of `apo.py`" in section, f"the core path is {lines} lines"


def test_the_check_sees_a_range_that_grew(tmp_path, monkeypatch):
    """Not vacuous: a range that covers an unnamed public function is caught."""
    (tmp_path / "m.py").write_text("def a():\n    pass\n\n\ndef b():\n    pass\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="also cover"):
        test_each_range_covers_exactly_the_functions_it_names("m.py", 1, 6, ["a"])
