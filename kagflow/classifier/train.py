"""QLoRA training of the preference classifier on one stratified fold, as the seed's recipe."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .config import TrainConfig  # noqa: F401 - re-exported: the notebooks import it from here
from .data import load_arena_csv, stratified_fold
from .device import device_profile
from .loss import hard_labels, resolve_class_weights, trainer_loss
from .metrics import (
    LOSS_CURVE,
    evaluate,
    history_losses,
    logged_losses,
    save_confusion_matrix,
    save_loss_curve,
    with_final,
    write_metrics,
    write_predictions,
)
from .model import ModelTraits, add_lora, load_base, load_tokenizer
from .multigpu import distributed_device_map, launch_command
from .progress_line import TrainProgress, trainer_callback
from .task import Task
from .text import Encoding, encode_frame


def accumulation_steps(cfg: TrainConfig, world: int) -> int:
    """The Trainer's gradient accumulation under ``world`` DDP processes that keeps the one-GPU global batch
    (per_device_train_batch_size x gradient_accumulation_steps rows per optimizer step), where it divides."""
    if world > 1 and cfg.gradient_accumulation_steps % world == 0:
        return cfg.gradient_accumulation_steps // world
    if world > 1:
        print(f"notice: gradient_accumulation_steps = {cfg.gradient_accumulation_steps} does not divide over {world} "
              f"GPUs: the global batch is {world}x the one-GPU run's", flush=True)
    return cfg.gradient_accumulation_steps


def training_arguments(cfg: TrainConfig, output_dir, optim: str):
    """TrainingArguments for transformers 4.x and 5.x (5 renamed group_by_length and gradient_checkpointing)."""
    import torch
    from transformers import TrainingArguments

    kwargs = dict(
        output_dir=str(output_dir),
        report_to="none",
        num_train_epochs=cfg.n_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation_steps(cfg, int(os.environ.get("WORLD_SIZE", "1"))),
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        dataloader_num_workers=cfg.dataloader_num_workers,
        logging_steps=cfg.logging_steps,
        eval_strategy=cfg.eval_strategy,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        optim=optim,
        **device_profile().trainer_flags(),
        learning_rate=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        seed=cfg.seed,
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs["ddp_find_unused_parameters"] = False  # frozen 4-bit base: only LoRA weights get gradients
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    kwargs[checkpointing] = cfg.gradient_checkpointing
    if cfg.gradient_checkpointing:
        kwargs[f"{checkpointing}_kwargs"] = {"use_reentrant": False}
    if "train_sampling_strategy" in fields:
        kwargs["train_sampling_strategy"] = "group_by_length"
    else:
        kwargs["group_by_length"] = True
    return TrainingArguments(**kwargs)


EVAL_KEYS = ("log_loss", "accuracy")  # what every evaluation during training records, besides the task's metric


def eval_keys(task: Task) -> tuple[str, ...]:
    """The scores an evaluation during training records (``eval_<key>`` in epoch_evals)."""
    return EVAL_KEYS + (() if task.metric in EVAL_KEYS else (task.metric,))


def best_eval(evals: list[dict], task: Task) -> dict | None:
    """The evaluation during training with the best ``eval_<metric>`` by the metric's direction (the first of
    equals); None when none has it."""
    key = f"eval_{task.metric}"
    scored = [e for e in evals if e.get(key) is not None]
    if not scored:
        return None
    pick = min if task.direction == "lower" else max
    return pick(scored, key=lambda e: e[key])


def _trainer_metrics(task: Task):
    """The HF Trainer's compute_metrics for ``task``: log loss, accuracy, macro-F1 and the task's metric."""
    def compute(eval_pred) -> dict:
        import torch

        probs = torch.softmax(torch.as_tensor(eval_pred.predictions).float(), dim=-1).numpy()
        scores = evaluate(eval_pred.label_ids, probs, task)
        keys = ("log_loss", "accuracy", "macro_f1", task.metric)
        return {k: scores[k] for k in keys if scores.get(k) is not None}
    return compute


def encode_fold(cfg: TrainConfig, frame, tokenizer, task: Task | None = None, extra=None):
    """(train rows, validation rows, validation row ids, counts): Trainer rows ({input_ids, labels}) of fold
    ``cfg.fold_idx`` of ``frame``; the model reads ``task``'s text columns (default: LMSYS).

    ``extra`` (extra files and pseudo-labels, already deduplicated: ``extra.deduplicate``) joins the training rows
    only; ``swap_augmentation`` then swaps training rows (``extra.swap_augment``). A row with a probability
    ``target`` trains on it, and then every training row's label is a probability list (one-hot for hard rows)."""
    import pandas as pd

    from .extra import swap_augment

    task = task or Task()
    if cfg.max_train_rows and cfg.max_train_rows < len(frame):
        frame = frame.sample(n=cfg.max_train_rows, random_state=cfg.seed).reset_index(drop=True)
    encoding = Encoding.of(cfg)
    train_idx, val_idx = stratified_fold(frame["label"].tolist(), cfg.n_splits, cfg.fold_idx, seed=cfg.seed)
    train, val = frame.iloc[train_idx], frame.iloc[val_idx]
    if extra is not None and len(extra):
        train = pd.concat([train, extra], ignore_index=True)
    train = swap_augment(train.reset_index(drop=True), task, cfg.swap_augmentation, cfg.seed)
    targets = list(train["target"]) if "target" in train.columns else [None] * len(train)
    soft = any(isinstance(t, list) for t in targets)
    labels = [t if isinstance(t, list) else [float(c == y) for c in range(task.n_labels)] if soft else int(y)
              for t, y in zip(targets, train["label"])]
    train_rows = [{"input_ids": i, "labels": y}
                  for i, y in zip(encode_frame(tokenizer, train, task, cfg.max_length, encoding=encoding), labels)]
    val_rows = [{"input_ids": i, "labels": int(y)}
                for i, y in zip(encode_frame(tokenizer, val, task, cfg.max_length, encoding=encoding), val["label"])]
    counts = dict(n_competition_train=len(train_idx), n_extra=0 if extra is None else len(extra),
                  n_soft=sum(isinstance(t, list) for t in targets), n_swapped=train.attrs.get("swapped", 0))
    return train_rows, val_rows, [str(i) for i in val["id"]], counts


def extra_rows(cfg: TrainConfig, frame, task: Task, test_csv, soft_columns=None):
    """The extra training rows of ``cfg`` (extra_train_files, then pseudo_label_files joined with ``test_csv``),
    deduplicated against ``frame`` (the competition's rows, every fold), and their counts; (None, {}) without."""
    import pandas as pd

    from .extra import deduplicate, load_extra, pseudo_labels
    from .paths import find_dataset_file

    parts = []
    if cfg.extra_train_files:
        parts.append(load_extra([find_dataset_file(f) for f in cfg.extra_train_files], task, soft_columns))
    for ref in cfg.pseudo_label_files:
        parts.append(pseudo_labels(find_dataset_file(ref), test_csv, task))
    if not parts:
        return None, {}
    kept = deduplicate(pd.concat(parts, ignore_index=True), frame, task)
    print(kept.report("extra training rows"), flush=True)
    return kept.frame, dict(extra_dropped_competition=kept.dropped_competition,
                            extra_dropped_repeated=kept.dropped_repeated)


def make_trainer(cfg: TrainConfig, model, tokenizer, train_rows, eval_rows, checkpoint_dir, optim: str,
                 task: Task | None = None):
    """An HF Trainer with dynamic padding; it evaluates ``eval_rows`` unless eval_strategy is "no"."""
    task = task or Task()
    from transformers import DataCollatorWithPadding, Trainer

    evaluating = cfg.eval_strategy != "no"
    tokenizer_kwarg = "processing_class" if "processing_class" in inspect.signature(Trainer).parameters \
        else "tokenizer"  # transformers < 4.46
    weights = resolve_class_weights(cfg.class_weights, hard_labels([r["labels"] for r in train_rows]),
                                    task.class_names)
    extra = {}
    if weights is not None or any(isinstance(r["labels"], list) for r in train_rows):  # soft targets: loss.py's
        import torch

        extra["compute_loss_func"] = trainer_loss(None if weights is None else
                                                  torch.tensor(weights, dtype=torch.float32))
    return Trainer(
        **extra,
        model=model,
        args=training_arguments(cfg, checkpoint_dir, optim),
        train_dataset=train_rows,
        eval_dataset=eval_rows if evaluating else None,
        compute_metrics=_trainer_metrics(task) if evaluating else None,
        data_collator=DataCollatorWithPadding(tokenizer=tokenizer),
        **{tokenizer_kwarg: tokenizer},
    )


def resolve_loop(train_loop: str) -> str:
    """"fast" (fit.fit_lora) or "trainer" (HF Trainer); "auto" is fast on a GPU, the Trainer on the CPU."""
    import torch

    if train_loop not in ("auto", "fast", "trainer"):
        raise ValueError(f"train_loop must be auto, fast or trainer, not {train_loop!r}")
    if train_loop == "auto":
        return "fast" if torch.cuda.is_available() else "trainer"
    return train_loop


def training_recipe(cfg: TrainConfig | None = None, traits=None):
    """kagflow's recipe for this device's profile and the model's ``traits`` (``model.ModelTraits``;
    bench/RESULTS.md; on the CPU the T4 shapes in fp32), with ``cfg``'s say: no checkpointing when
    ``gradient_checkpointing`` is false, its training attention ("auto": the recipe's for the model). The memory plan
    (``memory``) follows ``cfg``'s LoRA (r, targets, freeze_layers, dropout), max_length and optimizer, and refuses
    (``memory.MemoryPlanError``, every term and the fixes) a configuration that cannot fit the card."""
    from .memory import LoraShape
    from .recipe import recipe_for_current_device

    training = {} if cfg is None else dict(lora=LoraShape.of(cfg), max_length=cfg.max_length,
                                           optimizer=cfg.optim_type, checkpointing=cfg.gradient_checkpointing)
    recipe = recipe_for_current_device(traits=traits, **training)
    if cfg is not None:
        attn = recipe.train_attn_implementation if cfg.attn_implementation == "auto" else cfg.attn_implementation
        pack = attn == "flex_attention"  # flex trains on packed rows: a few shapes to compile, no L x L scores
        recipe = dataclasses.replace(recipe, gradient_checkpointing=bool(recipe.gradient_checkpointing
                                                                         and cfg.gradient_checkpointing),
                                     train_attn_implementation=attn, pack=pack)
    return recipe


def eval_steps(cfg: TrainConfig, steps_per_epoch: int, total: int) -> list[int]:
    """The steps after which the fast loop evaluates (``eval_strategy``), the last one excluded: the final
    evaluation follows training anyway."""
    if cfg.eval_strategy == "epoch":
        every = steps_per_epoch
    elif cfg.eval_strategy == "steps":
        every = cfg.logging_steps
    else:
        return []
    return list(range(every, total, every)) if every > 0 else []


def checkpointing(cfg: TrainConfig, checkpoint_dir: Path, *, started: float, eval_rows: int):
    """The fast loop's ``resume.Checkpointing`` from [train]: save_steps / save_minutes / save_total_limit into
    ``checkpoint_dir``, resume from there or from a previous version's output under the input root, and
    stop ``time_budget`` seconds after ``started`` less the time evaluation and saving need."""
    from .paths import input_root
    from .resume import Checkpointing

    return Checkpointing(folder=checkpoint_dir, every_steps=cfg.save_steps, every_seconds=cfg.save_minutes * 60,
                         keep=cfg.save_total_limit, search=[input_root()],
                         deadline=started + cfg.time_budget if cfg.time_budget else None,
                         reserve_seconds=60.0, reserve_rows=eval_rows)


def _rank0_decides(*flags: bool) -> tuple:
    """Rank 0's ``flags`` on every DDP process (its clock decides), unchanged on one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flags
    box = [flags]
    dist.broadcast_object_list(box, src=0)
    return tuple(box[0])


def _budget_callback(cfg: TrainConfig, started: float):
    """An HF TrainerCallback: a checkpoint every ``save_minutes``, and a clean stop (with a checkpoint) before
    ``time_budget`` runs out, as the fast loop does."""
    from transformers import TrainerCallback

    from .resume import now

    class Budget(TrainerCallback):
        stopped_early = False
        last_save = started
        first_step = None

        def on_step_end(self, args, state, control, **kwargs):
            t = now()
            if self.first_step is None:
                self.first_step = (state.global_step - 1, t)
            if state.global_step % max(1, cfg.logging_steps):  # decide at the same steps on every process
                return control
            save = bool(cfg.save_minutes) and t - self.last_save >= cfg.save_minutes * 60
            done = state.global_step - self.first_step[0]
            per_step = (t - started) / max(1, done)
            stop = bool(cfg.time_budget) and state.global_step < state.max_steps and \
                t + (cfg.logging_steps + 1) * per_step + 60 > started + cfg.time_budget
            save, stop = _rank0_decides(save, stop)
            if save:
                control.should_save, self.last_save = True, t
            if stop:
                control.should_training_stop = control.should_save = self.stopped_early = True
            return control

    return Budget()


def _eval_autocast(model):
    """Autocast for evaluating a model trained in mixed precision (bf16/fp16 base, fp32 LoRA and head)."""
    import contextlib

    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=device_profile(device).dtype)


def _init_distributed() -> None:
    """Join the process group accelerate/torchrun set up the environment for (fit_lora averages LoRA grads)."""
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def _val_probs(cfg: TrainConfig, model, val_rows, tokenizer):
    """``model``'s probabilities on the validation rows (eval mode, mixed precision as trained, eval batch size)."""
    from .predict import predict_proba

    model.eval()
    with _eval_autocast(model):
        return predict_proba(model, [r["input_ids"] for r in val_rows], pad_token_id=tokenizer.pad_token_id,
                             token_budget=cfg.per_device_eval_batch_size * cfg.max_length)


def _evaluate(cfg: TrainConfig, model, val_rows, tokenizer, task: Task) -> dict:
    """Scores of ``model`` on the validation rows."""
    return evaluate([r["labels"] for r in val_rows], _val_probs(cfg, model, val_rows, tokenizer), task)


def run_training(cfg: TrainConfig, *, train_csv, base, adapter_dir, checkpoint_dir, report_dir,
                 task: Task | None = None) -> dict:
    """Train on fold ``cfg.fold_idx`` of ``task``'s train file (default: LMSYS); save adapter + tokenizer to
    ``adapter_dir``; write metrics.json (the task's metric and its direction; ``best_eval``: the evaluation during
    training best by it), val_predictions.csv, confusion_matrix.png and loss_curve.png (train and validation
    loss) to ``report_dir``; return the metrics.

    Both loops save resumable checkpoints into ``checkpoint_dir`` (``save_steps``, ``save_minutes``) and resume
    from the latest one (the fast loop also from a previous kernel version's output under the input root);
    with ``time_budget`` they stop in time to evaluate and save, leaving a checkpoint for the next run.
    Checkpoints are removed once a finished run saved its adapter, unless ``cfg.keep_checkpoints``.
    """
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from .resume import now

    start, started = time.time(), now()
    set_seed(cfg.seed)
    print(f"precision: {device_profile().describe()}", flush=True)
    task = task or Task()
    if cfg.soft_label_columns and not cfg.soft_labels:
        raise ValueError("[train] soft_label_columns needs soft_labels = true")
    soft_columns = tuple(cfg.soft_label_columns) if cfg.soft_labels else None
    data = load_arena_csv(train_csv, labeled=True, task=task, soft_columns=soft_columns)
    print(data.report(), flush=True)
    extra, extra_counts = extra_rows(cfg, data.frame, task, Path(train_csv).parent / task.test_file, soft_columns)
    tokenizer = load_tokenizer(base)
    print(f"encoding: {Encoding.of(cfg).check(task).describe()}", flush=True)
    train_rows, val_rows, val_ids, counts = encode_fold(cfg, data.frame, tokenizer, task, extra)
    print(f"training rows: {counts}", flush=True)

    model = load_base(base, attn_implementation=cfg.attn_implementation, pad_token_id=tokenizer.pad_token_id,
                      device_map=distributed_device_map(), task=task)
    adapter_dir = Path(adapter_dir)
    checkpoint_dir = Path(checkpoint_dir)
    loop = resolve_loop(cfg.train_loop)
    lora = dict(r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, target_modules=cfg.target_modules,
                freeze_layers=cfg.freeze_layers, bias=cfg.lora_bias)
    stopped_early = False
    if loop == "fast":
        from .batching import length_grouped_steps, plan_steps
        from .fit import fit_lora, resolve_optim

        recipe = training_recipe(cfg, ModelTraits.of(model.config))
        model = add_lora(model, **lora, recipe=recipe)
        model.print_trainable_parameters()
        _init_distributed()
        optim = resolve_optim(cfg.optim_type, "fast")
        print(f"kagflow loop: {recipe}, optimizer {optim}", flush=True)
        seqs, labels = [r["input_ids"] for r in train_rows], [r["labels"] for r in train_rows]
        rows_per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps
        lengths = [len(q) for q in seqs]
        steps = plan_steps(lengths, rows_per_step, cfg.n_epochs, cfg.seed)
        per_epoch = len(length_grouped_steps(lengths, rows_per_step, seed=cfg.seed))
        evals, progress = [], TrainProgress(len(steps))

        def on_eval(step: int) -> None:
            if int(os.environ.get("RANK", "0")) == 0:
                scores = _evaluate(cfg, model, val_rows, tokenizer, task)
                evals.append({"epoch": round(step / per_epoch, 4), "step": step,
                              **{f"eval_{k}": scores[k] for k in eval_keys(task)}})
                print(evals[-1], flush=True)
                progress.validation(step, scores["log_loss"])

        weights = resolve_class_weights(cfg.class_weights, hard_labels(labels), task.class_names)
        if weights is not None:
            print(f"class weights ({', '.join(task.class_names)}): {[round(w, 4) for w in weights]}", flush=True)
        losses = fit_lora(model, seqs, labels, recipe, steps=steps, lr=cfg.lr, warmup_steps=cfg.warmup_steps,
                          seed=cfg.seed, optim_type=optim, pad_id=tokenizer.pad_token_id, log_every=cfg.logging_steps,
                          on_log=progress, checkpointing=checkpointing(cfg, checkpoint_dir, started=started,
                                                                    eval_rows=len(val_rows)),
                          eval_at=eval_steps(cfg, per_epoch, len(steps)), on_eval=on_eval, class_weights=weights)
        resume, global_step, stopped_early = losses.resumed_from, len(losses), losses.stopped_early
        train_loss = sum(losses) / len(losses) if losses else float("nan")
        curve = logged_losses(losses, cfg.logging_steps), [(e["step"], e["eval_log_loss"]) for e in evals]
        if int(os.environ.get("RANK", "0")) != 0:
            return {}
    else:
        model = add_lora(model, **lora, gradient_checkpointing=cfg.gradient_checkpointing)
        model.print_trainable_parameters()
        from .fit import resolve_optim

        optim = resolve_optim(cfg.optim_type)
        trainer = make_trainer(cfg, model, tokenizer, train_rows, val_rows, checkpoint_dir, optim, task)
        budget = _budget_callback(cfg, started)
        trainer.add_callback(budget)
        trainer.add_callback(trainer_callback())
        resume = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
        if resume:
            print(f"resuming from {resume}", flush=True)
        result = trainer.train(resume_from_checkpoint=resume)
        if not trainer.is_world_process_zero():
            return {}  # under DDP, rank 0 saves and evaluates
        global_step, train_loss, stopped_early = result.global_step, result.training_loss, budget.stopped_early
        evals = [{"epoch": h["epoch"], **{f"eval_{k}": h.get(f"eval_{k}") for k in eval_keys(task)}}
                 for h in trainer.state.log_history if "eval_log_loss" in h]
        curve = history_losses(trainer.state.log_history)
    if stopped_early:
        print(f"time budget ({cfg.time_budget:.0f}s) reached at step {global_step}: a checkpoint is in "
              f"{checkpoint_dir}; the next run resumes from it", flush=True)

    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    Encoding.of(cfg).save(adapter_dir)  # inference encodes as trained (text.Encoding.load)
    if not cfg.keep_checkpoints and not stopped_early:  # a stopped run keeps them for the next one
        shutil.rmtree(checkpoint_dir, ignore_errors=True)

    val_probs = _val_probs(cfg, model, val_rows, tokenizer)
    metrics = evaluate([r["labels"] for r in val_rows], val_probs, task)
    metrics.update(
        fold_idx=cfg.fold_idx, n_splits=cfg.n_splits, n_train=len(train_rows), **counts, **extra_counts, optim=optim,
        loop=loop,
        resumed_from=resume, global_step=global_step, train_loss=train_loss, stopped_early=stopped_early,
        seconds=round(time.time() - start, 1), skipped_rows=len(data.skipped_ids), issues=len(data.issues),
        epoch_evals=evals, best_eval=best_eval(evals, task), unseen_labels=data.unseen_labels,
        config=dataclasses.asdict(cfg), data=task.params(),
    )
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(metrics, report_dir / "metrics.json")
    # out-of-fold predictions: the folds of an ensemble together estimate its log loss
    write_predictions(report_dir / "val_predictions.csv", val_ids,
                      [r["labels"] for r in val_rows], val_probs, task.probability_columns)
    save_confusion_matrix(metrics["confusion_matrix"], report_dir / "confusion_matrix.png", task.class_names)
    save_loss_curve(curve[0], with_final(curve[1], global_step, metrics["log_loss"]), report_dir / LOSS_CURVE)
    print({k: metrics[k] for k in dict.fromkeys(("log_loss", "accuracy", "macro_f1", task.metric, "n", "seconds"))},
          flush=True)
    return metrics


def train_on_all_gpus(cfg: TrainConfig, *, train_csv, base, adapter_dir, checkpoint_dir, report_dir,
                      n_gpus: int | None = None, task: Task | None = None) -> dict:
    """``run_training`` here on one GPU (or the CPU); on several, ``accelerate launch`` of this module
    (DDP: one process per GPU, each with its own copy of the 4-bit base), then the metrics it wrote."""
    if n_gpus is None:
        import torch

        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    paths = dict(train_csv=str(train_csv), base=str(base), adapter_dir=str(adapter_dir),
                 checkpoint_dir=str(checkpoint_dir), report_dir=str(report_dir))
    if n_gpus <= 1:
        return run_training(cfg, **paths, task=task)
    report = Path(report_dir)
    report.mkdir(parents=True, exist_ok=True)
    params = report / "launch-params.json"
    params.write_text(json.dumps({"config": dataclasses.asdict(cfg), "data": (task or Task()).params(), **paths},
                                 indent=1))
    command = launch_command(f"{__package__}.train", ["--params", str(params)], n_gpus=n_gpus,
                             mixed_precision=device_profile().mixed_precision)
    root = Path(sys.modules[__package__.split(".")[0]].__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    print("launching:", " ".join(command), flush=True)
    subprocess.run(command, env=env, check=True)
    return json.loads((report / "metrics.json").read_text())


def main(argv=None) -> None:
    """``python -m <package>.train --params launch-params.json``: what each DDP process runs."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--params", required=True, help="JSON: {config: TrainConfig fields, data: the [data] "
                                                       "table, train_csv, base, adapter_dir, checkpoint_dir, "
                                                       "report_dir}")
    args = parser.parse_args(argv)
    params = json.loads(Path(args.params).read_text())
    config = params.pop("config")
    config["target_modules"] = tuple(config["target_modules"])
    run_training(TrainConfig(**config), task=Task.from_params(params.pop("data", {})), **params)


if __name__ == "__main__":
    main()
