"""The import layers, read from the source with `ast` (imports inside functions count).

The top level holds the five concept files a course reads; engineering lives in `plumbing/`, the
TRL integration and the developer scripts in `multi_gpu_and_dev/`. From the bottom:
- the objective (apo) imports nothing of the project; the grader (verify) only its time limit;
- a concept file imports only plumbing and the concept files below it: apo, verify < rollout <
  train, eval; the entry points also import the tiny-LM builder in toy/ for `--model tiny`;
- plumbing imports plumbing, the objective and the grader, and the arithmetic task of toy/
  (`--dataset arith`); only the memory estimate, which measures rollout's forward pass, imports rollout;
- toy/, exercises/ and multi_gpu_and_dev/ import what they need; nothing but tests/ imports tests/,
  nothing imports train.py. No import cycles. `sys.path` is patched only by scripts that are run as
  `python toy/x.py` (or multi_gpu_and_dev/x.py, exercises/), and only to put the repository root on it.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONCEPT_RANK = {"apo": 0, "verify": 0, "rollout": 1, "train": 2, "eval": 2}  # may import lower ranks only
TOP_LEVEL_ALLOWED = set(CONCEPT_RANK)  # the only .py files at the top level
GRADER_PLUMBING = {"plumbing.time_limit", "plumbing"}  # what verify may import
PLUMBING_ALSO = {"apo", "verify", "toy.tasks", "toy"}  # below plumbing, or data plumbing serves
MEASURES_ROLLOUT = {"plumbing.memory"}  # the memory estimate runs rollout's forward pass
TINY_LM_BUILDER = {"toy.tiny_lm", "toy.random_qwen2", "toy"}  # what --model tiny needs
SCRIPT_DIRS = ("toy", "multi_gpu_and_dev", "exercises")  # scripts run as `python DIR/x.py` may patch sys.path
MAX_LINES = 400  # a file a student reads top to bottom stays short


def project_files():
    skip = {".venv", ".git", "runs", "outputs", ".cache"}
    return sorted(p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts))


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules():
    return {module_name(p): p for p in project_files()}


def imports_of(path, modules, self_name=None):
    """Project modules imported anywhere in `path` (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            groups = [[a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            groups = [[f"{node.module}.{a.name}", node.module] for a in node.names]  # `from toy import x`
        else:
            continue
        for candidates in groups:  # the most specific project module named, else its top package
            match = next((c for c in candidates if c in modules), None)
            top = candidates[-1].split(".")[0]
            if match or top in modules or top == "tests":
                found.add(match or top)
    return found - {self_name}


GRAPH = {name: imports_of(path, project_modules(), name) for name, path in project_modules().items()}


def plumbing_modules():
    return sorted(m for m in GRAPH if m.startswith("plumbing."))


def test_the_top_level_holds_only_the_concept_files():
    top = {p.stem for p in ROOT.glob("*.py")}
    assert top == TOP_LEVEL_ALLOWED, f"top-level .py files: {sorted(top)}"


def test_the_objective_imports_nothing_of_the_project():
    assert GRAPH["apo"] == set(), f"apo imports {GRAPH['apo']}"


def test_the_grader_imports_only_its_time_limit():
    assert GRAPH["verify"] <= GRADER_PLUMBING, f"verify imports {GRAPH['verify'] - GRADER_PLUMBING}"


@pytest.mark.parametrize("module", sorted(CONCEPT_RANK))
def test_concept_files_import_plumbing_and_lower_concept_files_only(module):
    lower = {m for m, rank in CONCEPT_RANK.items() if rank < CONCEPT_RANK[module]}
    allowed = lower | {"plumbing"} | set(plumbing_modules())
    if module in ("train", "eval"):
        allowed |= TINY_LM_BUILDER
    assert GRAPH[module] <= allowed, f"{module} imports {GRAPH[module] - allowed}"


@pytest.mark.parametrize("module", plumbing_modules())
def test_plumbing_imports_plumbing_and_what_lies_below(module):
    allowed = {"plumbing"} | set(plumbing_modules()) | PLUMBING_ALSO
    if module in MEASURES_ROLLOUT:
        allowed |= {"rollout"}
    assert GRAPH[module] <= allowed, f"{module} imports {GRAPH[module] - allowed}"


def test_nothing_outside_tests_imports_tests_or_train():
    for name, deps in GRAPH.items():
        if not name.startswith("tests"):
            assert not any(d == "tests" or d.startswith("tests.") for d in deps), f"{name} imports tests/"
            assert "train" not in deps, f"{name} imports train.py (nothing imports the training loop)"


def test_no_import_cycles():
    state, stack = {}, []

    def visit(node):  # depth-first search; a grey node met again closes a cycle
        state[node] = "grey"
        stack.append(node)
        for dep in sorted(GRAPH.get(node, ())):
            if state.get(dep) == "grey":
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "black"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


def _patches_sys_path(path):
    for node in ast.walk(ast.parse(path.read_text())):
        is_sys = getattr(getattr(node, "value", None), "id", None) == "sys"
        if isinstance(node, ast.Attribute) and node.attr == "path" and is_sys:
            return True
    return False


def test_sys_path_is_patched_only_by_scripts():
    for path in project_files():
        rel = path.relative_to(ROOT)
        if _patches_sys_path(path):
            assert rel.parts[0] in SCRIPT_DIRS and "__main__" in path.read_text(), f"{rel} patches sys.path"


def test_the_layout_test_sees_a_cycle_and_a_tests_import(tmp_path):
    """The checks above are not vacuous: they find what they look for in a planted example."""
    (tmp_path / "tests").mkdir()
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    import b\n")  # a lazy import counts
    b.write_text("from a import f\nfrom tests.helper import x\n")
    modules = {"a": a, "b": b, "tests.helper": tmp_path / "tests" / "helper.py"}
    assert imports_of(a, modules) == {"b"}
    assert imports_of(b, modules) == {"a", "tests.helper"}


def test_no_python_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in project_files()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"
