"""data.py: bad rows are dropped and counted, never turned into text; clear errors; the prompt char bound.

    HF_HUB_OFFLINE=1 python -m pytest -q tests/test_data.py
"""

import json

import pytest
from transformers import AutoTokenizer

from plumbing import data, prompts

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
        assert len(tokenizer(prompts.format_prompt(tokenizer, text))["input_ids"]) > max_tokens


def test_cli_bad_input_exits_2_with_one_error_line(tmp_path, capsys):
    assert data.main([write(tmp_path / "d.jsonl", [GOOD]), "--limit", "-1"]) == 2
    assert data.main([str(tmp_path / "missing.jsonl")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines)
    assert "limit must be at least 1" in lines[0]
    assert data.main([write(tmp_path / "d.jsonl", [GOOD])]) == 0


def test_data_rows_empty_boxed_answer_lists_and_bad_lines(tmp_path, capsys):
    lines = [json.dumps({"problem": "p1", "answer": "\\boxed{}"}),
             json.dumps({"problem": "p2", "answer": [None, "5"]}),
             "{this is not json",
             json.dumps({"problem": "p3", "answer": "$\\boxed{7}$"}),
             "[1, 2]",
             json.dumps({"problem": "p4", "answer": ["", "  ", "x"]})]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = data.load_problems(str(path))
    assert rows == [{"problem": "p2", "answer": "5"}, {"problem": "p3", "answer": "7"},
                    {"problem": "p4", "answer": "x"}]
    out = capsys.readouterr().out
    assert "dropped 2 lines that are not JSON objects (line 3, 5)" in out
    assert "1 with an empty answer" in out


def test_a_file_with_no_good_line_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("{oops\nnot json either\n")
    with pytest.raises(data.DataError, match="no line of .* is a JSON object"):
        data.load_problems(str(path))



def test_json_lines_with_a_bom_missing_fields_odd_separators_and_bad_bytes(tmp_path, capsys):
    rows = [{"problem": "p1", "answer": "1"}, {"problem": "p2"}, {"answer": "3"},
            {"problem": "p4 \u2028 with a line separator", "answer": "4"}]
    raw = "\ufeff" + "\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\r\n"
    path = tmp_path / "d.jsonl"
    path.write_bytes(raw.encode() + b'{"problem": "caf\xe9", "answer": "5"}\n' + b"[" * 100_000 + b"\n")
    got = data.load_problems(str(path))
    assert got == [rows[0], rows[3]]
    out = capsys.readouterr().out
    assert "(line 5, 6)" in out and "1 with no answer" in out
    assert "1 with a missing or non-text problem" in out
    whole = tmp_path / "d.json"
    whole.write_text("\ufeff" + json.dumps(rows[:1]), encoding="utf-8")
    assert data.load_problems(str(whole)) == rows[:1]
