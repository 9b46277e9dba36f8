"""Token-budgeted inputs: prompt and both responses inside max_length, last turns first."""

from __future__ import annotations

import pytest

from kagflow.classifier.model import load_tokenizer
from kagflow.classifier.text import HEADERS, allocate, encode_rows, fit_turns

pytest_plugins = ["classifier_fixtures"]  # shared session fixtures: the tiny model is trained once


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return load_tokenizer(tiny_checkpoint)


def _segments(tokenizer, ids) -> list[str]:
    """The decoded text of each part, split at the headers."""
    text = tokenizer.decode(ids)
    assert text.startswith(tokenizer.bos_token + HEADERS[0])
    rest = text[len(tokenizer.bos_token + HEADERS[0]):]
    prompt, rest = rest.split(HEADERS[1])
    a, b = rest.split(HEADERS[2])
    return [prompt, a, b]


def test_allocate_gives_short_parts_all_they_need():
    assert allocate([10, 20, 30], 100) == [10, 20, 30]
    assert allocate([10, 5000, 20], 100) == [10, 70, 20]
    assert allocate([0, 5000, 5000], 100) == [0, 50, 50]
    shares = allocate([5000, 5000, 5000], 100)
    assert sum(shares) <= 100 and min(shares) > 0 and shares[1] == shares[2]


def test_fit_turns_keeps_the_last_turns():
    sep = [9]
    turns = [[1, 1, 1], [2, 2], [3, 3, 3]]
    assert fit_turns(turns, 100, sep) == [1, 1, 1, 9, 2, 2, 9, 3, 3, 3]
    assert fit_turns(turns, 6, sep) == [2, 2, 9, 3, 3, 3]
    assert fit_turns(turns, 2, sep) == [3, 3]  # the last turn's head
    assert fit_turns([], 5, sep) == []


def test_long_row_keeps_response_b_within_max_length(tokenizer):
    long_a = " ".join(["kalo"] * 3000)
    ids = encode_rows(tokenizer, [["what is best?"]], [[long_a]], [["the B answer is short"]], 256)[0]
    assert len(ids) <= 256
    prompt, a, b = _segments(tokenizer, ids)
    assert prompt == "what is best?"
    assert b == "the B answer is short"  # untouched: A gave up what B did not need
    assert a.startswith("kalo kalo") and len(a) > 100


def test_both_responses_long_share_the_budget(tokenizer):
    long_a, long_b = " ".join(["kalo"] * 3000), " ".join(["mine"] * 3000)
    ids = encode_rows(tokenizer, [[" ".join(["tase"] * 3000)]], [[long_a]], [[long_b]], 512)[0]
    assert len(ids) <= 512
    prompt, a, b = _segments(tokenizer, ids)
    assert prompt.startswith("tase") and a.startswith("kalo") and b.startswith("mine")
    n_a, n_b = (len(tokenizer(x, add_special_tokens=False)["input_ids"]) for x in (a, b))
    assert abs(n_a - n_b) <= 2 and n_a > len(prompt.split()) // 2


def test_multi_turn_keeps_the_last_turns(tokenizer):
    turns = [" ".join([w] * 60) for w in ("kalo", "mine", "tase")]
    ids = encode_rows(tokenizer, [["q1", "q2", "q3"]], [turns], [["b1", "b2"]], 200)[0]
    assert len(ids) <= 200
    prompt, a, b = _segments(tokenizer, ids)
    assert prompt == "q1\nq2\nq3" and b == "b1\nb2"
    assert "tase" in a and "kalo" not in a  # the first turn went first


def test_short_rows_are_kept_whole_and_batch_encoding_matches_single(tokenizer):
    rows = ([["p one"], ["p two", ""]], [["a one"], ["", "a two"]], [["b one"], ["b two"]])
    together = encode_rows(tokenizer, *rows, 64)
    alone = [encode_rows(tokenizer, [p], [a], [b], 64)[0] for p, a, b in zip(*rows)]
    assert together == alone
    assert _segments(tokenizer, together[1]) == ["p two\n", "\na two", "b two"]
    assert encode_rows(tokenizer, [[]], [[]], [[]], 64)[0][0] == tokenizer.bos_token_id


def test_max_length_too_small_for_the_headers(tokenizer):
    with pytest.raises(ValueError, match="max_length=8"):
        encode_rows(tokenizer, [["p"]], [["a"]], [["b"]], 8)
