"""Math problems with reference answers, from a local file or the Hugging Face hub.

Shared by train.py (`--dataset`) and eval.py (`--benchmarks`). Every source becomes a list of
`{"problem": str, "answer": str}`. Try it:
    python -m plumbing.data math500 --limit 3          (needs the hub)
    python -m plumbing.data my_problems.jsonl --limit 3

Sources:
- a local `.jsonl`, `.json` or `.parquet` file;
- a benchmark name from BENCHMARKS (the usual hub copies of the five math benchmarks);
- `arith`: the synthetic arithmetic task of toy/tasks.py (splits `train`, `val` and `test`);
- any other hub dataset id (`--split` picks the split).
Fields: the problem from `problem`, `question` or `prompt`; the answer from `answer` or
`final_answer` (a list keeps its first usable entry; a gold written as `\\boxed{...}` is
unboxed), else the last `\\boxed{}` of `solution`.
Bad rows are dropped, never turned into text: a null or non-text problem (None would become the
prompt "None"), an answer that is null, empty (`\\boxed{}`), NaN, a bool or a dict; in a .jsonl
file, a line that is not a JSON object. One printed line counts them, with the bad lines'
numbers; only a file with no usable row is refused.

Departures: none from the paper, which does not name its data copies; the hub ids below are
the copies most RLVR papers evaluate on. MATH training problems default to levels 3-5 (the
usual one-GPU GRPO recipe for Qwen2.5-Math).
"""

import argparse
import json
import math
import os
import re
import sys
from collections import Counter

import verify
from toy import tasks

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
SYNTHETIC = ("arith",)  # generated locally by toy/tasks.py: splits "train", "val" and "test"
BOXED_GOLD = re.compile(r"\$?\s*\\boxed\s*\{(.*)\}\s*\$?", re.S)  # a whole gold answer in one \boxed{}
EMPTY_CHECK_BYTES = 1 << 16  # a file this short with only whitespace is reported as empty
NORMALIZE_SLACK = 4  # code points a tokenizer's normalizer may compose into one, plus a margin


class DataError(ValueError):
    """A dataset that cannot be used; the message says what to do."""


class Rows(list):
    """Rows of a local JSON file, as dicts; `column_names` as a datasets.Dataset has them."""

    @property
    def column_names(self):
        return sorted({key for row in self for key in row})


def load_rows(spec, split):
    """The raw rows of a local file, benchmark name or hub id: Rows for a .jsonl or .json file
    (read here, so that one bad line is dropped rather than failing the file), else a
    datasets.Dataset; both iterate over dicts and have `column_names`."""
    from datasets import disable_progress_bars, load_dataset  # heavy import: only when needed
    ext = os.path.splitext(spec)[1].lower()
    if ext in LOCAL_FORMATS or os.path.exists(spec):
        check_local_file(spec, ext)
        if LOCAL_FORMATS[ext] == "json":
            return read_json_rows(spec)
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


def read_json_rows(spec):
    """Rows of a JSON file: a list of objects, or one object per line (JSON lines). A line that is
    not a JSON object (or not UTF-8) is dropped and reported by its number; DataError when no
    line is one."""
    with open(spec, "rb") as f:
        raw = f.read()
    raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw  # a byte-order mark is not part of the JSON
    whole = _json_or_none(raw)
    if isinstance(whole, dict) and isinstance(whole.get("data"), list):  # {"data": [...]}, as datasets reads
        whole = whole["data"]
    if whole is not None:  # a whole-file JSON list, or one object
        lines, where = list(enumerate(whole if isinstance(whole, list) else [whole], 1)), "entry"
    else:  # JSON lines; only "\n" ends one (U+2028 may stand inside a JSON string)
        lines = [(n, _json_or_none(line)) for n, line in enumerate(raw.split(b"\n"), 1) if line.strip()]
        where = "line"
    good = Rows(row for _, row in lines if isinstance(row, dict))
    bad = [n for n, row in lines if not isinstance(row, dict)]
    if lines and not good:
        raise DataError(f"no {where} of {spec!r} is a JSON object with a problem and an answer "
                        f"({len(bad)} {where}s); give one object per line")
    if bad:
        print(f"note: {spec}: dropped {len(bad)} {where}{'s' if len(bad) > 1 else ''} that are not JSON "
              f"objects ({where} {', '.join(map(str, bad[:5]))}{', ...' if len(bad) > 5 else ''})")
    return good


def _json_or_none(raw):
    """The JSON value of UTF-8 bytes, or None when they are not one (bad UTF-8, bad JSON, too deep)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def check_local_file(spec, ext):
    """DataError, with the reason, unless `spec` is a non-empty .jsonl/.json/.parquet file."""
    if os.path.isdir(spec):
        raise DataError(f"dataset {spec!r} is a folder; give a .jsonl, .json or .parquet file")
    if not os.path.isfile(spec):
        raise DataError(f"dataset file {spec!r} does not exist; check the path")
    if ext not in LOCAL_FORMATS:
        raise DataError(f"dataset file {spec!r} must end in .jsonl, .json or .parquet")
    with open(spec, "rb") as f:
        head = f.read(EMPTY_CHECK_BYTES)
    if not head.strip() and os.path.getsize(spec) <= EMPTY_CHECK_BYTES:
        raise DataError(f"dataset file {spec!r} is empty; it needs one problem per line or row")


def _as_answer(value):
    """(answer text, None), or (None, why the row is dropped): text and finite numbers only.

    >>> _as_answer(" 42 "), _as_answer(7), _as_answer([None, "1/2", "0.5"]), _as_answer(True)[1]
    (('42', None), ('7', None), ('1/2', None), 'an answer that is not text or a number')
    >>> _as_answer("\\\\boxed{12}"), _as_answer("$\\\\boxed{ }$")
    (('12', None), (None, 'an empty answer'))
    >>> _as_answer("\\\\boxed{1} or \\\\boxed{2}")[0]  # not one box: kept as written
    '\\\\boxed{1} or \\\\boxed{2}'

    """
    if isinstance(value, (list, tuple)):  # some datasets list equivalent answers: the first usable one
        answers = [_as_answer(v) for v in value]
        return next((a for a in answers if a[0] is not None), answers[0] if answers else (None, "no answer"))
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "no answer"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):  # True, {"a": 1}, ...
        return None, "an answer that is not text or a number"
    if isinstance(value, float) and not math.isfinite(value):  # gold "nan" would reward \boxed{nan}
        return None, "a NaN or infinite answer"
    text = str(value).strip()
    boxed = BOXED_GOLD.fullmatch(text)
    if boxed and _balanced(boxed.group(1)):  # a gold written as a completion writes it: its content
        text = boxed.group(1).strip()
    if not text.strip("${} "):  # \boxed{}, $$, {}: no completion could ever match it
        return None, "an empty answer"
    return text, None


def _balanced(text):
    """Do the braces of `text` close in order (so that `{text}` is one group)?"""
    depth = 0
    for ch in text:
        depth += (ch == "{") - (ch == "}")
        if depth < 0:
            return False
    return depth == 0


def _as_problem(row, p_field, a_field, levels, max_chars):
    """({"problem", "answer"}, None) for a usable row, else (None, why it is dropped)."""
    if levels and "level" in row and _level(row["level"]) not in levels:
        return None, f"outside levels {sorted(levels)}"
    problem = row.get(p_field)  # a JSON line may lack a field the others have
    if not isinstance(problem, str) or not problem.strip():  # None would become the prompt "None"
        return None, "a missing or non-text problem"
    if max_chars and len(problem) > max_chars:
        return None, f"a problem longer than {max_chars} characters"
    if a_field:
        answer, why = _as_answer(row.get(a_field))
    else:
        solution = row.get("solution")
        answer = verify.extract_answer(solution) if isinstance(solution, str) else None
        why = None if answer else "no \\boxed{} answer in the solution"
    return ({"problem": problem, "answer": answer}, None) if answer else (None, why)


def load_problems(spec, split=None, *, levels=None, limit=None, max_chars=None):
    """`spec` (file, benchmark name or hub id) -> list of {"problem", "answer"} dicts.

    `levels` keeps rows whose `level` field ("Level 3" or 3) is in it, when the field exists.
    `max_chars` drops problems longer than that many characters (see prompt_char_bound).
    Rows with a missing or non-text problem, or no usable answer (null, NaN, true, a dict) are
    dropped, and one printed line counts them by reason; if none is left, DataError.
    """
    if limit is not None and limit < 1:
        raise DataError(f"the problem limit must be at least 1, got {limit}")
    if spec in SYNTHETIC:  # no download: toy/tasks.py generates the problems
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
    out, dropped, seen = [], Counter(), 0
    for row in rows:
        seen += 1
        problem, why = _as_problem(row, p_field, a_field, levels, max_chars)
        if problem is None:
            dropped[why] += 1
        else:
            out.append(problem)
        if limit and len(out) >= limit:
            break
    reasons = ", ".join(f"{n} with {why}" if not why.startswith("outside") else f"{n} {why}"
                        for why, n in dropped.most_common())
    if not out:
        raise DataError(f"dataset {spec!r} has no usable rows: all {seen} were dropped ({reasons})" if seen
                        else f"dataset {spec!r} has no rows")
    if dropped:
        print(f"note: {spec}: dropped {sum(dropped.values())} of {seen} rows ({reasons})")
    return out


def prompt_char_bound(tokenizer, max_tokens):
    """Characters above which a problem cannot fit in `max_tokens` prompt tokens, whatever its text.

    One token spells at most L characters, L the longest entry of the vocabulary (a byte-level
    BPE spells one byte per character, and a character is at least one byte), so a text needs at
    least chars / L tokens; NORMALIZE_SLACK covers a normalizer that composes up to 3 code points
    into one (Hangul jamo under NFC) before tokenizing. Problems above the bound are dropped
    before the tokenizer sees them: one 30 MB line took 11.8 GB and 110 s to tokenize.
    """
    longest = max(map(len, tokenizer.get_vocab()), default=1)
    return max_tokens * longest * NORMALIZE_SLACK


def _level(value):
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return int(digits) if digits else None


def main(argv=None):
    """Print a few problems; bad input ends with one `error: ...` line and exit code 2."""
    ap = argparse.ArgumentParser(prog="python -m plumbing.data", description="Print a few problems.")
    ap.add_argument("spec", help="a .jsonl/.json/.parquet file, a benchmark name or a hub id")
    ap.add_argument("--split", default=None, help="hub split (default: the benchmark's)")
    ap.add_argument("--limit", type=int, default=3, help="rows to print (at least 1)")
    a = ap.parse_args(argv)
    try:
        for r in load_problems(a.spec, a.split, limit=a.limit):
            print(f"{r['problem'][:200]!r} -> {r['answer']!r}")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
