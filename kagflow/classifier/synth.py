"""Synthetic competition data in the exact schema, with the real data's quirks and a learnable signal.

Signal: a marker word opening the last turn of response A (label 0), of
response B (label 1), or of both (label 2, tie).

Quirks: only those the real data has (KAGGLE-FACTS.md), so a rehearsal never fails a notebook Kaggle runs:
null entries in a turn list, empty turns, identical responses (ties), both responses ``[null]``, and, in
train.csv only, escapes that decode to lone surrogates. Not in the hidden test set: a public notebook (the
4th-place LMSYS inference) that crashes on a lone surrogate scored on Kaggle's hidden test, so the local test
set must not have one. Never: truncated JSON or a missing cell (the real files have neither; the classifier's
handling of such rows is tested on rows written for it).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Optional

from . import LABEL_COLUMNS
from .text import HEADERS

MARKER = "zorblax"
CLASS_WEIGHTS = (0.36, 0.35, 0.29)  # A / B / tie; the quirk rows add ~2.5% ties: 35/34/31 as train.csv
MODELS = ("gpt-4-0613", "claude-2.1", "llama-2-70b-chat", "gemini-pro", "mistral-medium", "vicuna-13b")
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "po", "se", "di", "fu", "ga", "he", "ji", "mo", "va", "wi")
_EXTRA = ("café", "naïve", "über", "🙂", "日本", "€5", "x=1;", "(a+b)", "http://e.x/y")


def vocabulary() -> list[str]:
    """The fixed word list every synthetic text draws from (independent of the seed)."""
    rng = random.Random(1234)
    words = {"".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(600)}
    return sorted(words - {MARKER}) + list(_EXTRA)


def corpus(seed: int = 0, n_rows: int = 400):
    """Lines of synthetic text to train the tiny tokenizer on."""
    rng = random.Random(seed)
    words = vocabulary()
    for _ in range(n_rows):
        yield HEADERS[0] + _sentence(rng, words, 3, 12)
        yield HEADERS[1] + MARKER + " " + _sentence(rng, words, 10, 40)
        yield HEADERS[2] + _sentence(rng, words, 10, 40) + " " + MARKER


def write_synthetic_competition(out_dir, *, n_train: int = 1200, n_test: int = 200, seed: int = 0,
                                n_public: Optional[int] = None) -> dict:
    """Write train.csv, test.csv, sample_submission.csv and a separate solution.csv; return their paths.

    ``n_public``: as in a code competition, test.csv and sample_submission.csv hold only the first
    ``n_public`` test rows, and the whole test set (``n_test`` rows, what a submission is re-run on)
    goes to hidden/test.csv and hidden/sample_submission.csv (paths ``hidden_test``, ``hidden_sample``).
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    ids = rng.sample(range(10_000, 10_000_000), n_train + n_test)
    rows = [_row(rng, i, test=k >= n_train) for k, i in enumerate(ids)]
    train, test = rows[:n_train], rows[n_train:]
    onehot = lambda label: {c: int(k == label) for k, c in enumerate(LABEL_COLUMNS)}  # noqa: E731
    paths = {name: out / f"{name}.csv" for name in ("train", "test", "sample_submission", "solution")}
    pd.DataFrame([{**{k: r[k] for k in ("id", "model_a", "model_b", "prompt", "response_a", "response_b")},
                   **onehot(r["label"])} for r in train]).to_csv(paths["train"], index=False)
    tests = [(paths["test"], paths["sample_submission"], test if n_public is None else test[:n_public])]
    if n_public is not None:
        (out / "hidden").mkdir(exist_ok=True)
        hidden = out / "hidden"
        paths["hidden_test"], paths["hidden_sample"] = hidden / "test.csv", hidden / "sample_submission.csv"
        tests.append((paths["hidden_test"], paths["hidden_sample"], test))
    for test_path, sample_path, part in tests:
        pd.DataFrame([{k: r[k] for k in ("id", "prompt", "response_a", "response_b")} for r in part]).to_csv(
            test_path, index=False)
        pd.DataFrame([{"id": r["id"], **{c: 1 / 3 for c in LABEL_COLUMNS}} for r in part]).to_csv(
            sample_path, index=False)
    pd.DataFrame([{"id": r["id"], **onehot(r["label"])} for r in test]).to_csv(paths["solution"], index=False)
    return paths


def _sentence(rng: random.Random, words: list[str], lo: int, hi: int) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))


def _row(rng: random.Random, row_id: int, *, test: bool = False) -> dict:
    words = vocabulary()
    label = rng.choices((0, 1, 2), weights=CLASS_WEIGHTS)[0]
    n_turns = 1 if rng.random() < 0.8 else rng.randint(2, 3)
    prompt = [_sentence(rng, words, 3, 12) for _ in range(n_turns)]
    long_row = rng.random() < 0.04
    a, b = ([_sentence(rng, words, 5, 30) for _ in range(n_turns)] for _ in range(2))
    if long_row:  # last turns far beyond any max_length
        a[-1], b[-1] = _sentence(rng, words, 500, 900), _sentence(rng, words, 500, 900)
    for turns, has_marker in ((a, label in (0, 2)), (b, label in (1, 2))):
        if has_marker:
            turns[-1] = f"{MARKER} {turns[-1]}"
    quirk = rng.random()
    ascii_only = False
    if quirk < 0.02:  # identical responses are ties
        same = a if MARKER in a[-1] else b
        label, a, b = 2, list(same), list(same)
    elif quirk < 0.04:
        prompt.insert(0, None)  # null turn
    elif quirk < 0.06:
        a.insert(0, "")  # empty turn
        b.insert(0, "")
    elif quirk < 0.075 and not test:  # an escape that decodes to a lone surrogate (train.csv only)
        a[0] = a[0] + " \ud83d"
        ascii_only = True
    elif 0.075 <= quirk < 0.08:  # both responses null: no marker anywhere, a tie
        label, a, b = 2, [None], [None]
    cells = {k: json.dumps(v, ensure_ascii=ascii_only) for k, v in
             (("prompt", prompt), ("response_a", a), ("response_b", b))}
    return {"id": row_id, "model_a": rng.choice(MODELS), "model_b": rng.choice(MODELS), **cells, "label": label}
