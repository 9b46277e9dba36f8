"""The top decoder layer past its attention computes the pooled token only.

The score head reads one hidden state per row: the last real token's (transformers' rule, ``model``'s module
docstring). In the top decoder layer every other token's query, attention output and MLP feed nothing, so
``pool_top_layer`` wraps that layer's query and output projections and its MLP (``PooledOnly``): they compute each
row's pooled token and leave zeros elsewhere. Keys and values still come from every token, so the pooled token's
hidden state is the one the whole layer computes. For Gemma 2 9B that is 93 % of the top layer's matmul work, one
layer in 42 (bench/RESULTS.md, sixth measurement).

A forward pre-hook on the decoder stack (the classifier's ``base_model``) finds each row's pooled position from
``input_ids`` (as the score head does: the rightmost token that is not the pad id) before the layers run; a forward
hook clears it after, so a layer called any other way computes every token. Wrapping works the same for every
decoder family kagflow loads (``self_attn.q_proj``, ``self_attn.o_proj`` and ``mlp`` in each) and inside a compiled
layer (``compiling``: the positions are a graph input, not a constant: no recompilation per batch).

Padded batches only: packed rows (flex attention, ``packing``) pool several tokens per row, so
``predict.prepare_for_inference`` installs this for the recipe's padded inference (``infer_pool_top_layer``).
Imports only torch.
"""

from __future__ import annotations

import torch
from torch import nn

WRAPPED = ("self_attn.q_proj", "self_attn.o_proj", "mlp")  # per token; nothing but the pooled token needs them


class PooledPositions:
    """Each row's pooled position in the batch running now ([rows] int64), or None: compute every token."""

    rows: torch.Tensor | None = None


class PooledOnly(nn.Module):
    """``inner`` (a token-wise module: [rows, tokens, in] -> [rows, tokens, out]) at each row's pooled position
    only, zeros at the others; every token when ``positions.rows`` is None or is not for this batch."""

    def __init__(self, inner: nn.Module, positions: PooledPositions):
        super().__init__()
        self.inner = inner
        self.positions = positions  # a plain object, not a module: shared by the wrappers and the hooks

    def forward(self, x, *args, **kwargs):
        rows = self.positions.rows
        if rows is None or x.dim() != 3 or rows.shape[0] != x.shape[0]:
            return self.inner(x, *args, **kwargs)
        batch = torch.arange(x.shape[0], device=x.device)
        picked = self.inner(x[batch, rows].unsqueeze(1), *args, **kwargs)
        out = picked.new_zeros((x.shape[0], x.shape[1], picked.shape[-1]))
        out[batch, rows] = picked[:, 0]
        return out


def last_real_token(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Each row's pooled position, by the rule of transformers' score head: the rightmost token that is not
    ``pad_token_id`` (either padding side); without a pad id, the last."""
    rows, width = input_ids.shape
    if pad_token_id is None:
        return torch.full((rows,), width - 1, dtype=torch.long, device=input_ids.device)
    index = torch.arange(width, device=input_ids.device, dtype=torch.int32)
    return (index * (input_ids != pad_token_id).to(torch.int32)).argmax(-1).long()


def pool_top_layer(model) -> bool:
    """Make ``model``'s top decoder layer compute the pooled token only past its attention (module docstring).

    ``model``: a transformers sequence classifier or a PeftModel of one, in its final form for inference (merged,
    made dense: this wraps modules in place). Idempotent. Returns whether the top layer is pooled."""
    from .compiling import decoder_layers
    from .dequant import _set_child

    layers = decoder_layers(model)
    if not layers:
        return False
    top = layers[-1]
    if any(isinstance(m, PooledOnly) for m in top.modules()):
        return True
    modules = dict(top.named_modules())
    targets = [(name, modules[name]) for name in WRAPPED if name in modules]
    if not targets:
        return False
    clf = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = clf.config.get_text_config() if hasattr(clf.config, "get_text_config") else clf.config
    positions = PooledPositions()
    for name, module in targets:
        _set_child(top, name, PooledOnly(module, positions))

    def find(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        ok = isinstance(ids, torch.Tensor) and ids.dim() == 2 and kwargs.get("inputs_embeds") is None
        positions.rows = last_real_token(ids, text.pad_token_id) if ok else None

    def clear(*_):
        positions.rows = None

    stack = getattr(clf, "base_model", clf)  # the decoder stack: gets input_ids, runs the layers
    stack.register_forward_pre_hook(find, with_kwargs=True)
    stack.register_forward_hook(clear, always_call=True)
    return True
