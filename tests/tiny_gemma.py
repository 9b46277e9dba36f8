"""A tiny random Gemma 2 sequence classifier saved to disk, for the CPU tests of the classifier's fast paths."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_gemma2(folder: Path, **config) -> Path:
    """Save a 3-label Gemma 2 (hidden 64, 2 heads of 32, vocab 256; ``config`` overrides, e.g. the layer count or
    the softcap) with weights drawn from N(0, 0.05) under seed 0 into ``folder``; returns it."""
    from transformers import Gemma2Config, Gemma2ForSequenceClassification

    cfg = Gemma2Config(**{**dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                                 num_labels=3, pad_token_id=0), **config})
    torch.manual_seed(0)
    ref = Gemma2ForSequenceClassification(cfg)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0, 0.05)
    ref.save_pretrained(folder)
    return Path(folder)
