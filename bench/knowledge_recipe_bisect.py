"""Which field of the big-card GPU recipe breaks the Gemma 3 270M's training (issue: chance on the H200, 0.99 on the
CPU)? On the CPU: load the stand-in as the CPU run does (fp32, 4-bit), prepare it with kagflow's recipe with the GPU
recipe's fields forced one group at a time, and compare each variant's logits, loss and score-head/LoRA gradients on
one batch of the knowledge set with the CPU recipe's (LoRA B starts at 0, so every variant must compute the base
model's function; bf16 differs from fp32 by rounding only).

    python bench/knowledge_recipe_bisect.py [--rows 16] [--variants cpu bf16 dequant ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VARIANTS = {  # name: (load dtype, recipe fields forced)
    "cpu": ("float32", {}),
    "bf16": ("bfloat16", {"dtype": "bfloat16"}),
    "dequant": ("float32", {"dequantize_for_training": True}),
    "bf16+dequant": ("bfloat16", {"dtype": "bfloat16", "dequantize_for_training": True}),
    "compile": ("float32", {"compile_layers": True}),
    "bf16+dequant+compile": ("bfloat16", {"dtype": "bfloat16", "dequantize_for_training": True,
                                          "compile_layers": True}),
    "dequant+compile": ("float32", {"dequantize_for_training": True, "compile_layers": True}),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--group", type=int, default=4, help="rows per micro-batch (length-sorted)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--train-mode", action="store_true", help="model.train() as fit_lora does")
    parser.add_argument("--backend", default="aot_eager", help="torch.compile backend of the compiled layers "
                                                                 "(the GPU's: inductor)")
    parser.add_argument("--steps", type=int, default=0, help="then this many optimizer steps (fit.lora_train_step, "
                                                             "lr 5e-4) on the same micro-batches: the loss per step")
    parser.add_argument("--fused", action="store_true", help="fused AdamW (the GPU's adamw_torch_fused)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kagflow-recipe-bisect"))
    args = parser.parse_args()

    import torch

    import kagflow.classifier.model as kmodel
    from kagflow.classifier import compiling
    from kagflow.classifier.batching import classification_logits, training_batches
    from kagflow.classifier.config import TrainConfig
    from kagflow.classifier.data import load_arena_csv
    from kagflow.classifier.model import ModelTraits, add_lora, load_base, load_tokenizer
    from kagflow.classifier.recipe import recipe_for_current_device, torch_dtype
    from kagflow.classifier.synth import write_knowledge_competition
    from kagflow.classifier.train import encode_fold
    from kagflow.workflow.standins import GEMMA3_270M, ensure_gguf_checkpoint

    compiling.BACKEND = args.backend
    base = ensure_gguf_checkpoint(GEMMA3_270M)
    write_knowledge_competition(args.work / "comp", n_train=200, n_test=20, seed=0)
    cfg = TrainConfig(train_loop="fast", max_length=192, append_eos=True, freeze_layers=0, target_modules=LINEAR,
                      lora_r=16, lora_alpha=32, lora_dropout=0.0)
    tok = load_tokenizer(base)
    data = load_arena_csv(args.work / "comp" / "train.csv", labeled=True)
    rows, _, _, _ = encode_fold(cfg, data.frame, tok)
    rows = rows[:args.rows]
    seqs, labels = [r["input_ids"] for r in rows], [r["labels"] for r in rows]
    print("lengths", [len(s) for s in seqs], "labels", labels, flush=True)
    ref = None
    for name in args.variants:
        load_dtype, forced = VARIANTS[name]
        kmodel.compute_dtype = lambda device=None, d=load_dtype: torch_dtype(d)
        torch.manual_seed(0)
        model = load_base(base, attn_implementation="auto", pad_token_id=tok.pad_token_id)
        torch.manual_seed(1)
        with torch.no_grad():
            model.score.weight.normal_(0, 0.02)
        recipe = recipe_for_current_device(traits=ModelTraits.of(model.config))
        if name == "cpu":
            print("CPU recipe:", recipe, flush=True)
        recipe = dataclasses.replace(recipe, **forced)
        torch.manual_seed(2)
        pm = add_lora(model, r=16, alpha=32, dropout=args.dropout, target_modules=LINEAR, freeze_layers=0,
                      recipe=recipe)
        pm.train(args.train_mode)
        # LoRA B is 0 at init: give it small values so the LoRA path matters (same seed: same values per variant)
        gen = torch.Generator().manual_seed(3)
        for n, p in sorted(pm.named_parameters()):
            if "lora_B" in n:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        groups = [order[i:i + args.group] for i in range(0, len(order), args.group)]  # several widths: dynamic shapes
        mbs = [mb for g in groups for mb in training_batches([seqs[i] for i in g], [labels[i] for i in g], recipe,
                                                             pad_id=tok.pad_token_id)]
        print("  micro-batch shapes", [tuple(mb["input_ids"].shape) for mb in mbs], flush=True)
        autocast = torch_dtype(recipe.dtype)
        logits, loss = [], 0.0
        for mb in mbs:
            with torch.autocast("cpu", dtype=autocast, enabled=autocast != torch.float32):
                lg = classification_logits(pm, mb)
            lo = torch.nn.functional.cross_entropy(lg.float(), mb["labels"], reduction="sum") / len(seqs)
            lo.backward()
            loss += float(lo)
            logits.append(lg.float().detach())
        order_back = torch.tensor([i for g in groups for i in g]).argsort()
        logits = torch.cat(logits)[order_back]
        grads = {n: p.grad.float().clone() for n, p in pm.named_parameters() if p.requires_grad and p.grad is not None}
        print(f"{name}: recipe dtype={recipe.dtype} dequant={recipe.dequantize_for_training} "
              f"compile={recipe.compile_layers} attn={recipe.train_attn_implementation}; "
              f"compiled layers {compiling.compiled_layers(pm)}; loss {loss:.5f}; logits[:3] {logits[:3].tolist()}",
              flush=True)
        if ref is None:
            ref = (logits, loss, grads)
        else:
            rl, _, rg = ref
            dl = (logits - rl).abs().max().item()
            print("  per-row max |dlogits|", [round(x, 3) for x in (logits - rl).abs().amax(1).tolist()])
            cos = {}
            for n in rg:
                if n in grads:
                    a, b = rg[n].flatten(), grads[n].flatten()
                    cos[n] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
            worst = sorted(cos.items(), key=lambda kv: kv[1])[:3]
            print(f"  vs cpu: max |dlogits| {dl:.4g} (ref max |logit| {rl.abs().max().item():.3g}); "
                  f"grad cosine min {worst}; score grad cos {cos.get(next(n for n in cos if 'score' in n)):.4f}",
                  flush=True)
        if args.steps:
            from kagflow.classifier.fit import lora_train_step

            pm.zero_grad(set_to_none=True)
            pm.train()
            params = [p for p in pm.parameters() if p.requires_grad]
            opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.0, fused=args.fused)
            losses = [float(lora_train_step(pm, mbs, opt, autocast_dtype=None if autocast == torch.float32
                                            else autocast)) for _ in range(args.steps)]
            print(f"  {name} losses over {args.steps} steps on one batch: {[round(x, 4) for x in losses]}", flush=True)
        del pm, model


if __name__ == "__main__":
    main()
