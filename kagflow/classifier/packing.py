"""Sequence packing for flex attention: many rows in one fixed-width row, a block mask keeps them apart.

Padded batches give every new (rows, width) a new shape, and flex attention compiles per shape (~20-50 s
each on an H100/H200, bench/NOTES.md). Packing puts the rows of a batch end to end in ONE row of a fixed
width (inference: the card's token budget; training: the budget rounded up to a few buckets), each row
with its own positions (RoPE restarts at 0) and a document mask: a token attends to the earlier tokens of
its own row only (and within the sliding window on sliding layers), so every row is computed exactly as
it would be alone. Nothing is spent on padding except the tail of the last pack, and the shapes are few,
so flex compiles once (or once per bucket). The score head reads each row's last token.

Only for models that run flex attention (``attn_implementation="flex_attention"``: Gemma 2 on sm80+
GPUs, where the block mask is how the softcap-keeping kernel skips the blocks of other rows); eager and
SDPA keep padded batches (an eager packed row would build a width x width score matrix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .loss import label_tensor


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Row indices packed into bins of at most ``capacity`` tokens: first fit, longest rows first.

    Every index appears exactly once; a row longer than ``capacity`` gets a bin of its own. Within a bin
    the indices are longest first. Deterministic (ties by index)."""
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    order = sorted(range(len(lengths)), key=lambda i: (-int(lengths[i]), i))
    bins: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = max(1, int(lengths[i]))
        for b, free in enumerate(room):
            if n <= free:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room.append(capacity - n)
    return bins


def bucket_width(tokens: int, bucket: int, cap: int | None = None) -> int:
    """The packed row's width for ``tokens`` tokens: rounded up to a multiple of ``bucket`` (few shapes,
    few compiles), and to at least ``cap`` when ``cap`` is given and not smaller (a fixed width)."""
    width = -(-max(1, tokens) // bucket) * bucket
    return max(width, cap) if cap is not None else width


@dataclass(frozen=True)
class PackedBatch:
    """Rows packed end to end into one row of ``input_ids.shape[1]`` tokens.

    ``doc_ids[t]``: which row token t belongs to (the padding tail is row ``rows``, attending only to
    itself and earlier padding); ``ends``: the index of each row's last token (where the score head
    reads); ``labels``: one per row, or None; ``longest``: the longest row's length (known when packing,
    so choosing the sliding-window mask needs no read back from the device)."""

    input_ids: torch.Tensor  # [1, width]
    position_ids: torch.Tensor  # [1, width], restarting at 0 for every row
    doc_ids: torch.Tensor  # [width]
    ends: torch.Tensor  # [rows]
    labels: torch.Tensor | None = None
    longest: int = 0

    @property
    def rows(self) -> int:
        return int(self.ends.shape[0])

    @property
    def width(self) -> int:
        return int(self.input_ids.shape[1])


def packed_batch(seqs: Sequence[Sequence[int]], *, width: int, pad_id: int = 0,
                 labels: Sequence[int] | None = None, device=None) -> PackedBatch:
    """Pack token id lists (in the given order) into a ``PackedBatch`` of ``width`` tokens."""
    total = sum(len(s) for s in seqs)
    if any(len(s) == 0 for s in seqs):
        raise ValueError("cannot pack an empty row")
    if total > width:
        raise ValueError(f"{total} tokens do not fit a packed row of {width}")
    ids = torch.full((width,), pad_id, dtype=torch.long)
    pos = torch.empty((width,), dtype=torch.long)
    doc = torch.full((width,), len(seqs), dtype=torch.long)
    ends = torch.empty((len(seqs),), dtype=torch.long)
    o = 0
    for r, s in enumerate(seqs):
        n = len(s)
        ids[o:o + n] = torch.as_tensor(list(s), dtype=torch.long)
        pos[o:o + n] = torch.arange(n)
        doc[o:o + n] = r
        o += n
        ends[r] = o - 1
    pos[o:] = torch.arange(width - o)
    lab = label_tensor(labels) if labels is not None else None
    tensors = (ids[None], pos[None], doc, ends, lab)
    if device is not None:
        tensors = tuple(t.to(device, non_blocking=True) if t is not None else None for t in tensors)
    return PackedBatch(*tensors, longest=max(len(s) for s in seqs) if seqs else 0)


def attention_masks(packed: PackedBatch, config) -> dict:
    """Flex ``BlockMask``s per layer type of ``config`` ({"full_attention": ..., "sliding_attention": ...}):
    causal within each packed row; sliding layers also within ``config.sliding_window``. When no row is
    longer than the window the two are the same mask object (one compiled kernel serves both)."""
    from torch.nn.attention.flex_attention import create_block_mask

    doc = packed.doc_ids
    width = packed.width
    window = getattr(config, "sliding_window", None)
    types = set(getattr(config, "layer_types", None) or ["full_attention"])

    def same_row_causal(b, h, q, kv):
        return (doc[q] == doc[kv]) & (q >= kv)

    def in_window(b, h, q, kv):
        return (doc[q] == doc[kv]) & (q >= kv) & (q - kv < window)

    full = row_causal_block_mask(packed, same_row_causal)
    masks = {"full_attention": full}
    if "sliding_attention" in types:
        masks["sliding_attention"] = full if window is None or packed.longest <= window else create_block_mask(
            in_window, 1, None, width, width, device=doc.device, _compile=doc.device.type == "cuda")
    return masks


def row_causal_block_mask(packed: PackedBatch, mask_mod, block: int = 128):
    """The ``BlockMask`` of "causal within each packed row", built from the rows' boundaries per block pair
    (no width x width mask, nothing to compile: ``create_block_mask`` compiles a builder per width and took
    minutes at 16,384 tokens on an H200). Rows are contiguous and in order, so for query block i and key
    block j < i some pair may attend iff the last row of block j is the first row of block i, and every
    pair may iff both blocks lie in one row; the diagonal block is partial."""
    from torch.nn.attention.flex_attention import BlockMask

    doc = packed.doc_ids
    width = packed.width
    n = -(-width // block)
    # a width that is not a multiple of the block: the extra tokens join the padding row (id ``rows``)
    padded = torch.cat([doc, doc.new_full((n * block - width,), packed.rows)]) if n * block > width else doc
    blocks = padded.view(n, block)
    first, last = blocks[:, 0], blocks[:, -1]  # rows are non-decreasing along the packed row
    i = torch.arange(n, device=doc.device)[:, None]
    j = torch.arange(n, device=doc.device)[None, :]
    below = j < i
    full = below & (first[None, :] == last[:, None])  # key block j and query block i inside one row
    partial = (below & (last[None, :] == first[:, None]) & ~full) | (i == j)
    kv_num, kv_idx = _block_lists(partial)
    full_num, full_idx = _block_lists(full)
    return BlockMask.from_kv_blocks(kv_num[None, None], kv_idx[None, None], full_num[None, None], full_idx[None, None],
                                    BLOCK_SIZE=block, mask_mod=mask_mod, seq_lengths=(width, width))


def _block_lists(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(count per query block, key block indices, listed first and in order) of a boolean block matrix."""
    num = blocks.sum(dim=1, dtype=torch.int32)
    n = blocks.shape[1]
    # stable sort: True (key 0) before False (key 1), indices ascending within each
    order = torch.argsort((~blocks).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return num, order[:, :n].contiguous()


def sequence_classifier(model):
    """The ``*ForSequenceClassification`` module under a PeftModel (or the model itself): its decoder is
    ``.model`` and its head ``.score`` (LoRA layers and the head's adapter copy are injected in place)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not (hasattr(inner, "model") and hasattr(inner, "score")):
        raise TypeError(f"{type(inner).__name__} is not a decoder sequence classifier (.model + .score): "
                        "packing needs one")
    return inner


def packed_logits(model, packed: PackedBatch) -> torch.Tensor:
    """Logits [rows, num_labels] of every row of ``packed``: the decoder over the packed row with the
    document masks and per-row positions, the score head at each row's last token."""
    clf = sequence_classifier(model)
    masks = attention_masks(packed, clf.config)
    out = clf.model(input_ids=packed.input_ids, attention_mask=masks, position_ids=packed.position_ids,
                    use_cache=False)
    hidden = out.last_hidden_state[0].index_select(0, packed.ends)
    return clf.score(hidden)


def uses_packing(model) -> bool:
    """Whether ``model`` runs flex attention (then kagflow packs its batches)."""
    clf = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(getattr(clf, "config", None), "_attn_implementation", None) == "flex_attention"
