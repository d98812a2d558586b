"""Math problems with reference answers, from a local file or the Hugging Face hub.

Shared by train.py (`--dataset`) and eval.py (`--benchmarks`). Every source becomes a list of
`{"problem": str, "answer": str}`. Try it:
    python data.py math500 --limit 3          (needs the hub)
    python data.py my_problems.jsonl --limit 3

Sources:
- a local `.jsonl`, `.json` or `.parquet` file;
- a benchmark name from BENCHMARKS (the usual hub copies of the five math benchmarks);
- `arith`: the synthetic arithmetic task of tasks.py (splits `train` and `test`);
- any other hub dataset id (`--split` picks the split).
Fields: the problem from `problem`, `question` or `prompt`; the answer from `answer` or
`final_answer` (a list keeps its first entry), else the last `\\boxed{}` of `solution`.

Departures: none from the paper, which does not name its data copies; the hub ids below are
the copies most RLVR papers evaluate on. MATH training problems default to levels 3-5 (the
usual one-GPU GRPO recipe for Qwen2.5-Math).
"""

import argparse
import os

import tasks
import verify

PROBLEM_FIELDS = ("problem", "question", "prompt")
ANSWER_FIELDS = ("answer", "final_answer")
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}
# name -> (hub id, config, split)
BENCHMARKS = {
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "aime24": ("HuggingFaceH4/aime_2024", None, "train"),
    "amc23": ("math-ai/amc23", None, "test"),
    "minerva": ("math-ai/minervamath", None, "test"),
    "olympiadbench": ("math-ai/olympiadbench", None, "test"),
}
MATH_TRAIN = "DigitalLearningGmbH/MATH-lighteval"  # MATH train split, with `level` and `solution`
SYNTHETIC = ("arith",)  # generated locally by tasks.py: splits "train" and "test"


class DataError(ValueError):
    """A dataset that cannot be used; the message says what to do."""


def load_rows(spec, split):
    """The raw rows (a datasets.Dataset) of a local file, benchmark name or hub id."""
    from datasets import disable_progress_bars, load_dataset  # heavy import: only when needed
    ext = os.path.splitext(spec)[1].lower()
    if ext in LOCAL_FORMATS or os.path.exists(spec):
        if not os.path.isfile(spec):
            raise DataError(f"dataset file {spec!r} does not exist; check the path")
        if ext not in LOCAL_FORMATS:
            raise DataError(f"dataset file {spec!r} must end in .jsonl, .json or .parquet")
        disable_progress_bars()  # a local file loads in a blink; its bar would only be noise
        try:
            return load_dataset(LOCAL_FORMATS[ext], data_files=spec, split="train")
        except Exception as e:  # a malformed file: say which and why, in one line
            raise DataError(f"could not read {spec!r} ({type(e).__name__}: {str(e)[:200]})") from None
    hub_id, config, default_split = BENCHMARKS.get(spec, (spec, None, "train"))
    try:
        return load_dataset(hub_id, config, split=split or default_split)
    except Exception as e:
        raise DataError(
            f"could not load dataset {hub_id!r} split {split or default_split!r} from the Hugging Face "
            f"hub ({type(e).__name__}); check the name and your connection, or pass a local "
            f".jsonl/.json/.parquet file") from None


def _as_answer(value):
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else str(value).strip()


def load_problems(spec, split=None, *, levels=None, limit=None):
    """`spec` (file, benchmark name or hub id) -> list of {"problem", "answer"} dicts.

    `levels` keeps rows whose `level` field ("Level 3" or 3) is in it, when the field exists.
    Rows whose answer cannot be found are dropped; if none is left, DataError.
    """
    if spec in SYNTHETIC:  # no download: tasks.py generates the problems
        return tasks.arith_problems(split or "test")[:limit]
    rows = load_rows(spec, split)
    columns = set(rows.column_names)
    p_field = next((name for name in PROBLEM_FIELDS if name in columns), None)
    a_field = next((name for name in ANSWER_FIELDS if name in columns), None)
    if p_field is None or (a_field is None and "solution" not in columns):
        raise DataError(
            f"dataset {spec!r} has fields {sorted(columns)}; it needs a problem field "
            f"({'/'.join(PROBLEM_FIELDS)}) and an answer field ({'/'.join(ANSWER_FIELDS)} or a "
            f"`solution` with a \\boxed{{}} answer)")
    out = []
    for row in rows:
        if levels and "level" in row and _level(row["level"]) not in levels:
            continue
        answer = _as_answer(row[a_field]) if a_field else verify.extract_answer(row["solution"] or "")
        if answer:
            out.append({"problem": str(row[p_field]), "answer": answer})
        if limit and len(out) >= limit:
            break
    if not out:
        raise DataError(f"dataset {spec!r} has no usable rows (after the level filter {levels})")
    return out


def _level(value):
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return int(digits) if digits else None


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Print a few problems of a dataset.")
    ap.add_argument("spec", help="a .jsonl/.json/.parquet file, a benchmark name or a hub id")
    ap.add_argument("--split", default=None, help="hub split (default: the benchmark's)")
    ap.add_argument("--limit", type=int, default=3, help="rows to print")
    a = ap.parse_args()
    try:
        for r in load_problems(a.spec, a.split, limit=a.limit):
            print(f"{r['problem'][:200]!r} -> {r['answer']!r}")
    except DataError as e:
        raise SystemExit(f"error: {e}")
