"""Batches for the classifier: rows sorted by length under a padded-token budget, or packed rows.

Batches are built under a token budget from rows sorted by length (padding waste of a few percent
instead of ~40 % for random batches), for training micro-batches and for inference; a model that runs
flex attention gets packed rows instead (``packing``: one fixed width, so flex compiles once).
Optimizer steps group rows of similar length (``plan_steps``); under data parallelism each step's rows
are dealt over the processes with balanced tokens (``deal_rows``). ``classification_logits`` runs a
model on either kind of batch.

Imports only the stdlib and torch.
"""

from __future__ import annotations

import math
import random
from typing import Iterable, Sequence

import torch

from .loss import label_tensor
from .packing import PackedBatch, bucket_width, pack_rows, packed_batch, packed_logits, uses_packing
from .recipe import Recipe


def _round_up(n: int, m: int) -> int:
    return ((n + m - 1) // m) * m if m > 1 else n


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None, *,
                         pad_to_multiple_of: int = 1, descending: bool = True) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches sorted by length under a padded-token budget.

    Each batch costs ``rows * max(padded length in batch)``; it stays <= ``max_tokens`` unless a
    single row alone exceeds it (then that row is a batch of its own). Rows are sorted by length
    (longest first by default, so the peak memory shows up in the first batch); within a batch the
    indices follow that order. Every index appears exactly once.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    if max_rows is not None and max_rows < 1:
        raise ValueError("max_rows must be >= 1")
    n = len(lengths)
    sign = -1 if descending else 1
    order = sorted(range(n), key=lambda i: (sign * int(lengths[i]), i))
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        length = _round_up(max(int(lengths[i]), 1), pad_to_multiple_of)
        new_max = max(cur_max, length)
        if cur and (new_max * (len(cur) + 1) > max_tokens or (max_rows is not None and len(cur) >= max_rows)):
            batches.append(cur)
            cur, new_max = [], length
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


def length_grouped_steps(lengths: Sequence[int], rows_per_step: int, *, seed: int = 0,
                         mega_mult: int = 50, drop_last: bool = False) -> list[list[int]]:
    """Optimizer steps of ``rows_per_step`` rows of similar length (like HF's group_by_length).

    Shuffle, cut into mega-batches of ``rows_per_step * mega_mult`` rows, sort each by length
    (longest first), cut into steps. The step order is then shuffled so that the training sees
    no length curriculum. Each step is later split into micro-batches by ``token_budget_batches``.
    """
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = rows_per_step * mega_mult
    steps: list[list[int]] = []
    for s in range(0, len(idx), mega):
        chunk = sorted(idx[s:s + mega], key=lambda i: -int(lengths[i]))
        steps.extend(chunk[j:j + rows_per_step] for j in range(0, len(chunk), rows_per_step))
    if drop_last and steps and len(steps[-1]) < rows_per_step:
        steps.pop()
    rng.shuffle(steps)
    return steps


def pad_batch(seqs: Sequence[Sequence[int]], *, pad_id: int = 0, pad_to_multiple_of: int = 8,
              labels: Sequence[int] | None = None, device=None, padding_side: str = "right") -> dict:
    """Pad token id lists on ``padding_side`` (kagflow pads right: ``model.load_tokenizer``) into
    ``input_ids`` / ``attention_mask`` (+ ``labels``) tensors."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
    width = _round_up(max(len(s) for s in seqs), pad_to_multiple_of)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        span = slice(0, len(s)) if padding_side == "right" else slice(width - len(s), width)
        ids[r, span] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, span] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        out["labels"] = label_tensor(labels)
    if device is not None:
        out = {k: v.to(device, non_blocking=True) for k, v in out.items()}
    return out


def padding_efficiency(batches: Iterable[Sequence[int]], lengths: Sequence[int], pad_to_multiple_of: int = 1) -> float:
    """Useful tokens / padded tokens for a batching."""
    useful = padded = 0
    for b in batches:
        ls = [int(lengths[i]) for i in b]
        useful += sum(ls)
        padded += len(ls) * _round_up(max(ls), pad_to_multiple_of)
    return useful / padded if padded else 1.0


def plan_steps(lengths: Sequence[int], rows_per_step: int, epochs: float, seed: int) -> list[list[int]]:
    """The run's optimizer steps: ``length_grouped_steps`` once per (started) epoch, cut to ``epochs``."""
    steps: list[list[int]] = []
    for e in range(max(1, math.ceil(epochs))):
        steps += length_grouped_steps(lengths, rows_per_step, seed=seed + e)
    return steps[:max(1, int(round(len(steps) * epochs / max(1, math.ceil(epochs)))))]


def classification_logits(model, batch) -> torch.Tensor:
    """Logits [rows, labels] of a padded batch (``pad_batch``) or a ``packing.PackedBatch``."""
    if isinstance(batch, PackedBatch):
        return packed_logits(model, batch)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits


def batch_labels(batch) -> torch.Tensor:
    """The labels of a padded batch or a ``packing.PackedBatch``."""
    return batch.labels if isinstance(batch, PackedBatch) else batch["labels"]


def training_batches(seqs: Sequence[Sequence[int]], labels: Sequence[int], recipe: Recipe, *, pad_id: int = 0,
                     device=None) -> list:
    """One optimizer step's rows as micro-batches under ``recipe.train_max_tokens``: packed rows
    (``recipe.pack``, widths rounded up to ``pack_bucket``) or length-sorted padded batches."""
    lengths = [len(q) for q in seqs]
    budget = recipe.train_max_tokens
    if recipe.pack:
        bucket = recipe.pack_bucket
        return [packed_batch([seqs[i] for i in g], width=bucket_width(sum(lengths[i] for i in g), bucket),
                             pad_id=pad_id, labels=[labels[i] for i in g], device=device)
                for g in pack_rows(lengths, budget)]
    mult = recipe.pad_to_multiple_of
    return [pad_batch([seqs[i] for i in g], pad_id=pad_id, pad_to_multiple_of=mult, labels=[labels[i] for i in g],
                      device=device) for g in token_budget_batches(lengths, budget, pad_to_multiple_of=mult)]


def inference_batches(model, lengths: Sequence[int], max_tokens: int, max_rows: int | None = 64, *,
                      padding_side: str = "right"):
    """(row indices, make(seqs, pad_id, device)) for inference: packed rows of exactly ``max_tokens``
    when ``model`` runs flex attention (one shape: flex compiles once), else length-sorted padded batches."""
    if uses_packing(model):
        for g in pack_rows(lengths, max_tokens):
            width = bucket_width(sum(int(lengths[i]) for i in g), 128, max_tokens)
            yield g, lambda seqs, pad_id, device, w=width: packed_batch(seqs, width=w, pad_id=pad_id, device=device)
    else:
        for g in token_budget_batches(lengths, max_tokens, max_rows):
            yield g, lambda seqs, pad_id, device: pad_batch(seqs, pad_id=pad_id, pad_to_multiple_of=8, device=device,
                                                            padding_side=padding_side)


def deal_rows(step: Sequence[int], lengths: Sequence[int], world: int) -> list[list[int]]:
    """One optimizer step's rows dealt over ``world`` data-parallel processes with balanced tokens: longest
    first, each to the process with the fewest tokens so far (ties: the lowest rank). The same on every
    process (a pure function of the step); each row goes to exactly one process."""
    parts: list[list[int]] = [[] for _ in range(world)]
    load = [0] * world
    for i in sorted(step, key=lambda i: (-int(lengths[i]), i)):
        r = min(range(world), key=lambda k: (load[k], k))
        parts[r].append(i)
        load[r] += int(lengths[i])
    return parts
