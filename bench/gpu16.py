#!/usr/bin/env python3
"""Issues #13 and #15 measured: the seed vs kagflow's shipped code in 16 GB (bf16 and T4 fp16), on the big
card, and on two GPUs. Same 9B-shaped random model, rows and seed recipe as bench/gemma_bench.py (whose
helpers it uses); results in OUT/results.json (rewritten after every measurement), a table last.

    python3 bench/gpu16.py --phase one --out $OUT   # GPU 0 alone: 16 GB cap (bf16, T4 fp16) and big card
    python3 bench/gpu16.py --phase two --out $OUT   # two GPUs: DDP via accelerate launch, inference per GPU
    bench/run_gpu16.sh                              # the whole #13/#15 measurement on nvidia-h200-x2 (two calls)
    python bench/gpu16.py --tiny --phase one --out /tmp/x  # CPU logic check (tiny Gemma-2)

The 16 GB configurations cap this process's CUDA allocator at 15 GiB (set_per_process_memory_fraction).
"T4 configuration" = the device profile a T4 gets (sm75: fp16 + GradScaler, eager, 4-bit base), forced by
replacing classifier.device.device_profile, so every shipped path (load_base, recipes, inference) takes
the T4's branch on the H200.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import gemma_bench as gb  # noqa: E402
from kagflow.classifier import device as device_mod  # noqa: E402
from kagflow.classifier.fit import fit_lora, prepare_lora_model  # noqa: E402
from kagflow.classifier.recipe import recipe_for_current_device, recipe_for_device, torch_dtype  # noqa: E402

CAP_GIB = 15.0
REAL_PROFILE = device_mod.device_profile


def log(msg):
    gb.log(msg)


def record(key, value):
    gb.record(key, value)


def cap(device, gib: float | None) -> None:
    """Cap this process's allocator on ``device`` at ``gib`` GiB (None: the whole card)."""
    if device.type != "cuda":
        return
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(1.0 if gib is None else min(1.0, gib * 2**30 / total), device)


def as_profile(capability, mem_gib) -> None:
    """Every shipped path sees a GPU of ``capability`` and ``mem_gib`` (None: the real one)."""
    if capability is None:
        device_mod.device_profile = REAL_PROFILE
        return

    def fake(device=None):
        real = REAL_PROFILE(device)
        return device_mod.DeviceProfile(tuple(capability), mem_gib, real.name) if real.cuda else real

    device_mod.device_profile = fake


def within(args, seconds: float) -> bool:
    """Whether ``seconds`` more still fit before the deadline."""
    left = args.deadline_s - (time.time() - gb.T_START)
    if left < seconds:
        log(f"deadline: {left:.0f}s left, skipping a {seconds:.0f}s measurement")
    return left >= seconds


def oom_safe(name, fn):
    try:
        return fn()
    except torch.OutOfMemoryError as e:
        log(f"{name}: OUT OF MEMORY ({str(e)[:200]})")
        record(name, {"error": "OutOfMemoryError: " + str(e)[:300]})
    except Exception as e:  # a failed variant must not cost the rest of the call
        log(f"{name}: FAILED {type(e).__name__}: {e}")
        record(name, {"error": f"{type(e).__name__}: {e}"[:600]})
    finally:
        gb.free()
    return None


# ----------------------------------------------------------------------------- training


def train_data(args):
    rows, labels = gb.sample_rows(args.train_rows, seed=2025, vocab=args.vocab)
    return rows, labels


def worst_case_steps(seqs, labels, args):
    """Two 6-row steps of max-length rows (the peak a length-sorted run can meet), then a one-row step (compiled
    layers specialise a dimension of size 1: that compilation too happens before the timer), for the warm-up."""
    g = torch.Generator().manual_seed(7)
    extra = [torch.randint(4, args.vocab, (args.train_max_len,), generator=g).tolist() for _ in range(13)]
    n0 = len(seqs)
    return seqs + extra, labels + [0, 1, 2] * 4 + [0], [list(range(n0, n0 + 6)), list(range(n0 + 6, n0 + 12)),
                                                        [n0 + 12]]


def shape_warmup_steps(seqs, labels, vocab, *, bucket: int = 512, max_tokens: int = 4096, row_len: int = 256):
    """Warm-up steps that meet every packed width (``bucket`` .. ``max_tokens``; on two GPUs every width
    of each half), so flex attention's compilations (static, then dynamic) happen before the timer."""
    g = torch.Generator().manual_seed(17)
    out_seqs, out_labels, steps = list(seqs), list(labels), []
    for k in range(1, max_tokens // bucket + 1):
        n = max(1, (k * bucket - 8) // row_len)
        first = len(out_seqs)
        out_seqs += [torch.randint(4, vocab, (row_len,), generator=g).tolist() for _ in range(n)]
        out_labels += [j % 3 for j in range(n)]
        steps.append(list(range(first, first + n)))
    return out_seqs, out_labels, steps


def seed_run(name, args, ckpt, device, rows, labels, *, fp16: bool):
    args.seed_fp16 = fp16
    steps, seqs = gb.seed_train(args, ckpt, device, rows, labels)
    res = gb.RESULTS.pop("train_seed")
    record(name, res)
    log(f"{name}: {res['useful_tok_s']} tok/s peak {res['peak_alloc_gib']}")
    return steps, seqs


def kagflow_run(name, args, ckpt, device, steps, seqs, labels, recipe, *, worst_first=True,
                optim_type="adamw_torch_fused"):
    """The shipped loop (prepare_lora_model + fit_lora) on the seed's timed steps; warm-up first (with the
    worst-case steps: the peak), then one timed fit_lora call without host syncs."""
    from transformers import set_seed

    dtype = torch_dtype(recipe.dtype) if device.type == "cuda" else torch.float32
    set_seed(42)
    gb.reset_peak(device)
    model = gb.load_4bit(ckpt, dtype=dtype, compute_dtype=dtype, attn="eager", device=device)
    pm = prepare_lora_model(model, gb.lora_config(args.n_layers), recipe)
    all_seqs, all_labels, worst = worst_case_steps(seqs, labels, args)
    if not worst_first:  # only the one-row step (compiled layers specialise size 1)
        worst = worst[-1:]
    shapes = []
    if recipe.pack:
        all_seqs, all_labels, shapes = shape_warmup_steps(all_seqs, all_labels, args.vocab,
                                                          bucket=recipe.pack_bucket, max_tokens=recipe.train_max_tokens)
    gb.sync(device)
    t_warm = time.perf_counter()
    fit_lora(pm, all_seqs, all_labels, recipe, steps=worst + shapes + steps[:args.warm], warmup_steps=20,
             log_every=10**9, optim_type=optim_type)
    gb.sync(device)
    warm_s = time.perf_counter() - t_warm
    gb.sync(device)
    t0 = time.perf_counter()
    losses = fit_lora(pm, all_seqs, all_labels, recipe, steps=steps[args.warm:], warmup_steps=20,
                      log_every=10**9, optim_type=optim_type)
    gb.sync(device)
    dt = time.perf_counter() - t0
    tok = sum(len(seqs[i]) for st in steps[args.warm:] for i in st)
    res = {"useful_tok_s": round(tok / dt, 1), "step_ms": round(1000 * dt / (len(steps) - args.warm), 1),
           **gb.peak(device), "losses": [round(x, 5) for x in losses], "recipe": asdict(recipe),
           "worst_case_steps_first": worst_first, "optim_type": optim_type, "warmup_s_incl_compile": round(warm_s, 1),
           "warmup_steps": len(worst) + len(shapes) + args.warm}
    record(name, res)
    log(f"{name}: {res['useful_tok_s']} tok/s peak {res['peak_alloc_gib']}/{res['peak_reserved_gib']}")
    if getattr(args, "profile", False):
        profile_steps(name, args, pm, all_seqs, all_labels, recipe, steps[args.warm:args.warm + 3], optim_type)
    gb.free(pm, model)


def profile_steps(name, args, pm, seqs, labels, recipe, steps, optim_type):
    """``steps`` once more under torch.profiler: the top CUDA kernels and CPU ops to OUT/<name>_profile.txt, with
    the wall time, the summed kernel time (is the GPU busy or waiting for the host?) and Dynamo's counters."""
    from torch._dynamo.utils import counters
    from torch.profiler import ProfilerActivity, profile

    gb.sync(pm.device)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fit_lora(pm, seqs, labels, recipe, steps=steps, warmup_steps=20, log_every=10**9, optim_type=optim_type)
        gb.sync(pm.device)
    wall = time.perf_counter() - t0
    ka = prof.key_averages()
    kernel_us = sum(e.self_device_time_total for e in ka if e.device_type == torch.autograd.DeviceType.CUDA)
    head = (f"{name}: {len(steps)} steps, wall {wall:.3f} s, summed CUDA kernel time {kernel_us / 1e6:.3f} s\n"
            f"dynamo counters: { {k: dict(v) for k, v in counters.items() if k in ('graph_break', 'stats', 'frames', 'recompiles')} }\n")
    text = (head + ka.table(sort_by="self_device_time_total", row_limit=45, max_name_column_width=90)
            + "\n\n" + ka.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=90))
    (Path(args.out) / f"{name}_profile.txt").write_text(text)
    record(name + "_profile", {"steps": len(steps), "wall_s": round(wall, 3), "cuda_kernel_s": round(kernel_us / 1e6, 3)})
    log(head)


def seed_steps(args):
    """The optimizer-step batches the seed's Trainer drew (written by the first seed task), and the rows."""
    rows, labels = train_data(args)
    seqs = [gb.join(r, args.train_max_len) for r in rows]
    return json.loads((Path(args.out) / "seed_steps.json").read_text()), seqs, labels


def run_task(args, ckpt, device, task: str) -> None:
    """One measurement, alone in this process (clean peaks: the seed's Trainer leaves ~3.4 GiB allocated)."""
    t4 = recipe_for_device(CAP_GIB, (7, 5))
    card16 = recipe_for_device(CAP_GIB, (8, 9))
    big = recipe_for_device(79.0, (9, 0)) if args.tiny else recipe_for_current_device(device)
    rows, labels = train_data(args)
    if task.endswith("_cap"):
        cap(device, CAP_GIB)
    if task == "seed_bf16_cap":
        steps, _ = seed_run("train16_seed_bf16", args, ckpt, device, rows, labels, fp16=False)
        (Path(args.out) / "seed_steps.json").write_text(json.dumps(steps))
    elif task == "seed_t4_cap":
        seed_run("train16_seed_t4_fp16", args, ckpt, device, rows, labels, fp16=True)
    elif task == "seed_big":  # the same steps as seed_bf16_cap's (same sampler seed): kag_big can run beside it
        steps, _ = seed_run("trainbig_seed_bf16", args, ckpt, device, rows, labels, fp16=False)
        if not (Path(args.out) / "seed_steps.json").is_file():
            (Path(args.out) / "seed_steps.json").write_text(json.dumps(steps))
    elif (kind := task.removesuffix("_eager").removesuffix("_nested")) in ("kag_bf16_cap", "kag_t4_cap", "kag_big",
                                                                          "kag_bf16_cap_flex", "kag_big_flex"):
        steps, seqs, labels = seed_steps(args)
        # *_flex: what [train] attn_implementation = "flex_attention" gives (train.training_recipe): packed rows;
        # *_eager: the layers not compiled (the recipe before the third measurement), beside the shipped recipe
        flex = {"train_attn_implementation": "flex_attention", "pack": True}
        name, recipe = {"kag_bf16_cap": ("train16_kagflow_bf16", card16), "kag_t4_cap": ("train16_kagflow_t4_fp16", t4),
                        "kag_big": ("trainbig_kagflow", big),
                        "kag_bf16_cap_flex": ("train16_kagflow_bf16_flex", {**card16, **flex}),
                        "kag_big_flex": ("trainbig_kagflow_flex", {**big, **flex})}[kind]
        if task.endswith("_eager"):
            name, recipe = name + "_eager", replace(recipe, compile_layers=False)
        if task.endswith("_nested"):  # *_nested: the NF4 scales left double-quantised (the recipe before the fifth)
            name, recipe = name + "_nested", replace(recipe, flatten_absmax=False)
        kagflow_run(name, args, ckpt, device, steps, seqs, labels, recipe, worst_first="big" not in task)
    elif task == "kag_big_compiled":  # the big card with its layers compiled (the recipe does not: 5x slower, why?)
        steps, seqs, labels = seed_steps(args)
        kagflow_run("trainbig_kagflow_compiled", args, ckpt, device, steps, seqs, labels,
                    {**big, "compile_layers": True}, worst_first=False)
    elif task.startswith("kag_bf16_cap_keep"):  # the shipped 16 GB bf16 recipe with N layers unchecked
        keep = int(task.removeprefix("kag_bf16_cap_keep"))
        steps, seqs, labels = seed_steps(args)
        kagflow_run(f"train16_kagflow_bf16_keep{keep}", args, ckpt, device, steps, seqs, labels,
                    {**card16, "uncheckpointed_layers": keep})
    elif task in ("kag_bf16_cap_tuned", "kag_t4_cap_tuned"):
        # the levers measured on top of the compiled 16 GB recipe of the third measurement's first call (4 layers
        # unchecked, 8-bit AdamW): more layers keep their activations (compiled layers keep less: 9.9 GiB peak
        # with 4), fused fp32 AdamW (one launch for LoRA-size params instead of bitsandbytes' one per tensor;
        # 8M params: 63 MB of state). Both are the shipped recipe since (recipe.py, config.FAST_LOOP_OPTIMIZERS)
        steps, seqs, labels = seed_steps(args)
        name, recipe = {"kag_bf16_cap_tuned": ("train16_kagflow_bf16_tuned", card16),
                        "kag_t4_cap_tuned": ("train16_kagflow_t4_fp16_tuned", t4)}[task]
        kagflow_run(name, args, ckpt, device, steps, seqs, labels, replace(recipe, uncheckpointed_layers=args.keep_layers),
                    optim_type="adamw_torch_fused")
    elif task == "infer_t4_cap":
        inference_t4(args, ckpt, device)
    elif task == "infer_big":
        inference_big(args, ckpt, device)


ONE_TASKS = [("seed_bf16_cap", 0), ("kag_bf16_cap", 40), ("seed_big", 50), ("kag_big", 40), ("infer_big", 100),
             ("kag_t4_cap", 40), ("infer_t4_cap", 90), ("seed_t4_cap", 50),
             # the shipped recipe (decoder layers compiled) vs the same without compilation, in one call
             ("kag_t4_cap_eager", 40), ("kag_bf16_cap_eager", 40), ("kag_big_eager", 40),
             ("kag_bf16_cap_tuned", 150), ("kag_t4_cap_tuned", 150),
             # eager (shipped) vs flex on packed rows (opt-in), side by side in one call (CUDA only: no flex
             # backward on the CPU)
             ("kag_bf16_cap_flex", 80), ("kag_big_flex", 60),
             # the big card compiled (profiled with --profile), and the 16 GB bf16 recipe with 9 or 10 layers unchecked
             ("kag_big_compiled", 150), ("kag_bf16_cap_keep9", 150), ("kag_bf16_cap_keep10", 150),
             # the 16 GB recipes with the NF4 scales left double-quantised (before the fifth measurement)
             ("kag_bf16_cap_nested", 150), ("kag_t4_cap_nested", 150)]


def run_tasks(args, tasks, script: str = __file__) -> None:
    """Each task in a child process of ``script`` (this one), in order, while the deadline allows."""
    for task, need in tasks:
        if not within(args, need):
            continue
        log(f"task {task}")
        child = [sys.executable, script, "--task", task, "--t0", str(gb.T_START), *sys.argv[1:]]
        try:
            r = subprocess.run(child, timeout=max(30, args.deadline_s - (time.time() - gb.T_START) + 20))
            if r.returncode != 0:
                record(f"task_{task}", {"error": f"exit status {r.returncode}"})
        except subprocess.TimeoutExpired:
            record(f"task_{task}", {"error": "past the deadline: stopped"})
        gb.RESULTS.update(json.loads((Path(args.out) / "results.json").read_text()))


# ----------------------------------------------------------------------------- inference


def make_adapter(args, ckpt, device) -> Path:
    from peft import get_peft_model

    base = gb.load_4bit(ckpt, dtype=torch.bfloat16, compute_dtype=torch.bfloat16, attn="eager", device=device)
    pm = get_peft_model(base, gb.lora_config(args.n_layers))
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    out = Path(tempfile.mkdtemp()) / "adapter"
    pm.save_pretrained(str(out))
    gb.free(pm, base)
    return out


def shipped_model(ckpt, adapter, device):
    """What run_inference loads on ``device``: load_base (profile's dtype) + the adapter, then
    infer.tuned_for_device (the profile's recipe: merge + flex on big sm80+ cards, 4-bit + eager on a T4)."""
    from peft import PeftModel

    from kagflow.classifier import infer
    from kagflow.classifier import model as km

    base = km.load_base(ckpt, device_map={"": str(device)}, pad_token_id=0)
    pm = PeftModel.from_pretrained(base, str(adapter)).eval()
    model, budget = infer.tuned_for_device(pm, 0)
    return model, budget or 8192  # the CPU (--tiny) keeps the budget it is given


def infer_data(args, n=None):
    rows, _ = gb.sample_rows(n or args.infer_rows, seed=2024, vocab=args.vocab)
    return [gb.join(r, 2048) for r in rows], [gb.join(r, 2048, swap=True) for r in rows]


def seed_infer(name, pm, seqs, swapped, device, bs=8):
    gb.seed_predict_df(pm, seqs[:16], 2048, bs=bs)
    gb.reset_peak(device)
    (a, b), dt = gb.timed(lambda: (gb.seed_predict_df(pm, seqs, 2048, bs=bs),
                                   gb.seed_predict_df(pm, swapped, 2048, bs=bs)), device)
    tok = sum(map(len, seqs)) + sum(map(len, swapped))
    res = {"rows_s": round(len(seqs) / dt, 2), "useful_tok_s": round(tok / dt, 1), "s": round(dt, 2), "tta": True,
           "batch": bs, **gb.peak(device)}
    record(name, res)
    log(f"{name}: {res}")
    return a.softmax(-1)


def kagflow_infer(name, model, budget, seqs, swapped, device, extra=None):
    from kagflow.classifier import predict

    (p, ps), dt = gb.timed(lambda: (predict.predict_proba(model, seqs, pad_token_id=0, token_budget=budget),
                                    predict.predict_proba(model, swapped, pad_token_id=0, token_budget=budget)), device)
    tok = sum(map(len, seqs)) + sum(map(len, swapped))
    res = {"rows_s": round(len(seqs) / dt, 2), "useful_tok_s": round(tok / dt, 1), "s": round(dt, 2), "tta": True,
           "budget": budget, **gb.peak(device), **(extra or {})}
    record(name, res)
    log(f"{name}: {res}")
    return torch.as_tensor(p)


def inference_t4(args, ckpt, device):
    """T4 configuration, 15 GiB: the seed's predict_df (fp16) vs the shipped T4 path, max_len 2048, TTA."""
    from peft import PeftModel

    seqs, swapped = infer_data(args)
    adapter = make_adapter(args, ckpt, device)
    as_profile((7, 5), CAP_GIB)

    def seed_t4():
        base = gb.load_4bit(ckpt, dtype=torch.float16, compute_dtype=torch.float16, attn="eager", device=device)
        pm = PeftModel.from_pretrained(base, str(adapter)).eval()
        try:
            return seed_infer("infer16_seed_t4_fp16", pm, seqs, swapped, device, bs=8)
        except torch.OutOfMemoryError as e:
            record("infer16_seed_t4_fp16_bs8", {"error": "OutOfMemoryError at batch 8: " + str(e)[:200]})
            gb.free()
            return seed_infer("infer16_seed_t4_fp16", pm, seqs, swapped, device, bs=4)

    ref = oom_safe("infer16_seed_t4_fp16", seed_t4)

    def kag_t4():
        gb.reset_peak(device)
        model, budget = shipped_model(ckpt, adapter, device)
        kagflow_infer("infer16_kagflow_t4_fp16_warmup", model, budget, seqs[:16], swapped[:16], device)  # + compile
        gb.reset_peak(device)
        p = kagflow_infer("infer16_kagflow_t4_fp16", model, budget, seqs, swapped, device)
        if ref is not None:
            gb.RESULTS["infer16_kagflow_t4_fp16"]["max_abs_prob_diff_vs_seed"] = float((p - ref.double()).abs().max())
            record("infer16_kagflow_t4_fp16", gb.RESULTS["infer16_kagflow_t4_fp16"])

    oom_safe("infer16_kagflow_t4_fp16", kag_t4)
    # more variants (--t4-infer-extra, comma-separated): "eager" (uncompiled, the recipe before the third measurement),
    # "fourbit" (no layer made dense), "nested" (NF4 scales double-quantised; both: before the fifth), "memN"
    # (infer_model_max_gib N: more or fewer layers made dense), "budgetN" (another token budget), "nopool" (the whole
    # top layer computed for every token: before the sixth), beside the shipped
    from kagflow.classifier import recipe as recipe_mod

    shipped_recipe = recipe_mod.recipe_for_profile
    for variant in [v for v in args.t4_infer_extra.split(",") if v]:
        extra = ({"infer_compile_layers": False} if variant == "eager" else
                 {"infer_pool_top_layer": False} if variant == "nopool" else
                 {"infer_model_max_gib": None} if variant == "fourbit" else
                 {"flatten_absmax": False} if variant == "nested" else
                 {"infer_model_max_gib": float(variant.removeprefix("mem"))} if variant.startswith("mem") else
                 {"infer_max_tokens": int(variant.removeprefix("budget"))})
        recipe_mod.recipe_for_profile = lambda profile, traits=None, extra=extra: replace(shipped_recipe(profile, traits),
                                                                                          **extra)
        try:
            def kag_t4_extra():
                torch._dynamo.reset()  # compiles anew, as a fresh run would (and frees what the caches held)
                gb.free()
                gb.reset_peak(device)
                model, budget = shipped_model(ckpt, adapter, device)
                kagflow_infer(f"infer16_kagflow_t4_fp16_{variant}_warmup", model, budget, seqs[:16], swapped[:16],
                              device)
                gb.reset_peak(device)
                p = kagflow_infer(f"infer16_kagflow_t4_fp16_{variant}", model, budget, seqs, swapped, device)
                if ref is not None:
                    gb.RESULTS[f"infer16_kagflow_t4_fp16_{variant}"]["max_abs_prob_diff_vs_seed"] = \
                        float((p - ref.double()).abs().max())
                gb.free(model)

            if within(args, 30):
                oom_safe(f"infer16_kagflow_t4_fp16_{variant}", kag_t4_extra)
        finally:
            recipe_mod.recipe_for_profile = shipped_recipe
    as_profile(None, None)


def inference_big(args, ckpt, device):
    """The big card: the seed's predict_df in bf16 vs the shipped recipe's FIRST pass (merge + flex compile
    included), then its second pass. The seed runs ``--infer-rows`` rows (its rate does not depend on the
    job's size: no compilation); kagflow's first pass runs ``--big-infer-rows`` rows of the same sample (the
    first ``--infer-rows`` are the seed's), so the one-off compile is weighed against a job of that size."""
    from peft import PeftModel

    seqs, swapped = infer_data(args)
    big_seqs, big_swapped = infer_data(args, max(args.big_infer_rows, args.infer_rows))
    adapter = make_adapter(args, ckpt, device)

    def seed_big():
        base = gb.load_4bit(ckpt, dtype=torch.float16, compute_dtype=torch.bfloat16, attn="eager", device=device)
        pm = PeftModel.from_pretrained(base, str(adapter)).eval()
        return seed_infer("inferbig_seed_bf16", pm, seqs, swapped, device)

    oom_safe("inferbig_seed_bf16", seed_big)

    def kag_big():
        from kagflow.classifier import infer
        from kagflow.classifier import model as km

        base = km.load_base(ckpt, device_map={"": str(device)}, pad_token_id=0)
        pm = PeftModel.from_pretrained(base, str(adapter)).eval()
        gb.reset_peak(device)
        gb.sync(device)
        t0 = time.perf_counter()
        model, budget = infer.tuned_for_device(pm, 0)
        budget = budget or 8192
        prep = time.perf_counter() - t0
        kagflow_infer("inferbig_kagflow_first_pass", model, budget, big_seqs, big_swapped, device,
                      extra={"prepare_s": round(prep, 1), "rows": len(big_seqs)})
        r = gb.RESULTS["inferbig_kagflow_first_pass"]
        total = r["s"] + prep  # the first pass as a user meets it: merge + compile + predict
        r.update(first_pass_incl_prepare_s=round(total, 2), rows_s=round(len(big_seqs) / total, 2),
                 useful_tok_s=round(r["useful_tok_s"] * r["s"] / total, 1))
        record("inferbig_kagflow_first_pass", r)
        kagflow_infer("inferbig_kagflow_second_pass", model, budget, big_seqs, big_swapped, device,
                      extra={"rows": len(big_seqs)})
        second = gb.RESULTS["inferbig_kagflow_second_pass"]
        seed = gb.RESULTS.get("inferbig_seed_bf16", {})
        if "useful_tok_s" in seed:  # one-off cost = first pass - its tokens at the compiled rate
            tok = sum(map(len, big_seqs)) + sum(map(len, big_swapped))
            fixed = total - tok / second["useful_tok_s"]
            per_tok_seed, per_tok_kag = 1 / seed["useful_tok_s"], 1 / second["useful_tok_s"]
            # tokens T where seed time = 3 x (fixed + T * per_tok_kag)
            even3 = 3 * fixed / (per_tok_seed - 3 * per_tok_kag) if per_tok_seed > 3 * per_tok_kag else None
            tok_per_row = tok / len(big_seqs)
            record("inferbig_first_pass_model", {"one_off_s": round(fixed, 1), "tok_per_row_tta": round(tok_per_row, 1),
                                                 "rows_for_3x": round(even3 / tok_per_row) if even3 else None})

    oom_safe("inferbig_kagflow_first_pass", kag_big)


# ----------------------------------------------------------------------------- two GPUs


def ddp(args, ckpt, n_gpus: int):
    from kagflow.classifier.multigpu import launch_command

    out = Path(args.out) / f"ddp{n_gpus}_rows{args.ddp_rows}.json"
    params = Path(tempfile.mkdtemp()) / "params.json"
    params.write_text(json.dumps({"ckpt": str(ckpt), "train_rows": args.train_rows, "vocab": args.vocab,
                                  "steps": args.ddp_steps, "warm": args.warm, "out": str(out),
                                  "rows_per_step": args.ddp_rows, "profile": args.ddp_profile,
                                  "freeze_layers": gb.freeze_layers(args.n_layers)}))
    command = launch_command("bench.ddp_worker", ["--params", str(params)], n_gpus=n_gpus,
                             mixed_precision=device_mod.device_profile().mixed_precision, main_port=29555)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(n_gpus)),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
    log("launching: " + " ".join(command))
    t0 = time.time()
    r = subprocess.run(command, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=300)
    (Path(args.out) / f"ddp{n_gpus}_rows{args.ddp_rows}.log").write_text(r.stdout[-20000:] + "\n---\n" + r.stderr[-20000:])
    if r.returncode != 0 or not out.is_file():
        record(f"ddp_{n_gpus}gpu_rows{args.ddp_rows}", {"error": f"rc {r.returncode}: {r.stderr[-600:]}"})
        log(f"ddp {n_gpus}: FAILED rc {r.returncode}\n{r.stderr[-2000:]}")
        return None
    res = json.loads(out.read_text())
    res["wall_s"] = round(time.time() - t0, 1)
    record(f"ddp_{n_gpus}gpu_rows{args.ddp_rows}", res)
    log(f"ddp {n_gpus} GPU(s): {res['useful_tok_s']} tok/s, peaks {res['peak_alloc_gib_per_gpu']}")
    return res


def multi_infer(name, args, ckpt, adapter, seqs, swapped, devices, *, t4: bool):
    """One model per GPU through multigpu.predict_proba_multi (the shipped path), 1 vs 2 GPUs, warm models."""
    from kagflow.classifier import multigpu
    from kagflow.classifier.infer import predict_with  # noqa: F401 - documents the TTA path used below

    if t4:
        as_profile((7, 5), CAP_GIB)
    for d in devices:
        cap(torch.device(d), CAP_GIB if t4 else None)
    models, budget = {}, 0
    for d in devices:  # load + prepare + warm each copy (flex compiles here on big cards)
        models[d], budget = shipped_model(ckpt, adapter, torch.device(d))
        multigpu.predict_proba_multi(lambda dev: models[dev], seqs[:24], pad_token_id=0, token_budget=budget,
                                     devices=[d])
    out = {}
    for n in (1, 2):
        for d in devices:
            gb.reset_peak(torch.device(d))
        use = devices[:n]
        for d in use:
            torch.cuda.synchronize(d)
        t0 = time.perf_counter()
        p = multigpu.predict_proba_multi(lambda dev: models[dev], seqs, pad_token_id=0, token_budget=budget,
                                         devices=use)
        ps = multigpu.predict_proba_multi(lambda dev: models[dev], swapped, pad_token_id=0, token_budget=budget,
                                          devices=use)
        dt = time.perf_counter() - t0
        tok = sum(map(len, seqs)) + sum(map(len, swapped))
        out[n] = {"rows_s": round(len(seqs) / dt, 2), "useful_tok_s": round(tok / dt, 1), "s": round(dt, 2),
                  "peak_alloc_gib_per_gpu": [gb.peak(torch.device(d))["peak_alloc_gib"] for d in use],
                  "probs": torch.as_tensor((p + ps[:, [1, 0, 2]]) / 2)}
    res = {"gpus1": {k: v for k, v in out[1].items() if k != "probs"},
           "gpus2": {k: v for k, v in out[2].items() if k != "probs"},
           "speedup": round(out[2]["rows_s"] / out[1]["rows_s"], 3),
           "max_abs_prob_diff_1_vs_2": float((out[1]["probs"] - out[2]["probs"]).abs().max()),
           "budget": budget, "rows": len(seqs), "tta": True, "t4_config": t4}
    record(name, res)
    log(f"{name}: {res}")
    gb.free(*models.values())
    models.clear()
    as_profile(None, None)
    for d in devices:
        cap(torch.device(d), None)


def two_gpus(args, ckpt, device):
    # --ddp-rows 0: only the one-model-per-GPU inference; --ddp-gpus 1 / 2: one side of the comparison (the
    # one-GPU run can go beside other work on the second GPU; the two-GPU run then finds its result in OUT)
    runs = args.ddp_gpus.split(",") if args.ddp_rows else []
    one = ddp(args, ckpt, 1) if "1" in runs else gb.RESULTS.get(f"ddp_1gpu_rows{args.ddp_rows}")
    two = ddp(args, ckpt, 2) if "2" in runs else None
    if one and two and "useful_tok_s" in one:
        record(f"ddp_speedup_rows{args.ddp_rows}", round(two["useful_tok_s"] / one["useful_tok_s"], 3))
        record(f"ddp_losses_side_by_side_rows{args.ddp_rows}", {"one_gpu": one["losses"], "two_gpus": two["losses"]})
    if args.phase == "ddp":
        return
    seqs, swapped = infer_data(args)
    adapter = make_adapter(args, ckpt, device)
    devices = [f"cuda:{i}" for i in range(min(2, torch.cuda.device_count()))]
    if len(devices) < 2:
        log("only one GPU: no two-GPU inference")
        return
    for name, t4 in (("multi_infer_t4_fp16", True), ("multi_infer_big", False)):
        if ("t4" if t4 else "big") in args.multi_infer.split(",") and within(args, 80):
            # the big card packs rows into 16,384-token bins: --big-infer-rows rows, so each GPU gets ~25 bins
            rows = (seqs, swapped) if t4 else infer_data(args, args.big_infer_rows)
            oom_safe(name, lambda: multi_infer(name, args, ckpt, adapter, *rows, devices, t4=t4))


# ----------------------------------------------------------------------------- main


def table():
    R = gb.RESULTS
    lines = ["", "== summary =="]

    def ratio(a, b, key="useful_tok_s"):
        try:
            return f"x{R[a][key] / R[b][key]:.2f}"
        except Exception:
            return "x?"

    for k, base in (("train16_kagflow_bf16", "train16_seed_bf16"), ("train16_kagflow_bf16_flex", "train16_seed_bf16"),
                    ("trainbig_kagflow_flex", "trainbig_seed_bf16"), ("train16_kagflow_t4_fp16", "train16_seed_bf16"),
                    ("train16_kagflow_t4_fp16", "train16_seed_t4_fp16"), ("trainbig_kagflow", "trainbig_seed_bf16"),
                    ("infer16_kagflow_t4_fp16", "infer16_seed_t4_fp16"),
                    ("train16_kagflow_t4_fp16_eager", "train16_seed_bf16"), ("train16_kagflow_bf16_eager", "train16_seed_bf16"),
                    ("trainbig_kagflow_eager", "trainbig_seed_bf16"),
                    ("infer16_kagflow_t4_fp16_eager", "infer16_seed_t4_fp16"),
                    ("train16_kagflow_bf16_tuned", "train16_seed_bf16"),
                    ("train16_kagflow_bf16_keep9", "train16_seed_bf16"), ("train16_kagflow_bf16_keep10", "train16_seed_bf16"),
                    ("trainbig_kagflow_compiled", "trainbig_seed_bf16"), ("train16_kagflow_t4_fp16_tuned", "train16_seed_bf16"),
                    ("infer16_kagflow_t4_fp16_budget16384", "infer16_seed_t4_fp16"),
                    ("infer16_kagflow_t4_fp16_fourbit", "infer16_seed_t4_fp16"),
                    ("infer16_kagflow_t4_fp16_nested", "infer16_seed_t4_fp16"),
                    ("infer16_kagflow_t4_fp16_mem12", "infer16_seed_t4_fp16"),
                    ("train16_kagflow_bf16_nested", "train16_seed_bf16"), ("train16_kagflow_t4_fp16_nested", "train16_seed_bf16"),
                    ("inferbig_kagflow_first_pass", "inferbig_seed_bf16"),
                    ("inferbig_kagflow_second_pass", "inferbig_seed_bf16")):
        if k in R and base in R:
            v = R[k]
            lines.append(f"{k:<30} vs {base:<22} {ratio(k, base)} {v.get('useful_tok_s')} tok/s "
                         f"peak {v.get('peak_alloc_gib')}/{v.get('peak_reserved_gib')} {v.get('error', '')}")
    for k in [k for k in R if k.startswith("ddp_speedup")] + ["multi_infer_t4_fp16", "multi_infer_big"]:
        if k in R:
            v = R[k]
            lines.append(f"{k}: {v if not isinstance(v, dict) else {x: v.get(x) for x in ('speedup', 'max_abs_prob_diff_1_vs_2', 'error')}}")
    for k, v in R.items():
        if isinstance(v, dict) and "error" in v:
            lines.append(f"ERROR {k}: {v['error'][:160]}")
    print("\n".join(lines), flush=True)


def use_lora(n_layers: int, r: int, alpha: float, targets, frozen_of_42: int, dropout: float = 0.05):
    """Point gemma_bench's LoRA at this shape (the seed's Trainer, kagflow's loop and the adapter all read
    ``gb.lora_config``/``gb.freeze_layers``): r, alpha, target projections, the first ``frozen_of_42`` of 42 layers
    without LoRA (scaled to ``n_layers``). Returns the shape as the memory plan sees it."""
    from peft import LoraConfig, TaskType

    from kagflow.classifier.memory import LoraShape

    k = frozen_of_42 if n_layers == 42 else round(n_layers * frozen_of_42 / 42)
    gb.lora_config = lambda n: LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=dropout,
                                          bias="none", task_type=TaskType.SEQ_CLS,
                                          layers_to_transform=[i for i in range(n) if i >= k] if k else None)
    gb.freeze_layers = lambda n: k
    return LoraShape(r, tuple(targets), k, dropout)


def add_run_arguments(ap) -> None:
    """The model, rows and lengths of a run, and the internal child-process flags (also bench/winners.py's)."""
    ap.add_argument("--layers", type=int, default=42)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--train-rows", type=int, default=300)
    ap.add_argument("--train-max-len", type=int, default=1024)
    ap.add_argument("--seed-steps", type=int, default=16)
    ap.add_argument("--warm", type=int, default=3)
    ap.add_argument("--infer-rows", type=int, default=200)
    ap.add_argument("--task", default=None, help="(internal) one measurement in this process")
    ap.add_argument("--t0", type=float, default=None, help="(internal) the parent's start time")


def dry_run_sizes(args, sizes) -> None:
    """``--dry-run``'s small sizes (``(flag, value)`` pairs) for every flag the command line did not set, on ``args``
    and appended to ``sys.argv``: the child processes of ``run_tasks`` see the same sizes. A child (``--task``)
    already has them."""
    if not args.dry_run or "--task" in sys.argv:
        return
    for flag, value in sizes:
        if flag not in sys.argv:
            name = flag[2:].replace("-", "_")
            setattr(args, name, type(getattr(args, name))(value))
            sys.argv += [flag, str(value)]


def start(args):
    """(device, model config, checkpoint path) of a run or one of its child processes: the results so far
    loaded from OUT, the parent's clock (``--t0``), the CPU for ``--tiny``."""
    gb.OUT = Path(args.out)
    gb.OUT.mkdir(parents=True, exist_ok=True)
    if args.t0:
        gb.T_START = args.t0
    if (gb.OUT / "results.json").is_file():
        gb.RESULTS.update(json.loads((gb.OUT / "results.json").read_text()))
    device = torch.device("cpu") if args.tiny else torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32 = True
    cfg = gb.model_config(args)
    args.n_layers, args.vocab = cfg.num_hidden_layers, cfg.vocab_size
    ckpt = Path(args.ckpt or (tempfile.gettempdir() + f"/g9b_L{cfg.num_hidden_layers}{'_tiny' if args.tiny else ''}"))
    return device, cfg, ckpt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=["one", "two", "ddp"], required=True)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    add_run_arguments(ap)
    ap.add_argument("--ddp-steps", type=int, default=24)
    ap.add_argument("--ddp-rows", type=int, default=6, help="rows per optimizer step (global batch), both runs")
    ap.add_argument("--ddp-gpus", default="1,2", help="which DDP runs: 1, 2 or both (1,2)")
    ap.add_argument("--ddp-profile", action="store_true", help="profile 3 extra DDP steps (top ops to the JSON)")
    ap.add_argument("--multi-infer", default="t4,big", help="--phase two: which one-model-per-GPU inference runs")
    ap.add_argument("--t4-infer-extra", default="eager", help="infer_t4_cap's variants after the shipped recipe, "
                    "comma-separated: 'eager' (layers not compiled), 'fourbit' (no layer made dense), 'nested' (NF4 "
                    "scales double-quantised), 'nopool' (the whole top layer), 'memN' (N GiB for the model), "
                    "'budgetN' (N tokens per batch)")
    ap.add_argument("--profile", action="store_true", help="kag_* tasks: three more steps under torch.profiler")
    ap.add_argument("--keep-layers", type=int, default=8, help="*_tuned: uncheckpointed layers")
    ap.add_argument("--big-infer-rows", type=int, default=600, help="rows of kagflow's big-card first pass")
    ap.add_argument("--deadline-s", type=float, default=500)
    ap.add_argument("--tasks", default=None, help="--phase one: only these tasks (comma-separated; 'none': only "
                    "build the checkpoint), e.g. to run the seed-independent ones on a second GPU at the same time")
    args = ap.parse_args()
    device, cfg, ckpt = start(args)
    gb.env_info(device)
    record("args", vars(args))
    gb.build_checkpoint(cfg, ckpt, device)
    if args.task:
        if args.tiny:  # the CPU logic check: Dynamo's capture without inductor's C++ builds (as tests/unit/classifier/test_compiling.py)
            from kagflow.classifier import compiling
            compiling.BACKEND = "aot_eager"
        run_task(args, ckpt, device, args.task)
        return
    if args.phase == "one":
        wanted = args.tasks.split(",") if args.tasks else None
        need = dict(ONE_TASKS)
        run_tasks(args, [t for t in ONE_TASKS if not (args.tiny and t[0].endswith("_flex"))] if wanted is None
                  else [(t, need[t]) for t in wanted if t in need])  # in the order asked
    else:  # "two", or "ddp" (the DDP training part alone)
        two_gpus(args, ckpt, device)
    record("total_s", round(time.time() - gb.T_START, 1))
    table()


if __name__ == "__main__":
    main()
