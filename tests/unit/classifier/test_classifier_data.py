"""Arena CSV parsing against the real data's quirks, written as literal CSV rows."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from kagflow.classifier.data import load_arena_csv, parse_label, parse_turns, stratified_fold

TRAIN_HEADER = "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"
TEST_HEADER = "id,prompt,response_a,response_b\n"


def _csv(tmp_path, header: str, rows: str, name: str = "rows.csv"):
    path = tmp_path / name
    path.write_text(header + textwrap.dedent(rows).lstrip(), encoding="utf-8")
    return path


def _issues(data) -> dict:
    out = {}
    for issue in data.issues:
        out.setdefault(issue.id, []).append((issue.column, issue.reason))
    return out


def test_train_quirks_parse_or_are_reported(tmp_path):
    path = _csv(tmp_path, TRAIN_HEADER, r'''
        1,m1,m2,"[""Hi"",null]","[""A1"",""A2""]","[null,""B2""]",1,0,0
        2,m1,m2,"[""""]","[""""]","[""ok""]",0,1,0
        3,m1,m2,"[""broken","[""a""]","[""b""]",0,0,1
        4,m1,m2,"[""emoji \ud83d alone""]","[""x""]","[""y""]",0,1,0
        5,m1,m2,,"[""a""]","[""b""]",1,0,0
        6,m1,m2,"[""q1"",""q2"",""q3""]","[""r1"",""r2"",""r3""]","[""s1"",""s2"",""s3""]",0,0,1
        7,m1,m2,"[""p""]","[""a""]","[""b""]",1,1,0
        8,m1,m2,"[""p""]","[""a""]","[""b""]",,0,0
    ''')
    data = load_arena_csv(path)
    rows = data.frame.set_index("id")
    issues = _issues(data)

    assert rows.loc["1", "prompt"] == ["Hi", ""]  # null turn -> empty turn
    assert rows.loc["1", "response_b"] == ["", "B2"]
    assert rows.loc["2", "prompt"] == [""] and "2" not in issues  # empty turns parse cleanly
    assert rows.loc["3", "prompt"] == ["broken"]  # salvaged raw text
    assert issues["3"][0][0] == "prompt" and issues["3"][0][1].startswith("invalid JSON")
    assert rows.loc["4", "prompt"] == ["emoji \ufffd alone"]
    assert issues["4"] == [("prompt", "lone surrogate replaced with U+FFFD")]
    rows.loc["4", "prompt"][0].encode("utf-8")  # a tokenizer can take it now
    assert rows.loc["5", "prompt"] == [] and issues["5"] == [("prompt", "missing cell")]
    assert rows.loc["6", "response_b"] == ["s1", "s2", "s3"]
    assert rows.loc[["1", "2", "3", "4", "5", "6"], "label"].tolist() == [0, 1, 2, 1, 0, 2]

    assert sorted(data.skipped_ids) == ["7", "8"]  # not exactly one 1: reported and skipped
    assert "not exactly one 1" in issues["7"][0][1] and issues["7"][0][0] is None
    assert "8" in issues
    assert "2 skipped" in data.report()


def test_test_rows_are_never_dropped(tmp_path):
    path = _csv(tmp_path, TEST_HEADER, r'''
        10,"[""p""]","[""a""]","[""b""]"
        11,"not json at all",,"[null]"
        12,"[""\udc00 low""]","[""a""]",[]
    ''')
    data = load_arena_csv(path)
    assert data.frame["id"].tolist() == ["10", "11", "12"]  # ids stay strings
    assert data.frame["label"].tolist() == [-1, -1, -1]
    assert data.skipped_ids == []
    rows = data.frame.set_index("id")
    assert rows.loc["11", "prompt"] == ["not json at all"]
    assert rows.loc["11", "response_a"] == [] and rows.loc["11", "response_b"] == [""]
    assert rows.loc["12", "prompt"] == ["\ufffd low"] and rows.loc["12", "response_b"] == []
    assert {i.id for i in data.issues} == {"11", "12"}


def test_missing_columns_are_named(tmp_path):
    path = _csv(tmp_path, "id,prompt,response_a\n", "1,[],[]\n")
    with pytest.raises(ValueError, match=r"missing columns \['response_b'\]"):
        load_arena_csv(path)


@pytest.mark.parametrize("cell, turns, reasons", [
    ('["a", null, ""]', ["a", "", ""], []),
    (float("nan"), [], ["missing cell"]),
    ('["a\\ud83d\\ude00b"]', ["a\U0001F600b"], []),  # a proper surrogate pair is one emoji
    # anything but a JSON list of strings and nulls is plain text (WSDM), decided per cell
    ("Which is better, A or B?", ["Which is better, A or B?"], []),
    ('"just a string"', ['"just a string"'], []),
    ("null", ["null"], []),
    ("[citation needed] the rest", ["[citation needed] the rest"], []),
    ("[1, 2, 3]", ["[1, 2, 3]"], []),
    ('["a", 1]', ['["a", 1]'], []),
    ("[]", [], []),
    # a cell that opens like a list of turns but is cut is salvaged as one turn, and reported
    ('["cut before the end', ["cut before the end"],
     ["invalid JSON (Unterminated string starting at: line 1 column 2 (char 1)); kept the raw text"]),
])
def test_parse_turns(cell, turns, reasons):
    assert parse_turns(cell) == (turns, reasons)


def test_one_file_mixes_turns_and_plain_text_cells(tmp_path):
    path = _csv(tmp_path, TRAIN_HEADER, r'''
        1,m1,m2,"[""Hi"",""again""]",plain answer A,"[""B1""]",1,0,0
        2,m1,m2,[2] is a footnote,"[""A""]","text with ""quotes"" and, a comma",0,1,0
        ''')
    rows = load_arena_csv(path).frame.set_index("id")
    assert rows.loc["1", "prompt"] == ["Hi", "again"] and rows.loc["1", "response_a"] == ["plain answer A"]
    assert rows.loc["2", "prompt"] == ["[2] is a footnote"]
    assert rows.loc["2", "response_b"] == ['text with "quotes" and, a comma']


@pytest.mark.parametrize("values, label", [((1, 0, 0), 0), ((0, 1, 0), 1), (("0", "0", "1"), 2),
                                          ((1, 1, 0), None), ((0, 0, 0), None), ((float("nan"), 0, 1), None),
                                          ((2, 0, 0), None)])
def test_parse_label(values, label):
    assert parse_label(values) == label


def test_stratified_fold_is_seeded_and_stratified():
    labels = np.array([0] * 35 + [1] * 34 + [2] * 31)
    train, val = stratified_fold(labels, 5, 0, seed=42)
    assert len(val) == 20 and sorted(np.concatenate([train, val]).tolist()) == list(range(100))
    assert np.bincount(labels[val]).tolist() == [7, 7, 6]
    again, _ = stratified_fold(labels, 5, 0, seed=42)
    assert train.tolist() == again.tolist()
    folds = [set(stratified_fold(labels, 5, k)[1].tolist()) for k in range(5)]
    assert set().union(*folds) == set(range(100)) and sum(map(len, folds)) == 100
    with pytest.raises(ValueError, match="fold_idx=5"):
        stratified_fold(labels, 5, 5)
