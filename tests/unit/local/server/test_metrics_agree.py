"""The two implementations of each metric agree: the classifier's validation metrics (``kagflow.classifier.metrics``,
what a training kernel reports and picks its best epoch by) and the local Kaggle's scorer
(``kagflow.local.server.metrics``, what a submission scores), on the same predictions of the same rows: the
classifier's probabilities, written as its submission.csv, scored against the synthetic competition's solution.csv."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kagflow.classifier.metrics import evaluate
from kagflow.classifier.submission import make_submission
from kagflow.classifier.synth import write_synthetic_competition
from kagflow.classifier.task import Task
from kagflow.local.server.competition import score_submission
from kagflow.rules.metrics import CLASSIFICATION

ONE_COLUMN = {"label_columns": [], "swap_columns": [], "text_columns": ["text"]}
TASKS = {
    "log_loss": Task.lmsys(),
    "log_loss-binary": Task.from_params({**ONE_COLUMN, "label_column": "generated", "labels": ["0", "1"],
                                         "submission": "positive_probability", "metric": "log_loss"}),
    "accuracy": Task.from_params({"label_columns": [], "label_column": "winner", "labels": ["model_a", "model_b"],
                                  "submission": "label", "metric": "accuracy"}),
    "roc_auc": Task.from_params({**ONE_COLUMN, "label_column": "generated", "labels": ["0", "1"],
                                 "submission": "positive_probability", "metric": "roc_auc"}),
    "macro_f1": Task.from_params({**ONE_COLUMN, "label_column": "score", "labels": ["1", "2", "3", "4", "5"],
                                  "submission": "label", "metric": "macro_f1"}),
    "map_at_3": Task.from_params({**ONE_COLUMN, "label_column": "answer", "labels": ["A", "B", "C", "D", "E"],
                                  "submission": "label", "metric": "map_at_3"}),
}


def test_every_classification_metric_is_compared():
    assert {t.metric for t in TASKS.values()} == set(CLASSIFICATION)


def _truth(task: Task, solution: pd.DataFrame) -> list[int]:
    """Each solution row's class index, read back from the submission format it is written in."""
    values = solution.drop(columns=[task.id_column])
    if task.submission == "probabilities":
        return values.to_numpy(dtype=float).argmax(axis=1).tolist()
    if task.submission == "positive_probability":
        return values.iloc[:, 0].astype(int).tolist()
    return [task.labels.index(v) for v in values.iloc[:, 0]]


@pytest.mark.parametrize("name", list(TASKS))
def test_the_classifier_and_the_local_scorer_agree(name, tmp_path):
    task = TASKS[name]
    paths = write_synthetic_competition(tmp_path / "data", task=task, n_train=5, n_test=80, n_public=3, seed=3,
                                        text_format="plain")
    solution = pd.read_csv(paths["solution"], dtype=str, keep_default_na=False)
    labels = _truth(task, solution)
    assert len(set(labels)) == task.n_labels  # every class in the truth (macro-F1 and AUC see them all)
    rng = np.random.default_rng(7)
    # predictions that lean to the truth, wrong now and then: a score neither perfect nor chance
    logits = rng.normal(size=(len(labels), task.n_labels)) + 1.2 * np.eye(task.n_labels)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    make_submission(solution[task.id_column], probs, task).to_csv(tmp_path / "submission.csv", index=False)

    local = score_submission(paths["solution"], tmp_path / "submission.csv", task.metric)
    classifier = evaluate(labels, probs, task)["metric_value"]
    assert 0 < classifier < (1 if task.direction == "higher" else 5)
    assert local == pytest.approx(classifier, abs=1e-6), (name, local, classifier)


def test_macro_f1_averages_over_the_labels_the_rows_hold_or_are_predicted_in_both(tmp_path):
    """The bug: the classifier averaged over every label, so a label a validation fold neither holds nor predicts
    counted as an F1 of 0 (0.49 where Kaggle's scorer says 0.82)."""
    from kagflow.local.server.metrics import macro_f1

    task = TASKS["macro_f1"]
    labels, predicted = [0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 2, 2]  # labels "4" and "5": in no row, never predicted
    classifier = evaluate(labels, np.eye(task.n_labels)[predicted], task)["macro_f1"]
    local = macro_f1([[task.labels[y]] for y in labels], [[task.labels[p]] for p in predicted])
    assert classifier == pytest.approx(local) == pytest.approx((1 + 2 / 3 + 0.8) / 3)
