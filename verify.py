"""The reward: pull the final answer out of a completion and check it against the reference.

APO (APO_SPEC.md §1) trains on a binary verifiable reward R_i in {0, 1}: 1 when the final
answer of completion i is mathematically equivalent to the reference answer. This file is only
that check; nothing in it knows about models or tensors.

    extract_answer(text)       the last \\boxed{...} (or \\fbox{...}, or \\boxed 5), else
                               the text after the last "answer is", else None
    is_equivalent(pred, gold)  a normalised-string fast path, then math_verify (sympy)
    reward(completion, gold)   1.0 or 0.0

Run it:  python verify.py "So the total is \\boxed{\\dfrac{1}{2}}." "0.5"
         python -m doctest verify.py -v

Every public function returns a value on any input (None, bytes, 10 MB of garbage) and spends
at most `TIME_LIMIT_S` on one check, from the main thread, another thread or a worker process.

Departures (from math_verify's own usage and from common graders)
-----------------------------------------------------------------
1. We extract the answer ourselves and hand math_verify only that answer, wrapped in
   \\boxed{}, never the whole completion: math_verify.parse searches free text with its own
   priorities and fallbacks (any $...$, any bare number), so the answer it grades could differ
   from the one `extract_answer` reports and a learner sees in the logs.
2. One time limit covers the whole check (two parses and the comparison) instead of
   math_verify's per-step whole-second alarms, which raise in any thread but the main one.
   Main thread: our own SIGALRM timer. Any other thread: the check runs in a forked child
   that is killed at the limit (~20 ms of fork overhead per check with torch loaded).
   Without fork and SIGALRM (Windows) the check runs without a limit.
3. Answers that make sympy build astronomically large numbers (10^{10^{10}}, (10!)!, 5000
   digits, 5000 nested brackets) are compared by normalised string only. Without this guard
   they would each burn the whole time limit, and big-integer arithmetic in C cannot be
   interrupted by the alarm until it returns. Legitimate towers such as e^{x^2} lose the
   sympy check too; they still match an identically written gold.
4. Units, degrees, %, $ and thousands separators are dropped before the string comparison,
   so "50\\%" matches "50" and "1,000 dollars" matches "1000" (the MATH-benchmark convention).
"""

import argparse
import logging
import os
import re
import select
import signal
import threading
from fractions import Fraction

from math_verify import parse, verify

TIME_LIMIT_S = 2.0  # real answers check in < 0.25 s; a stuck check costs at most this much
FORK_GRACE_S = 1.0  # extra wait for a forked child to start and report before we kill it
MAX_ANSWER_CHARS = 1000  # longer "answers" are rambling, not answers: reward 0 at once
MAX_NESTING = 50  # deeper (([{ nesting only appears in garbage; sympy recursion is slow
MAX_DIGITS = 100  # longer digit runs: string comparison only (departure 3)
MAX_EXPONENT_DIGITS = 4  # 2^{2024} is a real competition answer; 9^{99999999} is not
UNITS = (
    "units?", "square units", "cm", "mm", "km", "meters?", "metres?", "inches", "inch",
    "feet", "foot", "ft", "yards?", "miles?", "mph", "degrees?", "dollars?", "cents?",
    "hours?", "minutes?", "seconds?", "days?", "weeks?", "years?", "kg", "grams?", "pounds?",
)  # fmt: skip

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")
_TOKEN_RE = re.compile(r"\\?[^\s${}\\]+")  # the argument of "\boxed 5": one token
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is\b|:)\s*:?", re.IGNORECASE)
_TEXT_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
# A unit at the very end, bare or in \text{}; the lookbehind keeps "ecm" or "x_cm" intact.
_UNITS_RE = re.compile(
    r"(?<=[\d\s}])(?:\\(?:text|mbox|mathrm)\s*\{\s*)?(?:sq\.?\s*|square\s+)?(?:"
    + "|".join(UNITS) + r")(?:\^\{?[23]\}?)?\s*\}?\s*\.?\s*$"
)  # fmt: skip
_DROP_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\?%|\\?\$|\\[,;!: ]|~|\s+")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL_RE = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:/\d+)?")
_FRAC_RE = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}")
_HUGE_RE = re.compile(  # departure 3: each alternative is one way to ask for a giant number
    "|".join([
        r"\d{%d}" % (MAX_DIGITS + 1),  # a very long literal
        r"(?:\^|\*\*)\s*\{?\s*[-+]?\d{%d}" % (MAX_EXPONENT_DIGITS + 1),  # 9^{99999999}
        r"\^\s*\{[^{}]*\^",  # a tower: 10^{10^{10}}
        r"\^\s*(?:\{[^{}]*\}|\\[a-zA-Z]+|\w)\s*\^",  # a tower: 2^3^4 (but x^2y^2 is fine)
        r"\*\*\s*[\w.]+\s*\*\*",  # a tower in Python syntax: 10**10**10
        r"\d{5,}\s*[)}]*\s*!|!\s*[)}]*\s*!",  # 12345!, or a factorial of one: (10!)!
    ])
)  # fmt: skip

# math_verify warns once that its own timeouts are off; ours replace them (departure 2).
logging.getLogger("math_verify").setLevel(logging.ERROR)


class _TimeUp(BaseException):
    """Raised by our SIGALRM handler. A BaseException, so math_verify's and sympy's
    `except Exception` blocks cannot swallow it and carry on past the deadline."""


def _raise_time_up(signum, frame):
    raise _TimeUp


def _as_text(x) -> str | None:
    """Strings as they are, ints and floats as their decimal text (a gold of 12), else None."""
    if isinstance(x, str):
        return x
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return str(x)
    return None


def _braced(text: str, start: int) -> str | None:
    """The content of the {...} group opening at text[start], or None if it never closes."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c == "\\":  # \{ and \} are literal braces (sets), not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


def _last_match(pattern: re.Pattern, text: str) -> re.Match | None:
    last = None
    for last in pattern.finditer(text):  # one linear pass, even over megabytes
        pass
    return last


def _last_box(text: str) -> str | None:
    """Content of the last \\boxed / \\fbox; None if there is none or it is broken or empty."""
    last = _last_match(_BOX_RE, text)
    if last is None:
        return None
    i = last.end()
    while i < len(text) and text[i].isspace():
        i += 1
    if i < len(text) and text[i] == "{":
        content = _braced(text, i)
    elif i > last.end():  # "\boxed 5": TeX takes one token as the argument
        token = _TOKEN_RE.match(text, i)
        content = token.group().rstrip(".") if token else None
    else:
        content = None
    return (content or "").strip() or None


def _answer_is(text: str) -> str | None:
    """What follows the last "answer is" / "answer:", up to the end of that sentence."""
    last = _last_match(_ANSWER_IS_RE, text)
    if last is None:
        return None
    line = text[last.end() :].split("\n", 1)[0]
    line = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]  # "3.5" survives, "12. Then" not
    line = line.strip().strip("*").strip()  # markdown **bold**
    line = re.sub(r"^(?:\$+|\\\(|\\\[)|(?:\$+|\\\)|\\\])$", "", line).strip()
    return line.rstrip(".").strip() or None


def _normalize(s: str) -> str:
    """A comparison key: equal keys mean equal answers; unequal keys prove nothing."""
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = _TEXT_RE.sub(r"\1", s)
    s = _UNITS_RE.sub("", s.strip())
    s = _DROP_RE.sub("", s).replace("{,}", ",").rstrip(".")
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    return s


def _as_fraction(key: str) -> Fraction | None:
    """A normalised key as an exact rational if it is a plain number: 0.5, 1/2, \\frac{1}{2}."""
    try:
        if _DECIMAL_RE.fullmatch(key):  # no "1e999999999": Fraction would build that number
            return Fraction(key)
        m = _FRAC_RE.fullmatch(key)
        if m:
            return Fraction(int(m[2]), int(m[3])) * (-1 if m[1] else 1)
    except (ValueError, ZeroDivisionError):
        pass
    return None


def _nesting_depth(s: str) -> int:
    depth = deepest = 0
    for c in s:
        if c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth = max(depth - 1, 0)
    return deepest


def _sympy_safe(s: str) -> bool:
    """Departure 3: False where sympy would be asked to build an astronomically large number."""
    return _nesting_depth(s) <= MAX_NESTING and not _HUGE_RE.search(s)


def _sympy_equal(pred: str, gold: str) -> bool:
    """math_verify on the two answers; its timeouts are off because ours wrap this call."""
    gold_parsed = parse("\\boxed{" + gold + "}", parsing_timeout=None)
    pred_parsed = parse("\\boxed{" + pred + "}", parsing_timeout=None)
    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))  # gold first


def _with_alarm(fn, args, limit_s: float) -> bool:
    """fn(*args) in the main thread, interrupted by SIGALRM after limit_s seconds."""
    old_handler = signal.signal(signal.SIGALRM, _raise_time_up)
    try:
        signal.setitimer(signal.ITIMER_REAL, limit_s)
        try:
            return bool(fn(*args))
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _TimeUp:  # also when the alarm lands inside the finally above
        return False
    finally:
        signal.signal(signal.SIGALRM, old_handler)


def _in_child(fn, args, limit_s: float) -> bool:
    """fn(*args) in a forked child, killed if it has not answered after limit_s.

    The forking thread becomes the child's main thread, so the child can use SIGALRM too;
    os.fork (not multiprocessing) also works inside a daemonic Pool worker.
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: always leave through os._exit, never back into the caller's code
        try:
            os.close(read_fd)
            os.write(write_fd, b"1" if _with_alarm(fn, args, limit_s) else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    ready = []
    try:
        ready, _, _ = select.select([read_fd], [], [], limit_s + FORK_GRACE_S)
        return bool(ready) and os.read(read_fd, 1) == b"1"
    finally:
        os.close(read_fd)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _time_limited(fn, args, limit_s: float) -> bool:
    if not (hasattr(signal, "setitimer") and hasattr(os, "fork")):
        return bool(fn(*args))  # departure 2: no way to interrupt here
    if threading.current_thread() is threading.main_thread():
        return _with_alarm(fn, args, limit_s)
    return _in_child(fn, args, limit_s)


def extract_answer(text) -> str | None:
    """The final answer in a completion, or None.

    >>> extract_answer(r"First \\boxed{3}, no wait: \\boxed{\\frac{1}{2}}.")
    '\\\\frac{1}{2}'
    >>> extract_answer("so x = 4. The final answer is 12.")
    '12'
    >>> extract_answer(r"\\boxed{12") is None  # cut off mid-box: no answer
    True
    """
    try:
        text = _as_text(text)
        if not text:
            return None
        return _last_box(text) or _answer_is(text)
    except Exception:  # a bug here must cost one reward, not the training run
        return None


def is_equivalent(pred, gold, timeout_s: float = TIME_LIMIT_S) -> bool:
    """True when the predicted answer equals the gold answer (pred first, unlike math_verify).

    Cheapest test first: equal normalised strings, then exact rationals, then sympy through
    math_verify under a `timeout_s` limit. Anything unparseable or too slow counts as False.

    >>> is_equivalent("0.5", r"\\dfrac{1}{2}"), is_equivalent("(0,1]", "[0,1]")
    (True, False)
    """
    try:
        pred, gold = _as_text(pred), _as_text(gold)
        if pred is None or gold is None:
            return False
        pred, gold = pred.strip(), gold.strip()
        if not pred or not gold or max(len(pred), len(gold)) > MAX_ANSWER_CHARS:
            return False
        pred_key, gold_key = _normalize(pred), _normalize(gold)
        if pred_key and pred_key == gold_key:
            return True
        pred_num, gold_num = _as_fraction(pred_key), _as_fraction(gold_key)
        if pred_num is not None and gold_num is not None:
            if pred_num == gold_num:
                return True
            if "." not in pred_key + gold_key:
                return False  # exact rationals that differ; decimals go on to sympy's rounding
        if not (_sympy_safe(pred) and _sympy_safe(gold)):
            return False
        args = (_UNITS_RE.sub("", pred) or pred, _UNITS_RE.sub("", gold) or gold)
        return _time_limited(_sympy_equal, args, timeout_s)
    except (Exception, _TimeUp):
        return False


def reward(completion, gold) -> float:
    """1.0 if the completion's final answer is equivalent to gold, else 0.0.

    >>> reward(r"The area is \\boxed{1,000\\text{ cm}^2}.", "1000")
    1.0
    """
    return 1.0 if is_equivalent(extract_answer(completion), gold) else 0.0


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description="Extract the final answer and score it.")
    cli.add_argument("completion", help='model output, e.g. "so it is \\boxed{42}."')
    cli.add_argument("gold", help='reference answer, e.g. "42" or "\\frac{1}{2}"')
    cli_args = cli.parse_args()
    print(f"answer: {extract_answer(cli_args.completion)!r}")
    print(f"reward: {reward(cli_args.completion, cli_args.gold)}")
