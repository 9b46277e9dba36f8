"""The knowledge-check set: labels right by construction, and no surface cue a model without knowledge could learn."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from kagflow.classifier.synth import CAPITALS, arithmetic, knowledge_rows, write_knowledge_competition

LABELS = ["winner_model_a", "winner_model_b", "winner_tie"]


def _answer(response: str) -> str:
    text = json.loads(response)[0]
    for city in sorted(CAPITALS.values(), key=len, reverse=True):
        if city in text:
            return city
    return re.findall(r"\d+", text)[-1]


def _truth(prompt: str) -> str:
    text = json.loads(prompt)[0]
    match = re.search(r"(\d+) ([-+*]) (\d+)", text)
    if match:
        return str(arithmetic(int(match[1]), match[2], int(match[3])))
    return next(city for country, city in CAPITALS.items() if re.search(rf"\b{country}\b", text))


def test_labels_are_right_by_construction():
    for row in knowledge_rows(600, seed=4):
        truth = _truth(row["prompt"])
        a, b = _answer(row["response_a"]), _answer(row["response_b"])
        assert (a == truth, b == truth) == {0: (True, False), 1: (False, True), 2: (False, False)}[row["label"]]
        assert a != b
        if truth.isdigit():  # a wrong number keeps the right one's digit count
            assert len(a) == len(b) == len(truth)


def test_no_surface_cue_a_bag_of_words_learns(tmp_path):
    """A logistic regression on the responses' words and lengths (each response its own features) scores near the
    majority class on held-out rows, and the classes are balanced between positions."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    paths = write_knowledge_competition(tmp_path, n_train=3000, n_test=1000, seed=0)
    train = pd.read_csv(paths["train"])
    test = pd.read_csv(paths["test"]).merge(pd.read_csv(paths["solution"]), on="id")
    y_train, y_test = train[LABELS].to_numpy().argmax(1), test[LABELS].to_numpy().argmax(1)
    shares = np.bincount(y_train, minlength=3) / len(y_train)
    assert abs(shares[0] - shares[1]) < 0.05 and 0.05 < shares[2] < 0.15
    vec_a, vec_b = CountVectorizer(token_pattern=r"\S+"), CountVectorizer(token_pattern=r"\S+")

    def features(frame, fit):
        parts = [vec.fit_transform(frame[c]) if fit else vec.transform(frame[c])
                 for vec, c in ((vec_a, "response_a"), (vec_b, "response_b"))]
        lengths = csr_matrix(np.stack([frame["response_a"].str.len(), frame["response_b"].str.len()], 1) / 40)
        return hstack([*parts, lengths]).tocsr()

    model = LogisticRegression(max_iter=2000).fit(features(train, True), y_train)
    accuracy = (model.predict(features(test, False)) == y_test).mean()
    majority = np.bincount(y_test).max() / len(y_test)
    assert accuracy < majority + 0.05, (accuracy, majority)


def test_the_test_set_asks_about_countries_no_train_row_names(tmp_path):
    paths = write_knowledge_competition(tmp_path, n_train=800, n_test=300, seed=1, n_public=3)
    countries = lambda frame: {c for p in frame["prompt"] for c in CAPITALS if re.search(rf"\b{c}\b", p)}  # noqa
    train, hidden = pd.read_csv(paths["train"]), pd.read_csv(paths["hidden_test"])
    assert countries(hidden) and not countries(train) & countries(hidden)
    assert len(pd.read_csv(paths["test"])) == 3 and len(hidden) == 300
    assert list(train.columns) == ["id", "model_a", "model_b", "prompt", "response_a", "response_b", *LABELS]

