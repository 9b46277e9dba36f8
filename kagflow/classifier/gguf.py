"""A GGUF file -> a plain Hugging Face checkpoint (bf16 safetensors + tokenizer), made once.

transformers dequantises a GGUF checkpoint on load (``from_pretrained(folder, gguf_file=...)``, which
brings the tokenizer too); ``save_pretrained`` refuses a model that still carries its GGUF quantizer,
so the quantizer and its ``quantization_config`` are dropped first. The copy then reloads in seconds
and goes through the same 4-bit ``from_pretrained`` as any base model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MARKER = "kagflow-gguf.json"  # written last: a folder without it is an unfinished conversion
# a sentence any subword tokenizer of a real model splits into about one token per word
PROBE = "The capital of France is Paris."


class TokenizerConversionError(ValueError):
    """transformers converted a GGUF file's tokenizer into one that splits words into single characters."""


def check_tokenizer(tokenizer, source: str) -> None:
    """Refuse a converted tokenizer that lost its merges. transformers 5.17's GGUF conversion of Gemma 3 270M's
    tokenizer splits every word into characters (30 tokens for ``PROBE``'s 6 words; 5.24 gives 7): the model
    then reads text it was never trained on, and fine-tuning it learns surface cues but none of what the base
    knows (bench/RESULTS.md, issue 33's knowledge check on the H200). The tokenizer file itself is the fault: the
    one 5.24 writes tokenizes right under 5.17 too."""
    import transformers

    ids = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    words = len(PROBE.split())
    if len(ids) > 2 * words:
        pieces = tokenizer.convert_ids_to_tokens(ids[:10])
        raise TokenizerConversionError(
            f"transformers {transformers.__version__} converted the tokenizer of {source} into one that splits "
            f"words into characters: {len(ids)} tokens for the {words} words of {PROBE!r} ({pieces} ...)")


def converted(out_dir, source_sha256: str) -> bool:
    """True when ``out_dir`` holds a finished conversion of the GGUF file with ``source_sha256``."""
    marker = Path(out_dir) / MARKER
    try:
        return json.loads(marker.read_text())["source_sha256"] == source_sha256
    except (OSError, ValueError, KeyError):
        return False


def convert_gguf(gguf_path, out_dir, *, source_sha256: str, dtype: str = "bfloat16", tokenizer_from=None) -> Path:
    """Write ``gguf_path`` as a ``dtype`` safetensors checkpoint with its tokenizer to ``out_dir``.

    Built in a sibling folder and moved into place, so an interrupted conversion never looks finished; a
    tokenizer converted into characters (``check_tokenizer``) is refused before anything is written.
    ``tokenizer_from``: a folder with the tokenizer files of this GGUF converted elsewhere (by a transformers whose
    conversion keeps the merges), used instead of this transformers' conversion; checked the same way.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path, out = Path(gguf_path), Path(out_dir)
    if tokenizer_from:
        source, tokenizer = str(tokenizer_from), AutoTokenizer.from_pretrained(str(tokenizer_from))
    else:
        source = gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    check_tokenizer(tokenizer, source)  # before the minutes of dequantising the weights
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=getattr(torch, dtype))
    model.hf_quantizer = None  # the weights are dequantised; save_pretrained refuses while it is set
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config  # else from_pretrained would look for the GGUF file again
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({"source": gguf_path.name, "source_sha256": source_sha256,
                                          "dtype": dtype, "transformers": transformers.__version__,
                                          "tokenizer_from": str(tokenizer_from) if tokenizer_from else None},
                                         indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
