"""Tiny random decoder checkpoints (Gemma 2 by default; Llama, Qwen 3) with a locally trained tokenizer,
for offline runs and for the tests that every family goes through the same train and infer code."""

from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>", "<unk>")  # ids 0..3, Gemma's order
# family -> (transformers model_type, whether its tokenizer has a pad token: Llama 3's has none)
FAMILIES = {"gemma2": ("gemma2", True), "llama": ("llama", False), "qwen3": ("qwen3", True)}


def make_tiny_checkpoint(out_dir, *, seed: int = 0, hidden_size: int = 128, num_layers: int = 2,
                         vocab_size: int = 1024, family: str = "gemma2") -> Path:
    """Write a random causal-LM checkpoint of ``family`` (safetensors) plus tokenizer to ``out_dir``.

    Loads with ``AutoModelForSequenceClassification.from_pretrained`` (the score head is new), like
    the real base. Deterministic given ``seed``.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    model_type, has_pad = FAMILIES[family]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size, seed, pad=has_pad)
    heads = max(1, hidden_size // 32)
    shape = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        head_dim=hidden_size // heads,
        max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if model_type == "gemma2":
        shape.update(query_pre_attn_scalar=hidden_size // heads, sliding_window=4096)
    config = AutoConfig.for_model(model_type, **shape)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _train_tokenizer(vocab_size: int, seed: int, *, pad: bool = True):
    """Train a byte-level BPE on synthetic text; wrap it as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .synth import corpus

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>" if pad else None, eos_token="<eos>", bos_token="<bos>", unk_token="<unk>",
        padding_side="right",
    )
