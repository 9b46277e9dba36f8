#!/usr/bin/env python3
"""Issue 33's `[train]` defaults: which LoRA shape fits a Kaggle T4 x2 training session, measured on one H200.

kagflow's shipped T4-configuration recipe (fp16 + GradScaler, 15 GiB cap, the memory plan that follows the LoRA)
trains the same 9B-shaped random Gemma-2 on the same optimizer steps (the seed's Trainer's, recorded by
bench/winners.py in bench/results/winners-2026-12-03/seed_steps.json) for each candidate LoRA shape:

    r16 on q/k/v, 16 layers frozen  (today's default)
    r64 on all seven projections, nothing frozen  (the winners')
    r64 on all seven, 16 frozen;  r64 on all seven, 8 frozen;  r32 on all seven, nothing frozen

and records tok/s, peaks and the memory plan's prediction for each, then the hours one fold's training takes on
Kaggle's T4 x2 (`kagflow/rules` arithmetic: the H200 rate / 15 per T4, x 1.89 for two GPUs).

    python3 bench/lora_sweep.py --out $OUT                 # on the H200 (~9.5 min; --deadline-s bounds it)
    python bench/lora_sweep.py --dry-run --out /tmp/ls     # the CPU with a tiny Gemma-2 (logic check)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import gemma_bench as gb  # noqa: E402
from bench import gpu16 as g16  # noqa: E402
from kagflow.classifier.memory import PROJECTIONS, LoraShape  # noqa: E402
from kagflow.classifier.recipe import recipe_for_device  # noqa: E402

QKV = ("q_proj", "k_proj", "v_proj")
# name -> (r, alpha, targets, frozen layers of 42)
SHAPES = {
    "r16_qkv_f16": (16, 32, QKV, 16),
    "r64_all_f0": (64, 16, PROJECTIONS, 0),
    "r64_all_f16": (64, 16, PROJECTIONS, 16),
    "r64_all_f8": (64, 16, PROJECTIONS, 8),
    "r32_all_f0": (32, 16, PROJECTIONS, 0),
}
# (task, seconds it needs: load + the compiling warm-up + the timed steps took 177 s in the winners' run)
TASKS = [(name, 170) for name in SHAPES]
# today's default (7,700 tok/s, third measurement) and the winners' (4,603, winners' run) are on record already:
# one call measures the three shapes between them
NEW = ("r64_all_f16", "r64_all_f8", "r32_all_f0")
SEED_STEPS = REPO / "bench" / "results" / "winners-2026-12-03" / "seed_steps.json"
T4_FACTOR, TWO_GPUS = 15.0, 1.89  # bench/RESULTS.md, winners recipe section
# One fold of LMSYS's train.csv (57,477 rows, 4/5 of them) at max_length 1,024: 599 mean tokens (KAGGLE-FACTS'
# LogNormal length fit, median 510, sigma 0.70, plus a 40-token template, capped)
FOLD_TOKENS = 45_982 * 599


def use_shape(name: str, n_layers: int) -> LoraShape:
    """Point gemma_bench's LoRA at shape ``name`` (the loop, the plan and the adapter all read it)."""
    r, alpha, targets, of_42 = SHAPES[name]
    return g16.use_lora(n_layers, r, alpha, targets, of_42)


def run_shape(args, ckpt, device, name: str) -> None:
    g16.cap(device, g16.CAP_GIB)
    lora = use_shape(name, args.n_layers)
    rec = recipe_for_device(g16.CAP_GIB, (7, 5), lora=lora, max_length=args.train_max_len)
    g16.log(f"{name}: {rec.memory_plan}")
    steps, seqs, labels = g16.seed_steps(args)
    key = f"t4_{name}"
    g16.kagflow_run(key, args, ckpt, device, steps, seqs, labels, rec)
    res = gb.RESULTS.get(key, {})
    res.update(planned_peak_gib=rec.memory_plan.peak_gib, plan=rec.memory_plan.describe())
    g16.record(key, res)


def summary(args) -> dict:
    out = {}
    for name in SHAPES:
        res = gb.RESULTS.get(f"t4_{name}", {})
        rate = res.get("useful_tok_s")
        if not rate:
            out[name] = {"error": res.get("error", "not run")}
            continue
        t4x2 = rate / T4_FACTOR * TWO_GPUS
        out[name] = {"h200_tok_s": rate, "t4x2_tok_s": round(t4x2, 1),
                     "peak_alloc_gib": res.get("peak_alloc_gib"), "peak_reserved_gib": res.get("peak_reserved_gib"),
                     "planned_peak_gib": res.get("planned_peak_gib"),
                     "one_fold_epoch_h_t4x2": round(FOLD_TOKENS / t4x2 / 3600, 2)}
    (Path(args.out) / "lora_sweep.json").write_text(json.dumps(out, indent=1))
    g16.log(json.dumps(out, indent=1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dry-run", action="store_true", help="the CPU with a tiny Gemma-2: the logic, no numbers")
    ap.add_argument("--out", default=None)
    g16.add_run_arguments(ap)
    ap.add_argument("--deadline-s", type=float, default=560)
    ap.add_argument("--tasks", default=",".join(NEW), help=f"comma-separated, of {', '.join(SHAPES)}")
    args = ap.parse_args()
    args.tiny = args.dry_run
    g16.dry_run_sizes(args, (("--train-max-len", 128), ("--warm", 1), ("--train-rows", 30), ("--deadline-s", 3000)))
    args.out = args.out or str(Path(tempfile.gettempdir()) / "lora_sweep")
    device, cfg, ckpt = g16.start(args)
    steps_file = Path(args.out) / "seed_steps.json"
    if not steps_file.is_file():
        if args.tiny:  # the recorded steps index 300 rows: draw 6-row steps over the tiny run's rows
            import random
            rng = random.Random(0)
            steps_file.write_text(json.dumps([rng.sample(range(args.train_rows), 6) for _ in range(4)]))
        else:
            shutil.copy(SEED_STEPS, steps_file)
    if args.task:
        if args.tiny:
            from kagflow.classifier import compiling
            compiling.BACKEND = "aot_eager"
        run_shape(args, ckpt, device, args.task)
        return
    gb.env_info(device)
    g16.record("args", vars(args))
    gb.build_checkpoint(cfg, ckpt, device)
    g16.run_tasks(args, [t for t in TASKS if t[0] in args.tasks.split(",")], script=__file__)
    summary(args)


if __name__ == "__main__":
    main()
