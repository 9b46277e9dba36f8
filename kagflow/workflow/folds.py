"""Folds and ensembles: which folds a flow trains (``--folds 0-4`` or ``[train] folds``), and the
out-of-fold estimate of the ensemble from each fold's validation predictions."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Iterable, Optional

from kagflow.errors import ConfigError

PREDICTIONS = "val_predictions.csv"  # written by the training notebook (classifier.metrics.write_predictions)
COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")


def parse_folds(text: str, n_splits: int) -> tuple[int, ...]:
    """``"0-4"``, ``"0,2,3"`` or ``"1"`` -> the fold indices, each below ``n_splits``, in order, once each."""
    folds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, sep, hi = part.partition("-")
            folds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise ConfigError(f"--folds {text!r} is not a list of fold numbers",
                          hint="write --folds 0-4, --folds 0,2 or --folds 1") from None
    bad = [f for f in folds if not 0 <= f < n_splits]
    if not folds or bad:
        raise ConfigError(f"--folds {text!r}: fold(s) {bad or folds} outside 0..{n_splits - 1}",
                          context=f"[train] n_splits = {n_splits}", hint=f"use folds from 0 to {n_splits - 1}")
    return tuple(dict.fromkeys(folds))


def check_folds(folds: Iterable[int], n_splits: int) -> tuple[int, ...]:
    """[train] folds checked against n_splits (the same rule as --folds)."""
    folds = tuple(folds)
    return parse_folds(",".join(map(str, folds)), n_splits) if folds else ()


def oof_log_loss(outputs: Iterable[Path]) -> tuple[Optional[float], int]:
    """(log loss, rows) over the validation predictions of every fold's output: the out-of-fold estimate."""
    total, rows = 0.0, 0
    for output in outputs:
        found = sorted(Path(output).rglob(PREDICTIONS))
        if not found:
            continue
        with open(found[0], newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                probs = [float(row[c]) for c in COLUMNS]
                p = probs[int(row["label"])] / sum(probs)
                total -= math.log(min(max(p, 1e-15), 1 - 1e-15))
                rows += 1
    return (total / rows if rows else None), rows
