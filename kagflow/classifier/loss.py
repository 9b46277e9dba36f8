"""The training loss: cross-entropy over the task's classes, each row weighted by its class (``[train]
class_weights``: one weight per label, in the order of ``[data]``'s labels, or ``"balanced"``), in both training
loops.

A step's loss is the mean over its rows of ``weight[label] * cross_entropy`` (every weight 1: the plain
mean cross-entropy), so splitting a step into micro-batches, over GPUs or over gradient accumulation
does not change it. ``"balanced"`` weights are sklearn's ``n_rows / (n_classes * count[class])``:
each class adds the same total weight, and the mean weight over the training rows is 1. With probability
targets (``[train] soft_labels``, pseudo-labels) a row is counted in its most probable class and weighted by its
target's expected class weight.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence


def resolve_class_weights(spec, labels: Sequence[int], names: Sequence[str]) -> Optional[list[float]]:
    """The per-class weights ``spec`` asks for (None: unweighted) given the training ``labels`` (class indices)
    of the classes ``names`` (the task's ``class_names``)."""
    n = len(names)
    if spec in ("", None) or (isinstance(spec, (list, tuple)) and not spec):
        return None
    if spec == "balanced":
        counts = Counter(int(y) for y in labels)
        missing = [names[c] for c in range(n) if not counts[c]]
        if missing:
            raise ValueError(f"class_weights = 'balanced' needs rows of every class; {missing} have none")
        return [len(labels) / (n * counts[c]) for c in range(n)]
    if isinstance(spec, str):
        raise ValueError(f"class_weights = {spec!r}: use 'balanced' or a list of {n} numbers")
    weights = [float(w) for w in spec]
    if len(weights) != n or any(w <= 0 for w in weights):
        raise ValueError(f"class_weights = {list(spec)!r}: use {n} positive numbers "
                         f"({', '.join(names)}) or 'balanced'")
    return weights


def loss_sum(logits, labels, weights=None):
    """Sum over rows of ``weight[label] * cross_entropy`` (fp32); ``weights`` a tensor or None.

    ``labels`` are class indices (a long vector) or probability targets (a float [rows, classes] matrix,
    ``[train] soft_labels``): then each row's loss is the soft cross-entropy ``-sum_c t_c log p_c`` (KL to the
    target plus its entropy, a constant: the same gradient), equal to the hard one for one-hot targets, and a
    row's weight is its target's expected class weight ``sum_c t_c weight[c]`` (``weight[label]`` when one-hot)."""
    import torch.nn.functional as F

    logits = logits.float()
    if labels.dim() == 2:
        targets = labels.to(logits.device, logits.dtype)
        per_row = -(targets * F.log_softmax(logits, dim=-1)).sum(-1)
        if weights is not None:
            per_row = per_row * (targets @ weights.to(per_row.device, per_row.dtype))
        return per_row.sum()
    per_row = F.cross_entropy(logits, labels, reduction="none")
    if weights is not None:
        per_row = per_row * weights.to(per_row.device)[labels]
    return per_row.sum()


def hard_labels(targets) -> list[int]:
    """The class of each row's target (a class index, or the most probable class of a probability list): what
    ``"balanced"`` class weights count and the folds stratify by."""
    return [max(range(len(t)), key=t.__getitem__) if isinstance(t, (list, tuple)) else int(t) for t in targets]


def trainer_loss(weights):
    """The HF Trainer's ``compute_loss_func`` for ``weights`` (a tensor): the step's row-mean weighted loss."""
    def compute(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        total = num_items_in_batch if num_items_in_batch is not None else labels.shape[0]
        return loss_sum(logits, labels, weights) / total
    return compute


def label_tensor(labels):
    """A batch's labels as a tensor: class indices (long) or, where any row is a probability list, every row as
    one (float [rows, classes]; an index becomes its one-hot row), which ``loss_sum`` reads as soft targets."""
    import torch

    labels = list(labels)
    if not any(isinstance(y, (list, tuple)) for y in labels):
        return torch.as_tensor(labels, dtype=torch.long)
    width = len(next(y for y in labels if isinstance(y, (list, tuple))))
    rows = [list(y) if isinstance(y, (list, tuple)) else [float(c == int(y)) for c in range(width)] for y in labels]
    return torch.as_tensor(rows, dtype=torch.float32)
