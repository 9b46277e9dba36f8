#!/usr/bin/env python3
"""Where the first flex-attention inference batch's time goes at a 16,384-token packed width (#13's first
pass): a 4-layer Gemma-2-9B-shaped bf16 model, packed rows, the block mask built by kagflow's block-level
builder (``--mask rows``) or by torch's compiled ``create_block_mask`` (``--mask compiled``); prints the
time of the mask and of batches 1-3 (new row layouts each) and Dynamo's compile times.

    TORCH_LOGS=recompiles python3 bench/diag_flex_first.py --mask rows
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kagflow.classifier import packing  # noqa: E402
from kagflow.classifier.batching import classification_logits  # noqa: E402
from kagflow.classifier.recipe import set_attn_implementation  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mask", choices=["rows", "compiled"], default="rows")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=16384)
    args = ap.parse_args()
    from transformers import Gemma2Config, Gemma2ForSequenceClassification

    cfg = Gemma2Config(vocab_size=256000, hidden_size=3584, intermediate_size=14336, num_hidden_layers=args.layers,
                       num_attention_heads=16, num_key_value_heads=8, head_dim=256, query_pre_attn_scalar=256,
                       sliding_window=4096, attn_logit_softcapping=50.0, num_labels=3, pad_token_id=0)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Gemma2ForSequenceClassification(cfg).to(torch.bfloat16).eval()
    set_attn_implementation(model, "flex_attention")
    if args.mask == "compiled":
        from torch.nn.attention.flex_attention import create_block_mask

        def builder(pb, mod):
            return create_block_mask(mod, 1, None, pb.width, pb.width, device=pb.doc_ids.device, _compile=True)
        packing.row_causal_block_mask = builder
    g = torch.Generator().manual_seed(1)
    out = {"mask": args.mask, "width": args.width}
    for k in range(3):
        lengths = torch.randint(100, 2048, (64,), generator=g).tolist()
        rows = packing.pack_rows(lengths, args.width)[0]
        seqs = [torch.randint(4, 256000, (lengths[i],), generator=g).tolist() for i in rows]
        pb = packing.packed_batch(seqs, width=args.width, device="cuda")
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        masks = packing.attention_masks(pb, cfg)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        with torch.inference_mode():
            logits = classification_logits(model, pb)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        out[f"batch{k + 1}"] = {"mask_s": round(t1 - t0, 3), "forward_s": round(t2 - t1, 3), "rows": len(rows),
                                "finite": bool(torch.isfinite(logits).all())}
        print(out[f"batch{k + 1}"], flush=True)
        del masks
    from torch._dynamo.utils import compile_times

    out["compile_times"] = compile_times(repr="str", aggregate=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
