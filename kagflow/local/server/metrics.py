"""How local competitions are scored: one registry of metrics, keyed by name.

A competition is hosted with a metric name (``install_competition(..., metric="rmse")``). Its hidden
``solution.csv`` is an id column, then the columns the metric scores; a submission has the same columns. A
:class:`Metric` checks one row of cells (each solution row when the competition is hosted, each submission row
when it is scored: a :class:`ScoreError` naming the row and the column) and scores the whole, rows in the
solution's order. Both metrics below are lower-is-better, as their Kaggle counterparts:

    log_loss   probabilities: one column (binary: p of the positive class against a 0/1 truth) or several
               (multi-class: each row sums to 1, the truth one-hot or probabilities); clipped to
               [1e-15, 1 - 1e-15] and each row renormalised, as Kaggle's scorer
    rmse       numbers: the root mean squared error over every cell

Another metric is one ``register(Metric(...))`` here (the text-classification competitions of the same
workflow score accuracy, ROC AUC, macro-F1 and MAP@3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

EPS = 1e-15
ROW_SUM_TOLERANCE = 1e-3

Rows = Sequence[Sequence[float]]


class ScoreError(ValueError):
    """A submission (or solution) Kaggle's scorer would refuse; the message is what the submission's error says."""


@dataclass(frozen=True)
class Metric:
    name: str                    # what install_competition takes and the competitions table keeps
    title: str                   # what ApiCompetition.evaluationMetric says
    lower_is_better: bool        # the leaderboard's order
    row: Callable[[str, str, List[str], List[str]], List[float]]  # (what, row id, columns, cells) -> values
    score: Callable[[Rows, Rows], float]                         # (truth rows, predicted rows) -> score
    aliases: tuple = ()          # older names a data dir may hold


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
            raise ScoreError(f"{what} row {row_id!r} has values outside [0, 1]: {column} = {p}")
    if len(probs) > 1 and abs(sum(probs) - 1.0) > ROW_SUM_TOLERANCE:
        raise ScoreError(f"{what} row {row_id!r} sums to {sum(probs):.6f}, not 1")
    return probs


def log_loss(truth: Rows, predicted: Rows) -> float:
    total = 0.0
    for y, p in zip(truth, predicted):
        if len(p) == 1:  # binary: the positive class's probability
            y, p = [y[0], 1 - y[0]], [p[0], 1 - p[0]]
        clipped = [min(max(v, EPS), 1 - EPS) for v in p]
        norm = sum(clipped)
        total -= sum(t * math.log(v / norm) for t, v in zip(y, clipped))
    return total / max(len(truth), 1)


def rmse(truth: Rows, predicted: Rows) -> float:
    squared = [(p - t) ** 2 for y, q in zip(truth, predicted) for t, p in zip(y, q)]
    return math.sqrt(sum(squared) / max(len(squared), 1))


LOG_LOSS = register(Metric("log_loss", "log loss", True, probabilities, log_loss, aliases=("multiclass log loss",)))
RMSE = register(Metric("rmse", "root mean squared error", True, numbers, rmse))
