"""The classifier's real GPU code paths on the tiny model: both training loops, then inference with
the per-card recipe and TTA, on one and (threads) all visible GPUs. A smoke run, not a benchmark:
it proves the CUDA branches the notebooks take (recipe_for_current_device, fit_lora, dequantise and
merge, flex attention, bnb adamw_8bit through the Trainer) run and learn, and that the fast loop's
checkpoint/resume (a SIGKILLed run resumed) and time-budget paths work on the GPU.

    python bench/gpu_smoke.py --out OUT_DIR
    python bench/gpu_smoke.py --out OUT_DIR --only-resume --t4   # the resume paths as a T4 runs them

``--t4``: every shipped path sees a T4 (sm75, 15 GiB: fp16 + GradScaler, 4-bit base, compiled decoder layers,
checkpointing below the top layers), in this process and the killed child, on a 10-layer tiny model so that
checkpointed compiled layers train (an H200 takes the big-card recipe: no checkpointing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def fake_t4() -> None:
    """Every shipped path (device profile, recipe, dtype) sees a T4 with 15 GiB; the allocator is capped there
    (bench/gpu16.py's T4 configuration)."""
    import torch

    from bench.gpu16 import CAP_GIB, as_profile, cap

    as_profile((7, 5), CAP_GIB)
    cap(torch.device("cuda", 0), CAP_GIB)


def main() -> None:
    import torch

    from kagflow.classifier.config import InferConfig, TrainConfig
    from kagflow.classifier.infer import run_inference
    from kagflow.classifier.synth import write_synthetic_competition
    from kagflow.classifier.tiny import make_tiny_checkpoint
    from kagflow.classifier.train import run_training

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only-resume", action="store_true", help="only the checkpoint/resume and time-budget paths")
    parser.add_argument("--t4", action="store_true", help="as on a T4 (fp16, compiled and checkpointed layers)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # (internal) the killed training run
    args = parser.parse_args()
    if args.t4:
        fake_t4()
    if args.child:  # the training module as a kernel runs it, under this process's device profile
        import runpy

        sys.argv = ["train", "--params", str(args.child)]
        runpy.run_module("kagflow.classifier.train", run_name="__main__")
        return
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    base = make_tiny_checkpoint(out / "tiny", num_layers=10 if args.t4 else 2)
    comp = write_synthetic_competition(out / "comp", n_train=2000, n_test=300, seed=0)
    linear = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    if args.only_resume:
        results["resume"] = resume_paths(out, comp, base, linear, t4=args.t4)
        results["profile"] = "T4 (faked)" if args.t4 else "the GPU's own"
        print("resume", results["resume"], flush=True)
        (out / "gpu_smoke_resume.json").write_text(json.dumps(results, indent=1))
        return
    for loop in ("fast", "trainer"):
        cfg = TrainConfig(train_loop=loop, max_length=128, n_epochs=5, lr=1e-3, per_device_train_batch_size=16,
                          gradient_accumulation_steps=1, freeze_layers=0, target_modules=linear, eval_strategy="no",
                          logging_steps=100, gradient_checkpointing=False)
        start = time.time()
        metrics = run_training(cfg, train_csv=comp["train"], base=base, adapter_dir=out / f"adapter-{loop}",
                               checkpoint_dir=out / f"ckpt-{loop}", report_dir=out / f"report-{loop}")
        results[f"train_{loop}"] = {k: metrics[k] for k in ("accuracy", "log_loss", "macro_f1", "optim", "loop",
                                                            "global_step")} | {"seconds": round(time.time() - start, 1)}
        print(loop, results[f"train_{loop}"], flush=True)
    results["resume"] = resume_paths(out, comp, base, linear)
    print("resume", results["resume"], flush=True)
    icfg = InferConfig(max_length=128, batch_size=16, tta=True)
    start = time.time()
    one = run_inference(icfg, test_csv=comp["test"], base=base, adapter=out / "adapter-fast",
                        output_path=out / "submission.csv", devices=["cuda:0"])
    results["infer"] = {"rows": one["rows"], "seconds": round(time.time() - start, 1)}
    import pandas as pd
    from sklearn.metrics import log_loss

    cols = ["winner_model_a", "winner_model_b", "winner_tie"]
    truth = pd.read_csv(comp["solution"]).set_index("id").loc[pd.read_csv(out / "submission.csv")["id"]]
    results["infer"]["log_loss"] = float(log_loss(truth[cols].to_numpy().argmax(1),
                                                  pd.read_csv(out / "submission.csv")[cols].to_numpy(),
                                                  labels=[0, 1, 2]))
    # the T4 path: the 4-bit PeftModel as loaded, no merge, eager attention (what tuned_for_device keeps on a T4)
    from kagflow.classifier.data import load_arena_csv
    from kagflow.classifier.infer import predict
    from kagflow.classifier.model import load_for_inference

    model, tok = load_for_inference(base, out / "adapter-trainer", device_map={"": "cuda:0"})
    frame = load_arena_csv(comp["test"], labeled=False).frame
    probs = predict(model, tok, frame, max_length=128, tta=True, token_budget=8192)
    results["infer_4bit_peft"] = {"rows": len(probs), "row_sum_max_err": float(abs(probs.sum(1) - 1).max())}
    print(json.dumps(results, indent=1), flush=True)
    (out / "gpu_smoke.json").write_text(json.dumps(results, indent=1))


def resume_paths(out: Path, comp: dict, base: Path, linear, *, t4: bool = False) -> dict:
    """The fast loop's checkpoint/resume and time-budget paths on the GPU: a run killed (SIGKILL) after its
    first checkpoint and run again ends with the uninterrupted run's adapter; a run given a time budget
    stops early, still writes adapter + metrics.json, and the next run resumes and finishes."""
    import dataclasses
    import os
    import signal
    import subprocess

    import torch
    from safetensors.torch import load_file

    from kagflow.classifier.config import TrainConfig
    from kagflow.classifier.train import run_training

    cfg = TrainConfig(train_loop="fast", max_length=128, n_epochs=5, lr=1e-3, per_device_train_batch_size=16,
                      gradient_accumulation_steps=1, freeze_layers=0, target_modules=linear, eval_strategy="no",
                      logging_steps=10, save_steps=25, gradient_checkpointing=t4)

    def dirs(name):
        return dict(train_csv=str(comp["train"]), base=str(base), adapter_dir=str(out / name / "adapter"),
                    checkpoint_dir=str(out / name / "ckpt"), report_dir=str(out / name))

    from kagflow.classifier.recipe import recipe_for_current_device

    recipe = recipe_for_current_device()
    res = {"recipe": {k: getattr(recipe, k) for k in ("dtype", "grad_scaler", "compile_layers", "gradient_checkpointing",
                                             "uncheckpointed_layers", "dequantize_for_training")}}
    whole = run_training(cfg, **dirs("whole"))
    res["whole"] = {k: whole[k] for k in ("global_step", "seconds", "log_loss", "train_loss")}
    print("SMOKE whole", res, flush=True)
    # killed: the training module as a kernel runs it, SIGKILLed once its first checkpoint is on disk
    (out / "killed").mkdir(parents=True, exist_ok=True)
    params = out / "killed" / "params.json"
    params.write_text(json.dumps({"config": dataclasses.asdict(cfg), **dirs("killed")}))
    root = str(Path(__file__).resolve().parent.parent)
    child = ([sys.executable, __file__, "--out", str(out), "--t4", "--child", str(params)] if t4 else
             [sys.executable, "-m", "kagflow.classifier.train", "--params", str(params)])
    proc = subprocess.Popen(child,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get(
                                "PYTHONPATH")]))}, stdout=subprocess.DEVNULL)
    ckpt = out / "killed" / "ckpt"
    while proc.poll() is None and not list(ckpt.glob("fit-step-*")):
        time.sleep(0.05)
    killed_at = sorted(p.name for p in ckpt.glob("fit-step-*"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_training(cfg, **dirs("killed"))
    a = load_file(str(out / "whole" / "adapter" / "adapter_model.safetensors"))

    def diff_vs_whole(name: str) -> float:
        """The largest difference between run ``name``'s adapter weights and the uninterrupted run's."""
        b = load_file(str(out / name / "adapter" / "adapter_model.safetensors"))
        return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)

    res["killed"] = {"killed_after": killed_at, "resumed_from": resumed["resumed_from"],
                     "global_step": resumed["global_step"], "log_loss": resumed["log_loss"],
                     "train_loss": resumed["train_loss"], "seconds": resumed["seconds"],
                     "adapter_max_abs_diff_vs_whole": diff_vs_whole("killed"),
                     "adapter_max_abs": max(float(a[k].float().abs().max()) for k in a)}
    print("SMOKE killed", res["killed"], flush=True)
    # time budget: about half the resumed run's time (warm: this process compiled the layers already) after the
    # fixed 60 s reserve (the uninterrupted run's time includes the compilation: with compiled layers its half
    # was enough for the whole run, fifth measurement)
    budget = 60 + 0.5 * resumed["seconds"]
    stopped = run_training(dataclasses.replace(cfg, time_budget=budget), **dirs("budget"))
    wrote = (out / "budget" / "adapter" / "adapter_config.json").is_file() and (out / "budget" / "metrics.json").is_file()
    finished = run_training(cfg, **dirs("budget"))
    res["budget"] = {"time_budget_s": round(budget, 1), "stopped_early": stopped["stopped_early"],
                     "stopped_at_step": stopped["global_step"], "wrote_adapter_and_metrics": wrote,
                     "next_run_resumed_from": finished["resumed_from"], "next_run_global_step": finished["global_step"],
                     "next_run_log_loss": finished["log_loss"]}
    res["budget"]["adapter_max_abs_diff_vs_whole"] = diff_vs_whole("budget")
    print("SMOKE budget", res["budget"], flush=True)
    # the same uninterrupted run once more: how far two runs of this path differ with no kill at all (compiled
    # fp16 kernels need not be bit-reproducible; the big-card eager bf16 path was, second measurement)
    again = run_training(cfg, **dirs("whole2"))
    res["whole2"] = {"log_loss": again["log_loss"], "train_loss": again["train_loss"],
                     "adapter_max_abs_diff_vs_whole": diff_vs_whole("whole2")}
    print("SMOKE whole2", res["whole2"], flush=True)
    torch.cuda.empty_cache()
    return res


if __name__ == "__main__":
    main()
