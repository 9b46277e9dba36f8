"""The metrics competitions are scored by: one table of facts, read by every layer that names or orders scores.

A :class:`MetricFacts` says what a metric is called (``log_loss``, the name kagflow.toml's ``[data] metric`` and the
local Kaggle use), how it reads in words, its direction (which score is best), what a submission gives it
(probabilities, labels, the top 3 labels of a row, or plain numbers) and what a task needs for it (two labels for
ROC AUC, three for MAP@3). The local scorer (``kagflow.local.server.metrics``) implements each by its name; the
config checks ``[data]`` against it; status, submissions, the flow's report and the leaderboard order by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import get_close_matches
from typing import Callable, Iterable, Optional, TypeVar

from kagflow.errors import KagflowError

# What a submission's value columns hold for a metric
PROBABILITIES = "probabilities"  # one probability per label (or, binary, the positive label's)
LABELS = "labels"                # one label per row
TOP3 = "top-3 labels"            # up to 3 space-separated labels per row, best first (MAP@3)
NUMBERS = "numbers"              # any real numbers (regression)

T = TypeVar("T")


@dataclass(frozen=True)
class MetricFacts:
    name: str                  # kagflow.toml's [data] metric, the local Kaggle's competitions table
    display: str               # in words ("log loss"), what a report and ApiCompetition.evaluationMetric say
    higher_is_better: bool
    reads: str                 # PROBABILITIES | LABELS | TOP3 | NUMBERS
    binary_only: bool = False  # needs exactly two labels
    min_labels: int = 2
    classification: bool = True  # a [data] metric (the text-classification tasks kagflow trains for)

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` beats score ``b``."""
        return a > b if self.higher_is_better else a < b

    def best(self, items: Iterable[T], score: Callable[[T], Optional[float]]) -> Optional[T]:
        """The item of the best score (the earliest of equals); items without a score are skipped."""
        found: Optional[T] = None
        for item in items:
            value = score(item)
            if value is not None and (found is None or self.better(value, score(found))):
                found = item
        return found

    def sort_key(self, score: float) -> float:
        """Ascending order of this key is best first."""
        return -score if self.higher_is_better else score


METRICS = {m.name: m for m in (
    MetricFacts("log_loss", "log loss", False, PROBABILITIES),
    MetricFacts("accuracy", "accuracy", True, LABELS),
    MetricFacts("roc_auc", "ROC AUC", True, PROBABILITIES, binary_only=True),
    MetricFacts("macro_f1", "macro F1", True, LABELS),
    MetricFacts("map_at_3", "MAP@3", True, TOP3, min_labels=3),
    MetricFacts("rmse", "root mean squared error", False, NUMBERS, classification=False),
)}
CLASSIFICATION = tuple(name for name, m in METRICS.items() if m.classification)


def metric(name: str, *, known: Iterable[str] = tuple(METRICS)) -> MetricFacts:
    """The facts of metric ``name`` (one of ``known``); a KagflowError with a did-you-mean otherwise."""
    known = tuple(known)
    if name in known:
        return METRICS[name]
    raise KagflowError(f"unknown metric {name!r}", context="known metrics: " + ", ".join(known),
                       hint=f"did you mean {close[0]!r}?" if (close := suggest(name, known)) else
                       "use one of " + ", ".join(known))


def suggest(name: str, known: Iterable[str]) -> list[str]:
    """Names of ``known`` close to ``name`` (``auc`` -> ``roc_auc``, ``logloss`` -> ``log_loss``, ``f1`` ...)."""
    known = list(known)
    key = str(name).lower().replace("-", "_").replace(" ", "_").replace("@", "_at_")
    close = get_close_matches(key, known, n=1, cutoff=0.6)
    return close or [k for k in known if key and (key in k or key.replace("_", "") in k.replace("_", ""))][:1]
