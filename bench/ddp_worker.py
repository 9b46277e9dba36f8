"""One DDP process of the two-GPU training bench (bench/gpu16.py --phase two): what `accelerate launch`
starts per GPU, through the shipped pieces (model.load_base on this rank's GPU, train.training_recipe,
model.add_lora with the recipe, train._init_distributed, fit.fit_lora). Rank 0 writes the per-step losses,
the timing and every rank's peak memory to the JSON named in the params.

    python -m bench.ddp_worker --params PARAMS.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", required=True)
    p = json.loads(Path(ap.parse_args().params).read_text())
    from bench import gemma_bench as gb
    from kagflow.classifier import model as km
    from kagflow.classifier import train as kt
    from kagflow.classifier.batching import plan_steps
    from kagflow.classifier.fit import _gather_object, _world, fit_lora
    from kagflow.classifier.multigpu import distributed_device_map

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.manual_seed(42)
    t0 = time.time()
    cuda = torch.cuda.is_available()
    model = km.load_base(p["ckpt"], device_map=distributed_device_map() or {"": 0 if cuda else "cpu"}, pad_token_id=0)
    recipe = kt.training_recipe()
    pm = km.add_lora(model, r=16, alpha=32, dropout=0.05, target_modules=("q_proj", "k_proj", "v_proj"),
                     freeze_layers=p["freeze_layers"], recipe=recipe)
    kt._init_distributed()
    rank, world = _world()
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    load_s = time.time() - t0
    rows, labels = gb.sample_rows(p["train_rows"], seed=2025, vocab=p["vocab"])
    seqs = [gb.join(r, 1024) for r in rows]
    rows_per_step = p.get("rows_per_step", 6)
    steps = plan_steps([len(q) for q in seqs], rows_per_step, 1.0, 42)[:p["steps"]]
    warm = None  # compilations before the timed steps: (seqs, labels, steps)
    if recipe.pack:  # flex for every packed width
        from bench.gpu16 import shape_warmup_steps

        warm = shape_warmup_steps([], [], p["vocab"], bucket=recipe.pack_bucket, max_tokens=recipe.train_max_tokens)
    elif recipe.compile_layers:  # the layers, and the one-row specialisation
        g = torch.Generator().manual_seed(17)
        warm = ([torch.randint(4, p["vocab"], (int(n),), generator=g).tolist() for n in (1000, 700, 300, 1024, 900)],
                [0, 1, 2, 0, 1], [[0], [1, 2], [0, 1, 2, 3, 4]])
    warm_s = 0.0
    if warm is not None:
        t_w = time.time()
        fit_lora(pm, warm[0], warm[1], recipe, steps=warm[2], warmup_steps=20, log_every=10**9)
        torch.cuda.synchronize() if cuda else None
        warm_s = round(time.time() - t_w, 1)
    stamps: list[float] = []

    def on_log(entry: dict) -> None:  # after fit_lora's per-step loss sync: the step is done on every GPU
        if "step" in entry and "loss" in entry:
            stamps.append(time.perf_counter())

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    losses = fit_lora(pm, seqs, labels, recipe, steps=steps, warmup_steps=20, log_every=1, on_log=on_log)
    w = p["warm"]
    tok = sum(len(seqs[i]) for st in steps[w:] for i in st)
    dt = stamps[-1] - stamps[w - 1]
    peaks = _gather_object(round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else None)
    top = None
    if p.get("profile") and cuda:  # where a step's time goes (rank 0's view), 3 more steps
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fit_lora(pm, seqs, labels, recipe, steps=steps[-3:], warmup_steps=20, log_every=1)
            torch.cuda.synchronize()
        top = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=25)
        top += "\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
    if rank == 0:
        Path(p["out"]).write_text(json.dumps({
            "world": world, "useful_tok_s": round(tok / dt, 1), "step_ms": round(1000 * dt / (len(steps) - w), 1),
            "timed_steps": len(steps) - w, "rows_per_step": rows_per_step, "losses": [round(x, 5) for x in losses],
            "peak_alloc_gib_per_gpu": peaks, "load_and_prepare_s": round(load_s, 1), "recipe": asdict(recipe),
            "shape_warmup_s": warm_s, "profile_top_ops": top,
            "mixed_precision_env": os.environ.get("ACCELERATE_MIXED_PRECISION")}, indent=1))
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


if __name__ == "__main__":
    main()
