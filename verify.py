"""The reward: find the final answer in a completion and check it against the reference.

APO (METHOD.md §1) trains on a binary verifiable reward R_i in {0, 1}: 1 when the final answer of
completion i is mathematically equivalent to the reference answer. This file is only that check (it
is also the evaluation grader); nothing in it knows about models or tensors.

    extract_answer(text)       the final answer as a string, or None: the string that is graded
    is_equivalent(pred, gold)  a normalised-string fast path, then math_verify (sympy)
    reward(completion, gold)   is_equivalent(extract_answer(completion), gold) as 1.0 or 0.0

Run it:  python verify.py "So the total is \\boxed{\\dfrac{1}{2}}." "0.5"
         python multi_gpu_and_dev/grader_compare.py  (against plain math_verify)

Every public function returns a value on any input (None, bytes, 10 MB of garbage); a comparison
spends at most `TIME_LIMIT_S` of CPU time, from the main thread, another thread or a worker process.

Which answer is graded: what math_verify's own patterns find, in their order, except for boxes:
"The final answer is X. I hope it is correct."; then the later of the last box and the last "final
answer ... is X"; then "Answer: X" or "answer ... X"; then the last $...$, \\(...\\), \\[...\\] or
number. A completion cut off inside its last box has no answer. Several answers: boxes with only
connectors between them (",", "and", "or", \\quad, \\text{and}, $, a label such as "y_2 =") are one
answer, contents joined by ", ", as math_verify joins "$1$, $2$ and $3$". A comma list is a set (MATH
asks to "enter all the solutions, separated by commas"): "3, 2" equals "2, 3", while (2, 1) stays an
ordered pair and [0, 1) an interval. Boxes with other words between them ("\\boxed{3}, then
\\boxed{5}") are a correction: the last counts. A hedge, "\\boxed{3} or \\boxed{4}", is the set {3, 4}.

Departures from plain math_verify, each kept because it grades better (multi_gpu_and_dev/grader_compare.py)
1. The final statement, not every box: math_verify merges all the boxes of a text into one set, so
   a corrected "\\boxed{3}. Wait, no: \\boxed{4}" is {3, 4} there and 4 here.
2. math_verify sees only the extracted answer, in \\boxed{}, so the logged answer is the graded one.
   Its patterns search the last MAX_TAIL_CHARS characters; boxes the whole text, in linear time.
3. A normalised-string fast path runs first, with the MATH conventions: "1 000" and "1\\,000" are
   1000 (math_verify: 1·000 = 0); "10 weeks", "5\\operatorname{cm}" are 10, 5 (math_verify: 10·w·e·e·k·s,
   unparsed); "2\\frac{1}{2}", "7 3/4" are mixed numbers (math_verify: 2·1/2 = 1); "32, 349" is a list.
4. One CPU-time limit for the comparison, not math_verify's wall-clock alarms (which raise outside
   the main thread): plumbing/time_limit.py (a re-armed SIGALRM timer in the main thread, a forked
   child from other threads, a wall-clock backstop). sympy's first-call costs (~0.5 s) are paid once
   per process outside the limit: a loaded machine makes a check slower, never a right answer 0.
5. Answers that would make sympy build astronomically large numbers (10^{10^{10}}, (10!)!, 5000
   digits, deep nesting) are compared as normalised strings only: C big-integer arithmetic cannot
   be interrupted. Legitimate towers such as e^{x^2} lose the sympy check too.
6. "7.5e-5" is 7.5×10^{-5}; powers of ten compare exactly (math_verify: 7.5·e − 5; 1×10^{-19} = 2×10^{-19}).
7. benchmark="minerva": a numeric gold is a measurement: "L = 3 \\times 10^8 m/s" is 3e8, within REL_TOL.
"""

import argparse
import logging
import re
from fractions import Fraction

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.parser import get_extraction_regexes

from plumbing import time_limit

TIME_LIMIT_S = 2.0  # CPU seconds for one comparison; warm checks of real answers take < 0.3 s
MAX_ANSWER_CHARS = 1000  # longer "answers" are rambling, not answers: reward 0 at once
MAX_TAIL_CHARS = 4000  # math_verify's patterns (cost ∝ length²) search this much of the end (worst ~0.12 s)
MAX_GAP_CHARS = 60  # the longest connector between two boxes of one answer
MAX_NESTING = 50  # deeper (([{ nesting only appears in garbage; sympy recursion is slow
MAX_DIGITS = 100  # longer digit runs: string comparison only (verify.py departure 5)
MAX_EXPONENT_DIGITS = 4  # 2^{2024} is a real competition answer; 9^{99999999} is not
BOX_PRIORITY = 50  # math_verify's rank for a box: with "final answer ... is", after "... I hope"
REL_TOL = {"minerva": 1e-4, "math-ai/minervamath": 1e-4}  # QwenLM/Qwen2.5-Math evaluation/grader.py


def extract_answer(text) -> str | None:
    """The final answer in a completion, or None; `reward` grades exactly this string.

    >>> extract_answer(r"The roots are \\boxed{-2} and \\boxed{1}.")
    '-2, 1'
    >>> extract_answer(r"\\boxed{12") is None  # cut off mid-box: no answer
    True
    """
    try:
        answer = _final_answer(_as_text(text))
        return answer if answer and len(answer) <= MAX_ANSWER_CHARS else None
    except Exception:  # a bug here must cost one reward, not the training run
        return None


def is_equivalent(pred, gold, timeout_s: float = TIME_LIMIT_S, benchmark: str | None = None) -> bool:
    """True when the predicted answer equals the gold answer (pred first, unlike math_verify).

    Cheapest test first: equal normalised strings, then exact rationals, then sympy through math_verify
    under a `timeout_s` CPU-time limit. Unparseable or too slow: False. `benchmark`: verify.py departure 7.

    >>> is_equivalent("0.5", r"\\dfrac{1}{2}"), is_equivalent("(0,1]", "[0,1]")
    (True, False)
    """
    try:
        pred, gold = [next(g for g in m.groups() if g is not None).strip() if m else s  # "$x$" is "x"
                      for s in (_as_text(pred), _as_text(gold)) for m in [_MATH_ENV_RE.fullmatch(s)]]
        if not pred or not gold or max(len(pred), len(gold)) > MAX_ANSWER_CHARS:
            return False
        pred_key, gold_key = _normalize(pred), _normalize(gold)
        if pred_key and pred_key == gold_key:
            return True
        gold_num, rel_tol = _as_fraction(gold_key), REL_TOL.get(benchmark, 0)
        if gold_num is not None and "e" in gold_key.lower():  # verify.py departure 6: 7.5e-5 is a number
            gold = str(gold_num)
        if rel_tol and gold_num is not None and (measured := _MEASURED_RE.fullmatch(pred)):  # departure 7
            pred, pred_key = measured[1], _normalize(measured[1])  # the value, without its unit
        pred_num = _as_fraction(pred_key)
        if pred_num is not None and gold_num is not None:
            if abs(pred_num - gold_num) <= Fraction(rel_tol) * max(abs(pred_num), abs(gold_num)):
                return True  # equal, or within a benchmark's tolerance
            if rel_tol or "." not in pred_key + gold_key or re.search(r"[eE^]", pred_key + gold_key):
                return False  # exact rationals, powers of ten (verify.py departure 6); decimals: sympy
        if not (_sympy_safe(pred) and _sympy_safe(gold)):
            return False
        time_limit.warm_up_once("sympy", _sympy_equal, WARM_UP)  # verify.py departure 4: first-call costs
        return time_limit.call(_sympy_equal, (pred, gold), timeout_s)  # False when it runs out of time
    except (Exception, time_limit.TimeUp):
        return False


def reward(completion, gold, benchmark: str | None = None) -> float:
    """1.0 if the completion's final answer is equivalent to gold, else 0.0 (`benchmark`: departure 7).

    >>> reward(r"\\boxed{1,000\\text{ cm}^2}", "1000"), reward(r"\\boxed{300 K}", "300", benchmark="minerva")
    (1.0, 1.0)
    """
    return 1.0 if is_equivalent(extract_answer(completion), gold, benchmark=benchmark) else 0.0


# ------------------------------------------------------------ how answers are found and compared

UNITS = ("units?|square units|cm|mm|km|meters?|metres?|inches|inch|feet|foot|ft|yards?|miles?|mph|degrees?|"
         "dollars?|cents?|hours?|minutes?|seconds?|days?|weeks?|years?|kg|grams?|pounds?")
WRAPPERS = "text|textnormal|textrm|textit|textbf|textsf|texttt|mbox|hbox|mathrm|mathit|mathbf|operatorname"
WARM_UP = [  # (pred, gold): one answer of each kind, so sympy imports and caches what they use
    ("x^2+2x+1", "(x+1)^2"), (r"\frac{1}{2}", "0.5"), (r"2\sqrt{3}+\pi", r"\sqrt{12}+\pi"), ("x=3", "3"),
    ("(0,1]", "[0,1)"), (r"\{1,2\}", "2, 1"), ("(1, 2)", "(2, 1)"), (r"50\%", "0.5"), ("1+2i", "i(2-i)"),
    (r"\sin^2 x+\cos^2 x", "1"), (r"x\le 3", r"(-\infty, 3]"), (r"\begin{pmatrix}1\\2\end{pmatrix}", "(1,2)")]
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_TOKEN_RE = re.compile(r"\\?[^\s${}\\]+")  # the argument of "\boxed 5": one token
_SPACES_RE = re.compile(r"\s*")
_BRACE_RE = re.compile(r"\\.|[{}]", re.DOTALL)
_GAP_RE = re.compile(  # what may stand between two boxes of one answer: \text{ for part (a) and }, "y_2 ="
    r"(?:\s|[,;&~]|\$|\\[()\[\]]|\\(?:q?quad|[,;:! ])|\b(?:and|or)\b|[A-Za-z]\w*(?:_\{?\w+\}?)?\s*="
    r"|\\(?:" + WRAPPERS + r")\s*\{(?:[\s,;]*|[^{}\n]{0,25}\b(?:and|or)\b[^{}\n]{0,25})\})*")  # fmt: skip
_WRAPPED_RE = re.compile(r"\\(?:" + WRAPPERS + r")\s*\{([^{}]*)\}")
_UNITS_RE = re.compile(  # a unit at the very end; the lookbehind keeps "ecm" or "x_cm" intact
    r"(?<=[\d\s}])(?:sq\.?\s*|square\s+)?(?:" + UNITS + r")(?:\^\{?[23]\}?)?\s*\.?\s*$")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:(?:,|\{,\}|,\\!|\\,|\\ |~| )\d{3})+(?:\.\d+)?")  # 1,000 1\,000
# Dropped from the key; a space between two digits stays ("1 2" is not 12).
_DROP_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\?%|\\?\$|\\[,;!: ]|~|(?<!\d)\s+|\s+(?!\d)")
_DECIMAL_RE = re.compile(r"(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d{1,4})?)(?:/(\d+))?")  # 0.5 1/2 1./3 4e-5
_POWER_RE = re.compile(r"(?:(-?(?:\d+\.?\d*|\.\d+))(?:\\times|\\cdot|×)|(-?))10\^\{?([-+]?\d{1,4})\}?")
_EXPONENT_RE = re.compile(r"(?:[eE]|\s*(?:\\times|\\cdot|×)\s*10\^|\^)\{?[-+]?\d{1,4}\}?(?!\w|\.\d)")
_MEASURED_RE = re.compile(  # value, unit; units dropped as in wellecks/lm-evaluation-harness ocw_courses.py
    r"(?:.*(?:=|\\approx))?\s*(-?(?:\d[\d,]*\.?\d*|\.\d+)(?:" + _EXPONENT_RE.pattern + r")?)"
    r"(?!\s*[ei]\W*$|\^\{?-?\d)((?:[^-\d\\^{}=+]|\\[,;:! ]|\\(?:cdot|AA|mu|Omega|circ|prime)\b"
    r"|\\(?:" + WRAPPERS + r")\{[^{}\d]*\}|\^\{?(?:[-+]?\d+|(?:\\circ|\\prime)+)\}?)*)")
_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}")
_BARE_FRAC_RE = re.compile(r"\\frac\s*(?:\{(\d+)\}|(\d))\s*(?:\{(\d+)\}|(\d))")  # \frac12, \frac1{72}
_MIXED_RE = re.compile(r"(-?)(\d+) ?(?:(\d+)/(\d+)|\\frac\{(\d+)\}\{(\d+)\})")  # 7 3/4, 2\frac{1}{2}
_MATH_ENV_RE = re.compile(r"\$\$?([^$]*)\$?\$|\\\((.*)\\\)|\\\[(.*)\\\]", re.DOTALL)
_HUGE_RE = re.compile("|".join([  # verify.py departure 5: each one a way to ask for a giant number
    r"\d{%d}" % (MAX_DIGITS + 1),  # a very long literal
    r"(?:\^|\*\*)\s*\{?\s*[-+]?\d{%d}" % (MAX_EXPONENT_DIGITS + 1),  # 9^{99999999}
    r"\^\s*(?:\{[^{}]*\}|\\[a-zA-Z]+|\w)\s*\^",  # a tower: 2^3^4 (but x^2y^2 is fine)
    r"\*\*\s*[\w.]+\s*\*\*",  # a tower in Python syntax: 10**10**10
    r"\d{5,}\s*[)}]*\s*!|!\s*[)}]*\s*!",  # 12345!, or a factorial of one: (10!)!
]))  # fmt: skip
# math_verify warns once that its own timeouts are off; ours replace them (verify.py departure 4).
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _answer_patterns() -> list[tuple[int, list[re.Pattern]]]:
    """math_verify's answer patterns but its box ones, as [(priority, patterns)], first first."""
    by_priority = {BOX_PRIORITY: []}
    configs = [LatexExtractionConfig(boxed_match_priority=-1), ExprExtractionConfig()]
    for patterns, _ in get_extraction_regexes(configs):
        for pattern, priority in patterns:
            by_priority.setdefault(priority, []).append(pattern)
    return sorted(by_priority.items())


_PATTERNS = _answer_patterns()


def _as_text(x) -> str:
    """Strings, and ints and floats as their decimal text (a gold of 12), stripped; anything else ""."""
    number = isinstance(x, (int, float)) and not isinstance(x, bool)
    return x.strip() if isinstance(x, str) else str(x) if number else ""


def _box_at(text: str, box: re.Match) -> tuple[str, int] | None:
    """(content, end) of the box whose command `box` matched; None if it does not close in time."""
    i = _SPACES_RE.match(text, box.end()).end()
    if i < len(text) and text[i] != "{":  # "\boxed 5": TeX takes one token as the argument
        token = _TOKEN_RE.match(text, i)
        return (token.group().rstrip("."), token.end()) if token else None
    depth = 0
    for brace in _BRACE_RE.finditer(text, i, i + MAX_ANSWER_CHARS + 2):  # bounded: 10 MB of "{" is fast
        depth += {"{": 1, "}": -1}.get(brace.group(), 0)  # \{ and \} (a set's braces) do not count
        if depth == 0:
            return text[i + 1 : brace.start()], brace.end()
    return None


def _final_boxes(text: str) -> tuple[str, int] | None:
    """(answer, end) of the last box and the boxes chained to it by connectors only;
    ("", -1) when the last box is cut off or empty, None when there is no box."""
    last = max(_BOX_RE.finditer(text), key=re.Match.start, default=None)  # one linear pass, even over MBs
    found = _box_at(text, last) if last else None
    if last is None or found is None or not found[0].strip():
        return None if last is None else ("", -1)
    contents, start, end = [found[0].strip()], last.start(), found[1]
    while True:  # walk back over the boxes joined to this one
        window = max(0, start - MAX_GAP_CHARS - MAX_ANSWER_CHARS - 10), start
        prev = max(_BOX_RE.finditer(text, *window), key=re.Match.start, default=None)
        found = _box_at(text, prev) if prev else None
        if not (found and found[0].strip() and 0 <= start - found[1] <= MAX_GAP_CHARS
                and _GAP_RE.fullmatch(text, found[1], start)):
            break  # no box before, an empty one, one holding this one, too far, or words between
        contents.insert(0, found[0].strip())
        start = prev.start()
    return ", ".join(contents), end


def _match_answer(match: re.Match) -> str:
    """The answer that a math_verify pattern matched, as a string."""
    groups = {name: value for name, value in match.groupdict().items() if value}
    parts = []
    for prefix in ["first_"] + [f"next{i}_" for i in range(1, 6)]:  # "$1$, $2$ and $3$"
        latex = next((v for k, v in groups.items() if k.startswith(prefix + "latex")), None)
        if latex is not None:
            boxed = _final_boxes(latex) if _BOX_RE.search(latex) else None
            part = (boxed[0] if boxed else latex).strip()
            parts.append(part + "\\%" if part and groups.get(prefix + "percent") else part)
    if parts:
        return ", ".join(part for part in parts if part)
    if "expr" in groups:  # "2/3", "(9+1)"; not a trailing "." nor the "**" of markdown bold
        expr = groups["expr"].strip().rstrip(".*+-/^×÷ ")
        return expr.strip("()") if expr.count("(") != expr.count(")") else expr
    integer = next((v for k, v in groups.items() if k.startswith("integer")), "")
    decimal = next((v for k, v in groups.items() if k.startswith("decimal")), "")
    digits = re.sub(r"\D", "", integer).lstrip("0") or "0"  # as math_verify reads it: "1 000" is 1000
    number = ("-" if integer.startswith("-") else "") + digits + decimal.replace(",", ".")
    exponent = _EXPONENT_RE.match(match.string, match.end())  # verify.py departure 6: "4.5e33" is one number
    return number + (exponent.group() if exponent else "") + ("\\%" if groups.get("percent") else "")


def _final_answer(text: str) -> str | None:
    """Module docstring, "Which answer is graded": math_verify's order, our boxes, the text's tail."""
    boxed = _final_boxes(text)
    if boxed and boxed[1] < 0:
        return None  # cut off inside the last box
    offset = max(0, len(text) - MAX_TAIL_CHARS)
    tail = text[offset:]
    for priority, patterns in _PATTERNS:
        candidates = [(m.end() + offset, offset - m.start(), m) for p in patterns for m in p.finditer(tail)]
        if boxed and priority == BOX_PRIORITY:
            candidates.append((boxed[1], 0, None))  # None: the box; it wins a tie
        for _, _, match in sorted(candidates, key=lambda c: c[:2], reverse=True):  # the last one first
            answer = boxed[0] if match is None else _match_answer(match)
            if answer:
                return answer
    return None


def _normalize(s: str) -> str:
    """A comparison key: equal keys mean equal answers; unequal keys prove nothing."""
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    s = _BARE_FRAC_RE.sub(lambda m: f"\\frac{{{m[1] or m[2]}}}{{{m[3] or m[4]}}}", s)
    s = re.sub(r"\s+", " ", _WRAPPED_RE.sub(r" \1", s)).strip()  # "5\textnormal{ cm}": "5 cm"
    s = _UNITS_RE.sub("", s).strip()
    if _THOUSANDS_RE.fullmatch(s):  # while spaces are there: "1 000" is a number, "32, 349" a list
        s = re.sub(r"[^\d.-]", "", s)
    return _DROP_RE.sub("", s).replace("{,}", ",").rstrip(".")


def _as_fraction(key: str) -> Fraction | None:
    """A normalised key as an exact rational if it is a plain number: 0.5, 1/2, \\frac{1}{2}, 7 3/4, 4e-5."""
    try:
        power = _POWER_RE.fullmatch(key)  # 4\times10^{-5}, 10^{-5}: 4e-5, 1e-5
        m = _DECIMAL_RE.fullmatch(f"{power[1] or power[2] + '1'}e{power[3]}" if power else key)
        if m:
            return Fraction(m[1]) / int(m[2] or 1)
        m = _FRAC_RE.fullmatch(key)
        if m:
            return Fraction(int(m[2]), int(m[3])) * (-1 if m[1] else 1)
        m = _MIXED_RE.fullmatch(key)  # a mixed number, if its fraction is proper (verify.py departure 3)
        if m and int(m[3] or m[5]) < int(m[4] or m[6]):
            return (int(m[2]) + Fraction(int(m[3] or m[5]), int(m[4] or m[6]))) * (-1 if m[1] else 1)
    except (ValueError, ZeroDivisionError):
        pass
    return None


def _sympy_safe(s: str) -> bool:
    """verify.py departure 5: False where sympy would be asked to build an astronomically large number: deep
    nesting, a ^ inside an exponent's braces (10^{10^{10}}, 2^{\\frac{1}{2^{1000}}}), or _HUGE_RE."""
    depth = deepest = open_exponents = 0
    braces, previous = [], ""  # braces: one flag per open "{", True if it opens an exponent
    for c in s:
        if c == "{":
            braces.append(previous == "^")
            open_exponents += braces[-1]
        elif c == "}" and braces:
            open_exponents -= braces.pop()
        elif c == "^" and open_exponents:
            return False
        depth = depth + 1 if c in "([{" else max(depth - 1, 0) if c in ")]}" else depth
        deepest, previous = max(deepest, depth), c if not c.isspace() else previous
    return deepest <= MAX_NESTING and not _HUGE_RE.search(s)


def _sympy_equal(pred: str, gold: str) -> bool:
    """math_verify on the two answers; its timeouts are off because ours wrap this call."""
    gold_parsed, pred_parsed = (parse("\\boxed{" + s + "}", parsing_timeout=None) for s in (gold, pred))
    return bool(gold_parsed and pred_parsed and verify(gold_parsed, pred_parsed, timeout_seconds=None))


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="Extract the final answer and score it.")
    cli.add_argument("completion", help='model output, e.g. "so it is \\boxed{42}."')
    cli.add_argument("gold", help='reference answer, e.g. "42" or "\\frac{1}{2}"')
    cli.add_argument("--benchmark", help='the rules of one benchmark: "minerva" (verify.py departure 7)')
    a = cli.parse_args()
    print(f"answer: {extract_answer(a.completion)!r}\nreward: {reward(a.completion, a.gold, a.benchmark)}")
