"""The local scorer, per metric: each implemented by name with its facts from kagflow.rules.metrics."""

from __future__ import annotations

import math

import pytest

from kagflow.local.server import metrics
from kagflow.local.server.competition import ScoreError, score_submission
from kagflow.rules.metrics import CLASSIFICATION, METRICS


def _files(tmp_path, solution: str, submission: str):
    (tmp_path / "solution.csv").write_text(solution)
    (tmp_path / "submission.csv").write_text(submission)
    return tmp_path / "solution.csv", tmp_path / "submission.csv"


def test_every_metric_of_the_table_is_scored_with_its_facts():
    for name in CLASSIFICATION:
        scorer = metrics.get(name)
        assert scorer.facts is METRICS[name] and scorer.lower_is_better == (not METRICS[name].higher_is_better)


@pytest.mark.parametrize("metric, solution, submission, expected", [
    ("accuracy", "id,winner\n1,model_a\n2,model_b\n3,model_a\n4,model_b\n",
     "id,winner\n1,model_a\n2,model_a\n3,model_a\n4,model_b\n", 0.75),
    ("macro_f1", "id,label\n1,a\n2,b\n3,c\n4,a\n",
     "id,label\n1,a\n2,b\n3,a\n4,a\n", (0.8 + 1.0 + 0.0) / 3),
    ("roc_auc", "id,generated\n1,0\n2,0\n3,1\n4,1\n",
     "id,generated\n1,0.1\n2,0.4\n3,0.35\n4,0.8\n", 0.75),
    ("map_at_3", "id,label\n1,a\n2,b\n3,c\n",
     "id,label\n1,a b c\n2,a b c\n3,x y z\n", (1 + 0.5 + 0) / 3),
    ("log_loss", "id,p\n1,1\n2,0\n", "id,p\n1,0.8\n2,0.4\n", -(math.log(0.8) + math.log(0.6)) / 2),
])
def test_each_metric_scores_as_kaggle_does(tmp_path, metric, solution, submission, expected):
    assert score_submission(*_files(tmp_path, solution, submission), metric) == pytest.approx(expected)


def test_a_label_metric_takes_labels_and_a_probability_metric_refuses_them(tmp_path):
    solution, submission = _files(tmp_path, "id,generated\n1,0\n2,1\n", "id,generated\n1,low\n2,0.9\n")
    with pytest.raises(ScoreError, match=r"Could not parse 'low' into expected type of Double \(Line 2, Column 3\)"):
        score_submission(solution, submission, "roc_auc")
    solution, submission = _files(tmp_path, "id,winner\n1,model_a\n2,model_b\n", "id,winner\n1,model_a\n2,model_b\n")
    assert score_submission(solution, submission, "accuracy") == 1.0


def test_map_at_3_counts_a_repeated_label_once():
    assert metrics.average_precision_at_k(["a"], ["b", "a", "a"]) == 0.5
    assert metrics.average_precision_at_k(["a"], ["b", "c", "d", "a"]) == 0.0  # only the first 3 count
