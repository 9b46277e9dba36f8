#!/usr/bin/env python3
"""Issue 33's GPU measurement, in one device call on one H200: the winners' LoRA (r 64, all seven projections,
nothing frozen) trained by kagflow's 16 GB-cap recipes (bf16 and the T4 configuration) against the seed's HF Trainer
configured the same way, and T4-configuration inference at 3,072 tokens in 8-bit (weight-only int8, then 4-bit and
LLM.int8 where time allows: --infer-variants) against the seed's predict_df.

    python3 bench/winners.py --out $OUT              # on the H200 (~9 min; --deadline-s bounds it)
    python bench/winners.py --dry-run --out /tmp/w   # the same tasks on the CPU with a tiny Gemma-2 (logic check)
    python3 bench/winners.py --out $OUT --tasks ensemble_t4_cap   # 2 tuned members against one adapter only
    python3 bench/winners.py --out $OUT --lora shipped   # both sides with kagflow's [train] defaults instead

Same random 9B-shaped Gemma-2 checkpoint (built on the device), rows (the KAGGLE-FACTS length fit) and helpers as
bench/gpu16.py; every measurement runs in a child process of its own (clean peaks), within the 15 GiB allocator
cap. Each kagflow training run records the memory plan's predicted peak (``classifier/memory.py``) beside the
measured one. Results: OUT/results.json (rewritten after every measurement) and OUT/winners.json (the ratios).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import gemma_bench as gb  # noqa: E402
from bench import gpu16 as g16  # noqa: E402
from kagflow.classifier.config import TrainConfig  # noqa: E402
from kagflow.classifier.memory import PROJECTIONS, LoraShape  # noqa: E402
from kagflow.classifier.recipe import recipe_for_device  # noqa: E402

# --lora: (r, alpha, targets, frozen layers of 42, dropout). "winners": the public write-ups' r 64 on all seven
# projections with nothing frozen; "shipped": kagflow's [train] defaults (kagflow/project/defaults.toml), the seed's
# Trainer configured the same way (its LoRA skips the frozen layers, as the seed's layers_to_transform does).
_TRAIN = TrainConfig()
LORAS = {"winners": (64, 16, PROJECTIONS, 0, 0.05),
         "shipped": (_TRAIN.lora_r, _TRAIN.lora_alpha, tuple(_TRAIN.target_modules), _TRAIN.freeze_layers,
                     _TRAIN.lora_dropout)}
# (task, seconds it needs) in priority order: the run skips what no longer fits its deadline
TASKS = [("seed_bf16_cap", 60), ("kag_t4_cap", 150), ("infer_t4_cap", 180), ("kag_bf16_cap", 150),
         ("ensemble_t4_cap", 240)]
INFER_BATCHES = (8, 4, 2)  # the seed's predict_df batch, halved on running out of memory (the 4th place ran 2)


def use_lora(args) -> LoraShape:
    """``--lora``'s shape for the seed's Trainer, kagflow's loop, the plan and the inference adapter."""
    return g16.use_lora(args.n_layers, *LORAS[args.lora])


def recipe(args, capability):
    """kagflow's shipped recipe for a 15 GiB card of ``capability`` with ``--lora``'s LoRA: its memory plan."""
    return recipe_for_device(g16.CAP_GIB, capability, lora=args.lora_shape, max_length=args.train_max_len)


def train_task(args, ckpt, device, task: str) -> None:
    g16.cap(device, g16.CAP_GIB)
    rows, labels = g16.train_data(args)
    if task == "seed_bf16_cap":
        steps, _ = g16.seed_run("train16_seed_bf16", args, ckpt, device, rows, labels, fp16=False)
        (Path(args.out) / "seed_steps.json").write_text(json.dumps(steps))
        return
    name, capability = {"kag_bf16_cap": ("train16_kagflow_bf16", (8, 9)),
                        "kag_t4_cap": ("train16_kagflow_t4_fp16", (7, 5))}[task]
    rec = recipe(args, capability)
    g16.log(f"{name}: {rec.memory_plan}")
    steps, seqs, labels = g16.seed_steps(args)
    g16.kagflow_run(name, args, ckpt, device, steps, seqs, labels, rec)
    res = gb.RESULTS.get(name, {})
    res.update(planned_peak_gib=rec.memory_plan.peak_gib, plan=rec.memory_plan.describe())
    g16.record(name, res)


def infer_rows(args):
    rows, _ = gb.sample_rows(args.infer_rows, seed=2024, vocab=args.vocab)
    n = args.infer_max_len
    return [gb.join(r, n) for r in rows], [gb.join(r, n, swap=True) for r in rows]


def seed_infer(args, ckpt, adapter, seqs, swapped, device):
    """The seed's inference (4-bit fp16 base + unmerged adapter, predict_df in input order, padded to the longest)
    at --infer-max-len with TTA, batch 8 halved on running out of memory."""
    from peft import PeftModel

    base = gb.load_4bit(ckpt, dtype=torch.float16, compute_dtype=torch.float16, attn="eager", device=device)
    pm = PeftModel.from_pretrained(base, str(adapter)).eval()
    for bs in INFER_BATCHES:
        try:
            gb.seed_predict_df(pm, seqs[:4], args.infer_max_len, bs=bs)
            gb.reset_peak(device)
            (a, b), dt = gb.timed(lambda: (gb.seed_predict_df(pm, seqs, args.infer_max_len, bs=bs),
                                           gb.seed_predict_df(pm, swapped, args.infer_max_len, bs=bs)), device)
        except torch.OutOfMemoryError as e:
            g16.record(f"infer16_seed_t4_fp16_bs{bs}", {"error": "OutOfMemoryError: " + str(e)[:200]})
            gb.free()
            continue
        tok = sum(map(len, seqs)) + sum(map(len, swapped))
        res = {"rows_s": round(len(seqs) / dt, 2), "useful_tok_s": round(tok / dt, 1), "s": round(dt, 2), "batch": bs,
               "max_length": args.infer_max_len, **gb.peak(device)}
        g16.record("infer16_seed_t4_fp16", res)
        g16.log(f"infer16_seed_t4_fp16: {res}")
        gb.free(pm, base)
        return a.softmax(-1).double()  # the original view, as gpu16 compares
    gb.free(pm, base)
    return None


INFER_VARIANTS = {"8bit": ("8bit", "weight_only"), "4bit": ("4bit", "weight_only"), "8bit_llm_int8": ("8bit", "llm_int8")}


def layer_kinds(model) -> dict:
    """How many decoder layers hold dense (fp16, LoRA merged), weight-only int8, LLM.int8 and 4-bit linears (a LoRA's
    own A and B linears are not dense layers)."""
    import bitsandbytes as bnb

    from kagflow.classifier.compiling import decoder_layers
    from kagflow.classifier.dequant import Int8Linear

    kinds = {"dense": torch.nn.Linear, "int8": Int8Linear, "llm_int8": bnb.nn.Linear8bitLt, "4bit": bnb.nn.Linear4bit}
    out = dict.fromkeys(kinds, 0)
    for layer in decoder_layers(model):
        for kind, cls in kinds.items():
            out[kind] += any(type(m) is cls for name, m in layer.named_modules() if "lora_" not in name)
    return out


def kagflow_infer(args, ckpt, adapter, seqs, swapped, device, variant: str, ref):
    """The shipped T4 path (load_base + adapter, infer.tuned_for_device with the ``variant``'s quantization and
    int8_kernel, ``INFER_VARIANTS``), warmed up (compiles) on 16 rows, then timed on every row with TTA."""
    from peft import PeftModel

    from kagflow.classifier import infer
    from kagflow.classifier import model as km

    quantization, kernel = INFER_VARIANTS[variant]
    torch._dynamo.reset()
    gb.free()
    gb.reset_peak(device)
    base = km.load_base(ckpt, device_map={"": str(device)}, pad_token_id=0)
    pm = PeftModel.from_pretrained(base, str(adapter)).eval()
    t0 = time.perf_counter()
    model, budget = infer.tuned_for_device(pm, 0, quantization=quantization, int8_kernel=kernel)
    budget = budget or 8192
    prep = time.perf_counter() - t0
    name = f"infer16_kagflow_t4_fp16_{variant}"
    g16.kagflow_infer(name + "_warmup", model, budget, seqs[:16], swapped[:16], device, extra={"prepare_s": prep})
    gb.reset_peak(device)
    p = g16.kagflow_infer(name, model, budget, seqs, swapped, device, extra={"max_length": args.infer_max_len})
    res = gb.RESULTS[name]
    res.update(layers=layer_kinds(model), int8_kernel=kernel if quantization == "8bit" else None)
    if ref is not None:
        res["max_abs_prob_diff_vs_seed_original_view"] = float((p.double() - ref).abs().max())
    g16.record(name, res)
    gb.free(model, pm, base)


def infer_task(args, ckpt, device) -> None:
    """T4 configuration, 15 GiB, --infer-max-len: the seed vs kagflow in --infer-variants' order: 8-bit (the
    weight-only default), then where time allows 4-bit (the shipped default) and 8-bit through LLM.int8 (the
    opt-in kernel, the first measurement's)."""
    g16.as_profile((7, 5), g16.CAP_GIB)
    g16.cap(device, g16.CAP_GIB)
    seqs, swapped = infer_rows(args)
    adapter = g16.make_adapter(args, ckpt, device)
    ref = g16.oom_safe("infer16_seed_t4_fp16", lambda: seed_infer(args, ckpt, adapter, seqs, swapped, device))
    later = sum(need for task, need in TASKS[[t for t, _ in TASKS].index("infer_t4_cap") + 1:]
                if task in args.tasks.split(","))
    for i, variant in enumerate(args.infer_variants.split(",")):
        if variant not in INFER_VARIANTS:
            raise SystemExit(f"--infer-variants: {variant!r} is not one of {', '.join(INFER_VARIANTS)}")
        if i == 0 or g16.within(args, 60 + later):
            g16.oom_safe(f"infer16_kagflow_t4_fp16_{variant}",
                         lambda v=variant: kagflow_infer(args, ckpt, adapter, seqs, swapped, device, v, ref))
    g16.as_profile(None, None)


def second_adapter(adapter: Path) -> Path:
    """A copy of ``adapter`` with its LoRA B matrices redrawn: another member of the same shape."""
    import shutil

    from safetensors.torch import load_file, save_file

    out = Path(tempfile.mkdtemp()) / "adapter1"
    shutil.copytree(adapter, out)
    weights = load_file(str(out / "adapter_model.safetensors"))
    g = torch.Generator().manual_seed(12)
    save_file({k: (torch.randn(v.shape, generator=g) * 0.02).to(v.dtype) if "lora_B" in k else v
               for k, v in weights.items()}, str(out / "adapter_model.safetensors"))
    return out


def ensemble_task(args, ckpt, device) -> None:
    """T4 configuration, 15 GiB, --infer-max-len, TTA, the same rows: one adapter through the tuned path, then a
    2-member ensemble as ``[infer] ensemble = "members"`` runs it (``ensembling.MemberModels``: each member loaded
    alone, ``infer.tuned_for_device``, freed before the next), then ``"average_lora"`` (one averaged adapter). Each
    member's load + preparation is timed apart from its (warmed-up) passes."""
    from kagflow.classifier import infer
    from kagflow.classifier import model as km
    from kagflow.classifier.ensembling import MemberModels, average_adapters

    g16.as_profile((7, 5), g16.CAP_GIB)
    g16.cap(device, g16.CAP_GIB)
    seqs, swapped = infer_rows(args)
    first = g16.make_adapter(args, ckpt, device)
    adapters = [first, second_adapter(first)]
    budgets = {}

    def load(adapter):
        from peft import PeftModel

        gb.free()
        t0 = time.perf_counter()
        base = km.load_base(ckpt, device_map={"": str(device)}, pad_token_id=0)
        model, budgets["tokens"] = infer.tuned_for_device(PeftModel.from_pretrained(base, str(adapter)).eval(), 0)
        budgets["load_s"] = time.perf_counter() - t0
        return model

    def run(name, members: MemberModels, n: int) -> None:
        gb.reset_peak(device)
        total, passes, loads = time.perf_counter(), 0.0, 0.0
        for m in range(n):
            # no name holds a member past its turn: MemberModels frees the last one before the next loads (a
            # `model = members.get(m)` kept member 0 alive through member 1's load: out of memory in 15 GiB)
            loads += budgets.get("load_s", 0.0) if members.get(m) is not None else 0.0
            budget = budgets["tokens"] or 8192
            g16.kagflow_infer(f"{name}_member{m}_warmup", members.get(m), budget, seqs[:16], swapped[:16], device)
            g16.kagflow_infer(f"{name}_member{m}", members.get(m), budget, seqs, swapped, device)
            passes += gb.RESULTS[f"{name}_member{m}"]["s"]
        members.free()
        tok = n * (sum(map(len, seqs)) + sum(map(len, swapped)))
        res = {"members": n, "passes_s": round(passes, 2), "load_prepare_s": round(loads, 2),
               "total_s": round(time.perf_counter() - total, 2), "useful_tok_s": round(tok / passes, 1),
               "max_length": args.infer_max_len, "tta": True, **gb.peak(device)}
        g16.record(name, res)
        g16.log(f"{name}: {res}")

    runs = args.ensemble_runs.split(",")
    if "one" in runs:
        g16.oom_safe("ensemble_one_adapter", lambda: run("ensemble_one_adapter", MemberModels(adapters[:1], load), 1))
    if "two" in runs:
        g16.oom_safe("ensemble_two_members", lambda: run("ensemble_two_members", MemberModels(adapters, load), 2))
    if "average" in runs:
        averaged = average_adapters(adapters, Path(tempfile.mkdtemp()) / "averaged")
        g16.oom_safe("ensemble_average_lora", lambda: run("ensemble_average_lora", MemberModels([averaged], load),
                                                          1))
    g16.as_profile(None, None)


def summary(args) -> dict:
    """The issue's ratios (same call, against the seed configured the same way), peaks and the plan's predictions."""
    res = gb.RESULTS

    def rate(key):
        return (res.get(key) or {}).get("useful_tok_s")

    def ratio(a, b):
        return round(rate(a) / rate(b), 3) if rate(a) and rate(b) else None

    r, alpha, targets, _, dropout = LORAS[args.lora]
    out = {"lora": {"name": args.lora, "r": r, "alpha": alpha, "targets": list(targets),
                    "freeze_layers": args.lora_shape.freeze_layers, "dropout": dropout},
           "train_max_len": args.train_max_len, "infer_max_len": args.infer_max_len, "cap_gib": g16.CAP_GIB,
           "ratios": {"train16_bf16_vs_seed": ratio("train16_kagflow_bf16", "train16_seed_bf16"),
                      "train16_t4_vs_seed": ratio("train16_kagflow_t4_fp16", "train16_seed_bf16"),
                      "infer16_t4_8bit_vs_seed": ratio("infer16_kagflow_t4_fp16_8bit", "infer16_seed_t4_fp16"),
                      "infer16_t4_4bit_vs_seed": ratio("infer16_kagflow_t4_fp16_4bit", "infer16_seed_t4_fp16"),
                      "infer16_t4_8bit_vs_4bit": ratio("infer16_kagflow_t4_fp16_8bit", "infer16_kagflow_t4_fp16_4bit"),
                      # bitsandbytes' LLM.int8 ([infer] int8_kernel = "llm_int8"), the first measurement's 8-bit
                      "infer16_t4_8bit_llm_int8_vs_seed": ratio("infer16_kagflow_t4_fp16_8bit_llm_int8",
                                                                "infer16_seed_t4_fp16"),
                      "infer16_t4_8bit_vs_llm_int8": ratio("infer16_kagflow_t4_fp16_8bit",
                                                           "infer16_kagflow_t4_fp16_8bit_llm_int8"),
                      # per-token rate of a tuned member against one adapter (the guard assumes 1.0; untuned: 0.66)
                      "ensemble_member_vs_one_adapter": ratio("ensemble_two_members", "ensemble_one_adapter"),
                      "ensemble_average_lora_vs_one_adapter": ratio("ensemble_average_lora", "ensemble_one_adapter")},
           "targets": {"train": 2.5, "infer_8bit": 3.0, "peak_gib": 14.7}}
    for key in ("train16_seed_bf16", "train16_kagflow_bf16", "train16_kagflow_t4_fp16", "infer16_seed_t4_fp16",
                "infer16_kagflow_t4_fp16_8bit", "infer16_kagflow_t4_fp16_4bit", "infer16_kagflow_t4_fp16_8bit_llm_int8",
                "infer16_kagflow_t4_fp16_8bit_warmup", "infer16_kagflow_t4_fp16_4bit_warmup",
                "infer16_kagflow_t4_fp16_8bit_llm_int8_warmup", "ensemble_one_adapter",
                "ensemble_two_members", "ensemble_average_lora"):
        v = res.get(key) or {}
        out[key] = {k: v.get(k) for k in ("useful_tok_s", "peak_alloc_gib", "peak_reserved_gib", "planned_peak_gib",
                                          "warmup_s_incl_compile", "batch", "max_abs_prob_diff_vs_seed_original_view",
                                          "members", "passes_s", "load_prepare_s", "total_s", "layers", "int8_kernel",
                                          "prepare_s",
                                          "error") if v.get(k) is not None}
    out["errors"] = {k: v["error"] for k, v in res.items() if isinstance(v, dict) and "error" in v}
    out["total_s"] = round(time.time() - gb.T_START, 1)
    (Path(args.out) / "winners.json").write_text(json.dumps(out, indent=1) + "\n")
    print("\n== winners recipe ==\n" + json.dumps(out, indent=1), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="the CPU with a tiny Gemma-2: the logic, no numbers")
    ap.add_argument("--out", default=None)
    g16.add_run_arguments(ap)
    ap.add_argument("--infer-max-len", type=int, default=3072)
    ap.add_argument("--deadline-s", type=float, default=530)
    ap.add_argument("--infer-variants", default=",".join(INFER_VARIANTS),
                    help="infer_t4_cap's kagflow runs, in order (the first always, the rest where the deadline allows): "
                         "8bit (weight-only int8, the default kernel), 4bit, 8bit_llm_int8 (int8_kernel = llm_int8)")
    ap.add_argument("--lora", choices=sorted(LORAS), default="winners",
                    help="the LoRA both sides train and infer with: the winners' (r 64, all seven, nothing frozen) or "
                         "kagflow's shipped [train] defaults")
    ap.add_argument("--ensemble-runs", default="one,two,average",
                    help="ensemble_t4_cap's runs: one adapter, two tuned members, the averaged LoRA")
    ap.add_argument("--tasks", default=",".join(t for t, _ in TASKS),
                    help="which measurements, comma-separated, run in TASKS' order (kag_* need seed_bf16_cap's steps "
                         "from an earlier run in the same --out)")
    args = ap.parse_args()
    args.tiny = args.dry_run  # gemma_bench's and gpu16's name for the CPU check
    g16.dry_run_sizes(args, (("--train-max-len", 128), ("--seed-steps", 4), ("--warm", 1), ("--infer-rows", 8),
                             ("--infer-max-len", 256), ("--train-rows", 30), ("--deadline-s", 3000)))
    args.out = args.out or str(Path(tempfile.gettempdir()) / "winners")
    device, cfg, ckpt = g16.start(args)
    args.lora_shape = use_lora(args)
    if args.task:
        if args.tiny:  # Dynamo's capture without inductor's C++ builds (as tests/unit/classifier/test_compiling.py)
            from kagflow.classifier import compiling
            compiling.BACKEND = "aot_eager"
        if args.task == "infer_t4_cap":
            infer_task(args, ckpt, device)
        elif args.task == "ensemble_t4_cap":
            ensemble_task(args, ckpt, device)
        else:
            train_task(args, ckpt, device, args.task)
        return
    gb.env_info(device)
    g16.record("args", vars(args))
    gb.build_checkpoint(cfg, ckpt, device)
    for capability in ((8, 9), (7, 5)):
        g16.record(f"plan_{capability[0]}{capability[1]}", recipe(args, capability).memory_plan.describe())
    g16.run_tasks(args, [t for t in TASKS if t[0] in args.tasks.split(",")], script=__file__)
    summary(args)


if __name__ == "__main__":
    main()
