"""The knowledge-check set: labels right by construction, and no surface cue a model without knowledge could learn."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from kagflow.classifier.synth import CAPITALS, knowledge_rows, write_knowledge_competition

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


def _answer(response: str) -> str:
    text = json.loads(response)[0]
    return next(city for city in sorted(CAPITALS.values(), key=len, reverse=True) if city in text)


def _truth(prompt: str) -> str:
    text = json.loads(prompt)[0]
    return next(city for country, city in CAPITALS.items() if re.search(rf"\b{country}\b", text))


def _frame_answers(frame: pd.DataFrame) -> tuple[Counter, Counter]:
    """(how often each answer is the right one, how often a wrong one) over a file's rows."""
    right, wrong = Counter(), Counter()
    for _, row in frame.iterrows():
        truth = _truth(row["prompt"])
        for column in ("response_a", "response_b"):
            answer = _answer(row[column])
            (right if answer == truth else wrong)[answer] += 1
    return right, wrong


def test_labels_are_right_by_construction():
    rows = knowledge_rows(600, seed=4)
    for row in rows:
        truth = _truth(row["prompt"])
        a, b = _answer(row["response_a"]), _answer(row["response_b"])
        assert (a == truth, b == truth) == {0: (True, False), 1: (False, True)}[row["label"]]
    assert {r["label"] for r in rows} == {0, 1}  # one response is always right: no ties
    tied = knowledge_rows(300, seed=4, label_weights=(0, 0, 1))  # a tie share: both wrong, different cities
    assert all(r["label"] == 2 and len({_truth(r["prompt"]), _answer(r["response_a"]), _answer(r["response_b"])})
               == 3 for r in tied)


def test_no_capital_repeats_its_countrys_name_or_opening():
    """A string match between the prompt and the right response would find such a capital without knowledge."""
    for country, city in CAPITALS.items():
        assert country.lower()[:4] != city.lower()[:4] and country.lower() not in city.lower(), (country, city)
    assert len(set(CAPITALS.values())) == len(CAPITALS)


def test_no_surface_cue_a_bag_of_words_learns(tmp_path):
    """A logistic regression on the prompt's and the responses' words and lengths (each column its own features)
    scores near the majority class on held-out rows, and the classes are balanced between positions."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    paths = write_knowledge_competition(tmp_path, n_train=3000, n_test=1000, seed=0)
    train = pd.read_csv(paths["train"])
    test = pd.read_csv(paths["test"]).merge(pd.read_csv(paths["solution"]), on="id")
    y_train, y_test = train[LABELS].to_numpy().argmax(1), test[LABELS].to_numpy().argmax(1)
    shares = np.bincount(y_train, minlength=3) / len(y_train)
    assert abs(shares[0] - shares[1]) < 0.05 and shares[2] == 0
    columns = ("prompt", "response_a", "response_b")
    vectors = {c: CountVectorizer(token_pattern=r"\S+") for c in columns}

    def features(frame, fit):
        parts = [vectors[c].fit_transform(frame[c]) if fit else vectors[c].transform(frame[c]) for c in columns]
        lengths = csr_matrix(np.stack([frame["response_a"].str.len(), frame["response_b"].str.len()], 1) / 40)
        return hstack([*parts, lengths]).tocsr()

    model = LogisticRegression(max_iter=2000).fit(features(train, True), y_train)
    accuracy = (model.predict(features(test, False)) == y_test).mean()
    majority = np.bincount(y_test).max() / len(y_test)
    assert accuracy < majority + 0.05, (accuracy, majority)


def test_every_answer_is_right_as_often_as_wrong_and_test_answers_are_new(tmp_path):
    """Within each file no city is only ever a wrong answer (a wrong answer drawn from beyond the file's countries
    would be: the first knowledge set's test capitals were only ever wrong in train, a cue that pointed the wrong
    way at test), and the test file's cities are none of the train file's."""
    paths = write_knowledge_competition(tmp_path, n_train=3000, n_test=1500, seed=0)
    frames = {k: pd.read_csv(paths[k]) for k in ("train", "test")}
    answers = {}
    for name, frame in frames.items():
        right, wrong = _frame_answers(frame)
        assert set(right) == set(wrong), (name, set(right) ^ set(wrong))
        answers[name] = set(right)
    assert answers["test"] and not answers["train"] & answers["test"]


@pytest.mark.parametrize("held_out", [2, len(CAPITALS) - 2])
def test_a_split_of_fewer_than_three_countries_is_refused(tmp_path, held_out):
    with pytest.raises(ValueError, match=f"held_out_countries={held_out}: each split needs three"):
        write_knowledge_competition(tmp_path, n_train=20, n_test=10, held_out_countries=held_out)


def test_the_test_set_asks_about_countries_no_train_row_names(tmp_path):
    paths = write_knowledge_competition(tmp_path, n_train=800, n_test=300, seed=1, n_public=3)
    countries = lambda frame: {c for p in frame["prompt"] for c in CAPITALS if re.search(rf"\b{c}\b", p)}  # noqa
    train, hidden = pd.read_csv(paths["train"]), pd.read_csv(paths["hidden_test"])
    assert countries(hidden) and not countries(train) & countries(hidden)
    assert len(pd.read_csv(paths["test"])) == 3 and len(hidden) == 300
    assert list(train.columns) == ["id", "model_a", "model_b", "prompt", "response_a", "response_b", *LABELS]
