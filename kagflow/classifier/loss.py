"""The training loss: cross-entropy over the task's classes, each row weighted by its class (``[train]
class_weights``: one weight per label, in the order of ``[data]``'s labels, or ``"balanced"``), in both training
loops.

A step's loss is the mean over its rows of ``weight[label] * cross_entropy`` (every weight 1: the plain
mean cross-entropy), so splitting a step into micro-batches, over GPUs or over gradient accumulation
does not change it. ``"balanced"`` weights are sklearn's ``n_rows / (n_classes * count[class])``:
each class adds the same total weight, and the mean weight over the training rows is 1.
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
    """Sum over rows of ``weight[label] * cross_entropy`` (fp32); ``weights`` a tensor or None."""
    import torch.nn.functional as F

    per_row = F.cross_entropy(logits.float(), labels, reduction="none")
    if weights is not None:
        per_row = per_row * weights.to(per_row.device)[labels]
    return per_row.sum()


def trainer_loss(weights):
    """The HF Trainer's ``compute_loss_func`` for ``weights`` (a tensor): the step's row-mean weighted loss."""
    def compute(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        total = num_items_in_batch if num_items_in_batch is not None else labels.shape[0]
        return loss_sum(logits, labels, weights) / total
    return compute
