"""Folds and ensembles: which folds a flow trains (``--folds 0-4`` or ``[train] folds``), and the
out-of-fold estimate of the ensemble from each fold's validation predictions (``id,label,<a probability per
label>``), by ``[data] metric``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from kagflow.errors import ConfigError, DataError

PREDICTIONS = "val_predictions.csv"  # written by the training notebook (classifier.metrics.write_predictions)


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


def oof_score(outputs: Iterable[Path], task) -> tuple[Optional[float], int]:
    """([data] metric, rows) over the validation predictions of every fold's output, pooled: the out-of-fold
    estimate of ``task`` (the classifier's Task), by the classifier's own evaluation (what scored each fold). None
    when no fold wrote predictions, or the metric is undefined on them (ROC AUC of one class)."""
    labels, probs = oof_predictions(outputs, task)
    if not labels:
        return None, 0
    from kagflow.classifier.metrics import evaluate

    value = evaluate(labels, probs, task)["metric_value"]
    return (float(value) if value is not None else None), len(labels)


@dataclass(frozen=True)
class Temperature:
    value: float  # T, 1.0 where not fitted
    line: str  # what was done, for the log


def oof_temperature(outputs: Iterable[Path], task) -> Temperature:
    """``[infer] temperature = "oof"``: the T (``classifier.calibration.fit_temperature``) over every fold's
    validation predictions, pooled; 1.0 where ``task``'s metric is not log loss (T does not change an argmax) or no
    fold wrote predictions."""
    outputs = list(outputs)
    if task.metric != "log_loss":
        return Temperature(1.0, f"temperature: not fitted ([data] metric = {task.metric!r} depends on the argmax, "
                                "which a temperature does not change): T = 1")
    labels, probs = oof_predictions(outputs, task)
    if not labels:
        raise DataError(f"[infer] temperature = \"oof\": no {PREDICTIONS} in the training output(s) "
                        f"{', '.join(map(str, outputs)) or '(none)'}",
                        hint="train again (`kagflow flow --from train`), or set [infer] temperature = \"none\" or "
                             "a number")
    from kagflow.classifier.calibration import apply_temperature, fit_temperature, log_loss

    t = fit_temperature(labels, probs)
    return Temperature(t, f"temperature: T = {t:.4f} fitted on {len(labels)} out-of-fold rows (log loss "
                          f"{log_loss(labels, probs):.4f} -> {log_loss(labels, apply_temperature(probs, t)):.4f})")


def oof_predictions(outputs: Iterable[Path], task) -> tuple[list, list]:
    """(labels, probabilities) of every output's validation predictions, pooled."""
    labels, probs = [], []
    for output in outputs:
        found = sorted(Path(output).rglob(PREDICTIONS))
        if not found:
            continue
        with open(found[0], newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("label", *task.probability_columns) if c not in (reader.fieldnames or ())]
            if missing:
                raise DataError(f"{found[0]} has no column(s) {missing}: it was not written for this [data] table "
                                f"(its columns: {', '.join(reader.fieldnames or ())})",
                                context=f"[data] labels: {', '.join(task.class_names)}",
                                hint="train the folds again under this [data] table: kagflow flow --from train")
            for row in reader:
                labels.append(int(row["label"]))
                probs.append([float(row[c]) for c in task.probability_columns])
    return labels, probs
