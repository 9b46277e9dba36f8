"""Evaluation by the task: log loss, accuracy, macro-F1, ROC AUC (binary: P(the last label)), MAP@3 (3 or more
labels), the task's metric with its direction, the confusion matrix with the task's label names."""

from __future__ import annotations

import json
from pathlib import Path

from .task import TOP_K, Task


def top_k(probs, k: int = TOP_K):
    """Each row's ``k`` most probable classes, best first (ties: the lower class first)."""
    import numpy as np

    return np.argsort(-np.asarray(probs, dtype=np.float64), axis=1, kind="stable")[:, :k]


def map_at_k(labels, probs, k: int = TOP_K) -> float:
    """Mean average precision at ``k`` with one true label per row: 1/rank of the truth among the top ``k``."""
    import numpy as np

    hits = top_k(probs, k) == np.asarray(labels)[:, None]
    return float((hits / np.arange(1, hits.shape[1] + 1)).sum(axis=1).mean())


def roc_auc(labels, probs) -> float | None:
    """ROC AUC of P(the last label) of a binary task; None when the rows hold one class only (undefined)."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        return None
    return float(roc_auc_score(labels == 1, np.asarray(probs)[:, 1]))


def evaluate(labels, probs, task: Task | None = None) -> dict:
    """Metrics of class probabilities ``probs`` (n x labels) against integer ``labels``; ``metric``,
    ``metric_value`` and ``metric_direction`` ("higher"/"lower" is better) are the task's (default: LMSYS)."""
    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss

    task = task or Task()
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    classes = list(task.id2label)
    predicted = probs.argmax(axis=1)
    scores = {
        "n": int(len(labels)),
        "log_loss": float(log_loss(labels, probs, labels=classes)),
        "accuracy": float(accuracy_score(labels, predicted)),
        # over the labels the rows hold or are predicted (scikit-learn's default, as Kaggle's scorer): a label a
        # validation fold never sees nor predicts is no zero in the average
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "labels": list(task.class_names),
    }
    if len(classes) == 2:
        scores["roc_auc"] = roc_auc(labels, probs)
    if len(classes) >= TOP_K:
        scores["map_at_3"] = map_at_k(labels, probs)
    scores.update(metric=task.metric, metric_value=scores[task.metric], metric_direction=task.direction)
    return scores


def save_confusion_matrix(matrix, path, names) -> Path:
    """Row-normalised confusion matrix of the classes ``names`` as a PNG (Agg canvas: no pyplot, no display)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = list(names)
    side = max(4.0, 0.9 * len(names) + 1.5)
    fig = Figure(figsize=(side + 0.5, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30 if max(map(len, names)) > 6 else 0, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


LOSS_CURVE = "loss_curve.png"


def save_loss_curve(train, val, path) -> Path:
    """Training loss per logged step and validation loss per evaluation (``[(step, loss)]`` each) against the
    step, as a PNG beside the confusion matrix (Agg canvas, like it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="train loss (per logged step)", color="tab:blue", linewidth=1.5)
    if val:
        ax.plot(*zip(*val), label="validation log loss", color="tab:orange", marker="o", linewidth=1.5)
    if not train and not val:
        ax.text(0.5, 0.5, "no loss was logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if train or val:
        ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def logged_losses(step_losses, every: int) -> list[tuple[int, float]]:
    """``[(step, mean loss since the previous one)]`` at the steps the fast loop logs (every ``every``-th and the
    last) from its loss of each step."""
    every, n = max(1, int(every)), len(step_losses)
    points, previous = [], 0
    for end in [*range(every, n + 1, every), *([n] if n % every else [])]:
        points.append((end, sum(step_losses[previous:end]) / (end - previous)))
        previous = end
    return points


def history_losses(log_history) -> tuple[list, list]:
    """(train, validation) ``[(step, loss)]`` of the HF Trainer's ``state.log_history``."""
    train = [(h["step"], float(h["loss"])) for h in log_history if "loss" in h and "step" in h]
    val = [(h["step"], float(h["eval_log_loss"])) for h in log_history if "eval_log_loss" in h and "step" in h]
    return train, val


def with_final(val, step: int, loss: float) -> list:
    """The validation points with the final evaluation at ``step`` (replacing one made at that step already)."""
    return [p for p in val if p[0] != step] + [(step, loss)]


def write_metrics(metrics: dict, path) -> Path:
    """metrics.json, pretty-printed."""
    path = Path(path)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def write_predictions(path, ids, labels, probs, columns) -> None:
    """``id,label,<columns>``: a fold's validation predictions (label: the class index; a probability per class,
    ``columns`` the task's ``probability_columns``: LMSYS ``winner_model_a,winner_model_b,winner_tie``)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "label", *columns])
        for i, y, p in zip(ids, labels, probs):
            out.writerow([i, int(y), *(f"{float(v):.8f}" for v in p)])
