"""data.py: bad rows are dropped and counted, never turned into text; clear errors; the prompt char bound.

    HF_HUB_OFFLINE=1 python -m pytest -q tests/test_data.py
"""

import json

import pytest
from transformers import AutoTokenizer

import data
import rollout

GOOD = {"problem": "What is 2 + 3?", "answer": "5"}


def write(path, rows):
    """A .jsonl file of `rows`; a row given as a string is written as it is (NaN is not JSON)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("bad_row, reason", [
    ({"problem": None, "answer": "1"}, "a missing or non-text problem"),  # was the prompt "None"
    ({"problem": 7, "answer": "1"}, "a missing or non-text problem"),
    ({"problem": "q", "answer": True}, "an answer that is not text or a number"),  # was "True"
    ({"problem": "q", "answer": {"a": 1}}, "an answer that is not text or a number"),  # was "{'a': 1}"
    ({"problem": "q", "answer": None}, "no answer"),
])
def test_a_bad_row_is_dropped_and_counted_in_one_line(bad_row, reason, tmp_path, capsys):
    spec = write(tmp_path / "d.jsonl", [GOOD, bad_row, GOOD])
    assert data.load_problems(spec) == [GOOD, GOOD]
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"note: {spec}: dropped 1 of 3 rows (1 with {reason})"]


def test_a_nan_answer_is_dropped_not_read_as_gold_nan(tmp_path, capsys):
    """In a numeric answer column NaN arrives as a float; str() made it the gold "nan", which
    \\boxed{nan} matched."""
    spec = write(tmp_path / "d.jsonl", ['{"problem": "a", "answer": 2.5}', '{"problem": "b", "answer": NaN}'])
    assert data.load_problems(spec) == [{"problem": "a", "answer": "2.5"}]
    assert "(1 with a NaN or infinite answer)" in capsys.readouterr().out


def test_numbers_and_answer_lists_are_still_answers(tmp_path, capsys):
    rows = [{"problem": "a", "answer": [12, "twelve"]}, {"problem": "b", "answer": [2.5]}]
    spec = write(tmp_path / "d.jsonl", rows)
    assert data.load_problems(spec) == [{"problem": "a", "answer": "12"}, {"problem": "b", "answer": "2.5"}]
    assert capsys.readouterr().out == ""  # nothing dropped, nothing said


def test_no_usable_rows_names_the_reason_not_the_level_filter(tmp_path):
    spec = write(tmp_path / "d.jsonl", [{"problem": "q", "answer": None, "level": "Level 3"}] * 2)
    with pytest.raises(data.DataError, match=r"all 2 were dropped \(2 with no answer\)"):
        data.load_problems(spec, levels={3})


def test_the_level_filter_is_counted_apart(tmp_path, capsys):
    spec = write(tmp_path / "d.jsonl", [GOOD | {"level": "Level 1"}, GOOD | {"level": "Level 4"}])
    assert data.load_problems(spec, levels={3, 4, 5}) == [GOOD]
    assert "1 outside levels [3, 4, 5]" in capsys.readouterr().out


@pytest.mark.parametrize("case, message", [("folder", "is a folder"), ("empty", "is empty"),
                                           ("blank lines", "is empty"), ("missing", "does not exist")])
def test_an_unusable_file_is_one_clear_sentence(case, message, tmp_path):
    spec = tmp_path / "d.jsonl"
    if case == "folder":
        spec.mkdir()
    elif case != "missing":
        spec.write_text("" if case == "empty" else "\n  \n")
    with pytest.raises(data.DataError, match=message) as e:
        data.load_problems(str(spec))
    assert "StopIteration" not in str(e.value) and "\n" not in str(e.value)


def test_max_chars_drops_long_problems_before_anything_reads_them(tmp_path, capsys):
    spec = write(tmp_path / "d.jsonl", [GOOD, {"problem": "x" * 10_000, "answer": "1"}])
    assert data.load_problems(spec, max_chars=100) == [GOOD]
    assert "1 with a problem longer than 100 characters" in capsys.readouterr().out


def test_prompt_char_bound_never_drops_a_prompt_that_fits(random_model_dir):
    """The bound against the tokenizer itself: the text that packs most characters per token (the
    longest vocabulary entry repeated) still needs more than max_tokens tokens above the bound."""
    tokenizer = AutoTokenizer.from_pretrained(random_model_dir)
    max_tokens = 50
    bound = data.prompt_char_bound(tokenizer, max_tokens)
    longest = max((t for t in tokenizer.get_vocab() if t not in tokenizer.all_special_tokens), key=len)
    densest = tokenizer.convert_tokens_to_string([longest])
    for text in (densest * (bound // len(densest) + 1), "7" * (bound + 1), "a b " * (bound // 4 + 1)):
        assert len(text) > bound
        assert len(tokenizer(rollout.format_prompt(tokenizer, text))["input_ids"]) > max_tokens


def test_cli_bad_input_exits_2_with_one_error_line(tmp_path, capsys):
    assert data.main([write(tmp_path / "d.jsonl", [GOOD]), "--limit", "-1"]) == 2
    assert data.main([str(tmp_path / "missing.jsonl")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "limit must be at least 1" in lines[0]
    assert data.main([write(tmp_path / "d.jsonl", [GOOD])]) == 0
