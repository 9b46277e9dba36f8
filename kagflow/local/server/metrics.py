"""How local competitions are scored: one registry of metrics, keyed by name.

A competition is hosted with a metric name (``install_competition(..., metric="rmse")``): a name of
:data:`kagflow.rules.metrics.METRICS`, the one table of metric facts (display name, direction, what a submission
gives it), which this registry implements. Its hidden ``solution.csv`` is an id column, then the columns the metric
scores; a submission has the same columns. A :class:`Metric` checks one row of cells (each solution row when the
competition is hosted, each submission row when it is scored: a :class:`ScoreError` naming the row and the column)
and scores the whole, rows in the solution's order:

    log_loss   probabilities: one column (binary: p of the positive class against a 0/1 truth) or several
               (multi-class: each row sums to 1, the truth one-hot or probabilities); clipped to
               [1e-15, 1 - 1e-15] and each row renormalised, as Kaggle's scorer
    accuracy   labels: one column; the share of rows whose label is the truth's (scikit-learn)
    roc_auc    numbers: one column of scores against a 0/1 truth (binary), or one per class against a one-hot
               truth (macro average, one class against the rest); scikit-learn
    macro_f1   labels: one column; F1 per label, averaged over the labels of the truth and the submission
               (scikit-learn, a label never predicted counts 0)
    map_at_3   up to 3 space-separated labels per row, best first, against the true label(s): mean average
               precision at 3 (a repeated label counts once, as Kaggle's MAP@K)
    rmse       numbers: the root mean squared error over every cell

Another metric is a row of the rules table and one ``register(Metric(...))`` here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from kagflow.rules.metrics import METRICS as FACTS
from kagflow.rules.metrics import MetricFacts

EPS = 1e-15
ROW_SUM_TOLERANCE = 1e-3
MAP_K = 3

Rows = Sequence[Sequence]


class ScoreError(ValueError):
    """A submission (or solution) Kaggle's scorer would refuse; the message is what the submission's error says."""


@dataclass(frozen=True)
class Metric:
    facts: MetricFacts           # name, display name, direction, what it reads (kagflow.rules.metrics)
    row: Callable[[str, str, List[str], List[str]], list]  # (what, row id, columns, cells) -> values
    score: Callable[[Rows, Rows], float]                   # (truth rows, predicted rows) -> score
    truth: Optional[Callable[[str, str, List[str], List[str]], list]] = None  # a solution row, if not ``row``
    aliases: tuple = ()          # older names a data dir may hold
    columns: Optional[int] = None  # how many value columns it scores (None: any)

    @property
    def name(self) -> str:  # what install_competition takes and the competitions table keeps
        return self.facts.name

    @property
    def title(self) -> str:  # what ApiCompetition.evaluationMetric says
        return self.facts.display

    @property
    def lower_is_better(self) -> bool:  # the leaderboard's order
        return not self.facts.higher_is_better

    def truth_row(self, what: str, row_id: str, columns: List[str], cells: List[str]) -> list:
        return (self.truth or self.row)(what, row_id, columns, cells)


METRICS: Dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    for key in (metric.name, *metric.aliases):
        METRICS[key] = metric
    return metric


def get(name: str) -> Metric:
    """The metric called ``name``; a ValueError naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        known = sorted({m.name for m in METRICS.values()})
        raise ValueError(f"unknown metric {name!r}: the local Kaggle scores {', '.join(known)}") from None


# --------------------------------------------------------------------------- rows

def numbers(what: str, row_id: str, columns: List[str], cells: List[str]) -> List[float]:
    """The row's cells as finite numbers, else a ScoreError naming the row and the column."""
    out = []
    for column, cell in zip(columns, cells):
        try:
            value = float(cell)
        except ValueError:
            raise ScoreError(f"{what} row {row_id!r} has a value that is not a number: {column} = {cell!r}") from None
        if math.isnan(value) or math.isinf(value):
            raise ScoreError(f"{what} row {row_id!r} has NaN or infinite values: {column} = {cell}")
        out.append(value)
    return out


def probabilities(what: str, row_id: str, columns: List[str], cells: List[str]) -> List[float]:
    """Numbers in [0, 1]; with several columns they sum to 1 (one column: the positive class's probability)."""
    probs = numbers(what, row_id, columns, cells)
    for column, p in zip(columns, probs):
        if p < 0 or p > 1:
            raise ScoreError(f"{what} row {row_id!r} has values outside [0, 1]: {column} = {p} (all target values "
                             f"in {what.lower()} must be at least zero and no greater than one)")
    if len(probs) > 1 and abs(sum(probs) - 1.0) > ROW_SUM_TOLERANCE:
        raise ScoreError(f"{what} row {row_id!r} sums to {sum(probs):.6f}, not 1 (target values in {what.lower()} "
                         "do not add to one within all rows)")
    return probs


def binary(what: str, row_id: str, columns: List[str], cells: List[str]) -> List[float]:
    """A truth of 0 or 1 per column."""
    values = numbers(what, row_id, columns, cells)
    for column, v in zip(columns, values):
        if v not in (0.0, 1.0):
            raise ScoreError(f"{what} row {row_id!r} has a value that is neither 0 nor 1: {column} = {v:g}")
    return values


def _cells(what: str, row_id: str, columns: List[str], cells: List[str], read: Callable[[str], object]) -> list:
    """Each cell read by ``read``; an empty one (nothing left after reading) is a ScoreError naming the column."""
    out = []
    for column, cell in zip(columns, cells):
        value = read(cell)
        if not value:
            raise ScoreError(f"{what} row {row_id!r} has an empty value: {column}")
        out.append(value)
    return out


def labels(what: str, row_id: str, columns: List[str], cells: List[str]) -> List[str]:
    """The row's cells as labels (compared as written, surrounding spaces dropped), none empty."""
    return _cells(what, row_id, columns, cells, str.strip)


def ranked(what: str, row_id: str, columns: List[str], cells: List[str]) -> List[List[str]]:
    """Each cell as its space-separated labels, best first (the truth: the correct label or labels)."""
    return _cells(what, row_id, columns, cells, str.split)


# --------------------------------------------------------------------------- scores

def log_loss(truth: Rows, predicted: Rows) -> float:
    total = 0.0
    for y, p in zip(truth, predicted):
        if len(p) == 1:  # binary: the positive class's probability
            y, p = [y[0], 1 - y[0]], [p[0], 1 - p[0]]
        clipped = [min(max(v, EPS), 1 - EPS) for v in p]
        norm = sum(clipped)
        total -= sum(t * math.log(v / norm) for t, v in zip(y, clipped))
    return total / max(len(truth), 1)


def accuracy(truth: Rows, predicted: Rows) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score([t[0] for t in truth], [p[0] for p in predicted]))


def macro_f1(truth: Rows, predicted: Rows) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score([t[0] for t in truth], [p[0] for p in predicted], average="macro", zero_division=0))


def roc_auc(truth: Rows, predicted: Rows) -> float:
    from sklearn.metrics import roc_auc_score

    one = not truth or len(truth[0]) == 1
    y = [t[0] for t in truth] if one else [list(t) for t in truth]
    p = [q[0] for q in predicted] if one else [list(q) for q in predicted]
    if any(len(set(column)) < 2 for column in ([y] if one else zip(*y))):
        raise ScoreError("Only one class present in y_true. ROC AUC score is not defined in that case.")
    return float(roc_auc_score(y, p, average="macro"))


def average_precision_at_k(actual: Sequence[str], predicted: Sequence[str], k: int = MAP_K) -> float:
    """Kaggle's AP@K: precision at each position holding a correct label seen for the first time, over
    min(len(actual), k)."""
    predicted = list(predicted)[:k]
    hits, total = 0, 0.0
    for i, label in enumerate(predicted):
        if label in actual and label not in predicted[:i]:
            hits += 1
            total += hits / (i + 1)
    return total / min(len(actual), k) if actual else 0.0


def map_at_3(truth: Rows, predicted: Rows) -> float:
    scores = [average_precision_at_k(t[0], p[0]) for t, p in zip(truth, predicted)]
    return sum(scores) / max(len(scores), 1)


def rmse(truth: Rows, predicted: Rows) -> float:
    squared = [(p - t) ** 2 for y, q in zip(truth, predicted) for t, p in zip(y, q)]
    return math.sqrt(sum(squared) / max(len(squared), 1))


LOG_LOSS = register(Metric(FACTS["log_loss"], probabilities, log_loss, aliases=("multiclass log loss",)))
ACCURACY = register(Metric(FACTS["accuracy"], labels, accuracy, columns=1))
ROC_AUC = register(Metric(FACTS["roc_auc"], numbers, roc_auc, truth=binary))
MACRO_F1 = register(Metric(FACTS["macro_f1"], labels, macro_f1, columns=1))
MAP_AT_3 = register(Metric(FACTS["map_at_3"], ranked, map_at_3, columns=1))
RMSE = register(Metric(FACTS["rmse"], numbers, rmse))
