"""Inference runs: a test set through one model (or one per GPU), swap TTA (pairwise tasks), ensembles,
submission.csv in the task's format.

The probabilities themselves come from ``predict.predict_proba``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import progress_line
from .config import InferConfig  # noqa: F401 - re-exported: the notebooks import it from here
from .task import Task
from .text import Encoding, encode_frame


def predict(model, tokenizer, frame, *, max_length: int, tta: bool = False, token_budget: int = 16384,
            task: Task | None = None, encoding: Encoding | None = None):
    """Probabilities for an ArenaData frame; with ``tta`` (pairwise tasks), averaged with the swapped pass.
    ``encoding``: the adapter's (``Encoding.load``); None: the one ``model.load_for_inference`` read beside the
    adapter, else the legacy one."""
    from .predict import predict_proba

    encoding = encoding or getattr(model, "kagflow_encoding", None)
    return predict_with(lambda ids: predict_proba(model, ids, pad_token_id=tokenizer.pad_token_id,
                                                  token_budget=token_budget),
                        tokenizer, frame, max_length=max_length, tta=tta, task=task, encoding=encoding)


def predict_with(proba, tokenizer, frame, *, max_length: int, tta: bool = False, task: Task | None = None,
                 encoding: Encoding | None = None):
    """``predict`` for any ``proba(token_ids) -> probabilities`` (one model, or one per GPU). The swapped pass
    reads the two ``swap_columns`` exchanged; its first two classes trade places back (a tie stays)."""
    task = task or Task()
    probs = proba(encode_frame(tokenizer, frame, task, max_length, encoding=encoding))
    if tta and task.pairwise:
        swapped = proba(encode_frame(tokenizer, frame, task, max_length, swapped=True, encoding=encoding))
        probs = (probs + swapped[:, task.swap_order]) / 2
    return probs


def tuned_for_device(model, token_budget: int, *, quantization: str = "4bit", int8_kernel: str = "weight_only",
                     int8_threshold: float = 6.0):
    """(model, token budget) for inference: on a GPU kagflow's measured recipe for the card and the model's
    config (``recipe``, applied by ``predict.prepare_for_inference``: LoRA merged into a dequantised base on
    cards with memory to spare; flex attention that keeps Gemma 2's softcapping on sm80+, SDPA for models
    without the cap; the card's token budget; a T4 keeps the 4-bit model, or with ``quantization`` "8bit" makes
    it 8-bit with the LoRA merged, ``int8_kernel`` weight-only int8 or LLM.int8, ``dequant.int8_layers``);
    elsewhere unchanged but for the 8-bit layers."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        if quantization == "8bit":
            from .dequant import int8_layers, int8_words

            n = int8_layers(model, kernel=int8_kernel, threshold=int8_threshold)
            print(f"inference: {n} linears made 8-bit ({int8_words(int8_kernel, int8_threshold)}) with the LoRA "
                  "merged", flush=True)
        return model, token_budget
    from .model import ModelTraits
    from .predict import prepare_for_inference
    from .recipe import recipe_for_current_device

    recipe = recipe_for_current_device(device, ModelTraits.of(model.config))
    print(f"inference recipe for {torch.cuda.get_device_name(device)}: {recipe}", flush=True)
    return (prepare_for_inference(model, recipe, quantization=quantization, int8_kernel=int8_kernel,
                                  int8_threshold=int8_threshold),
            recipe.infer_max_tokens)


def per_device_models(base, adapter, *, attn_implementation: str, task: Task | None = None,
                      quantization: str = "4bit", int8_kernel: str = "weight_only", int8_threshold: float = 6.0):
    """``load(device)``: the 4-bit base + one adapter on ``device``, prepared like ``tuned_for_device``, loaded once
    per device and kept."""
    import threading

    from .model import load_for_inference

    models, lock = {}, threading.Lock()

    def load(device: str):
        with lock:  # one load at a time keeps host memory to one checkpoint's worth
            if device not in models:
                model, _ = load_for_inference(base, adapter, attn_implementation=attn_implementation,
                                              device_map={"": device}, task=task)
                models[device] = tuned_for_device(model, 0, quantization=quantization, int8_kernel=int8_kernel,
                                                  int8_threshold=int8_threshold)[0]
            return models[device]

    return load


def run_inference(cfg: InferConfig, *, test_csv, base, adapter, output_path, device_map=None,
                  devices=None, task: Task | None = None, started: float | None = None) -> dict:
    """Load base + adapter, predict every row of the test file, write a checked submission.csv in ``task``'s
    format (default: LMSYS). ``cfg.tta`` applies to pairwise tasks (``swap_columns``) only.

    ``adapter`` may be a list (the folds of an ensemble). ``cfg.ensemble`` "members": each member in turn is
    loaded alone and prepared as a single adapter is (``ensembling.MemberModels``: one member in memory at a time),
    predicts every row (with TTA), and submission.csv holds the mean of their probabilities; each member's own
    predictions go to ``submission.adapter<i>.csv`` next to it. "average_lora": one adapter with the members' mean
    merged LoRA deltas (``ensembling.average_adapters``), one pass.
    With several GPUs (Kaggle's T4 x2), one model copy runs per GPU on alternate rows of the
    length-sorted test set (``multigpu``); otherwise one model, placed by ``device_map``.
    ``cfg.deadline_s`` (seconds after ``started``, a ``resume.now`` value; None: this process's start) bounds the
    run: TTA, later members and long rows give way so that submission.csv is written in time (``deadline``);
    ``inference_report.json`` next to it says what ran.
    """
    from .calibration import apply_temperature
    from .config import ENSEMBLES, INT8_KERNELS, QUANTIZATIONS
    from .data import check_test_ids, load_arena_csv, read_ids
    from .deadline import Deadline, combine, run_passes
    from .ensembling import MemberModels, average_adapters
    from .model import adapter_list, load_for_inference, load_tokenizer
    from .multigpu import predict_proba_multi, visible_devices
    from .predict import predict_proba
    from .submission import write_submission

    adapters = adapter_list(adapter)
    if len({str(a) for a in adapters}) != len(adapters):
        raise ValueError(f"the ensemble lists one adapter folder twice: {[str(a) for a in adapters]} "
                         "(is every adapter version attached to the kernel?)")
    if cfg.quantization not in QUANTIZATIONS:
        raise ValueError(f"[infer] quantization = {cfg.quantization!r} is not one of {', '.join(QUANTIZATIONS)}")
    if cfg.int8_kernel not in INT8_KERNELS:
        raise ValueError(f"[infer] int8_kernel = {cfg.int8_kernel!r} is not one of {', '.join(INT8_KERNELS)}")
    if cfg.ensemble not in ENSEMBLES:
        raise ValueError(f"[infer] ensemble = {cfg.ensemble!r} is not one of {', '.join(ENSEMBLES)}")
    temperature = inference_temperature(cfg.temperature)
    task = task or Task()
    test_ids = read_ids(test_csv, task.id_column)
    check_test_ids(test_ids, test_csv)  # before any model is loaded
    encoding = Encoding.of_adapters(adapters).check(task)  # as trained: encoding.json beside each adapter
    data = load_arena_csv(test_csv, labeled=False, task=task)
    print(data.report(), flush=True)
    tta = cfg.tta and task.pairwise
    if cfg.tta and not task.pairwise:
        print("notice: tta is on but [data] swap_columns is empty (not a pairwise task): no swapped pass",
              flush=True)
    deadline = Deadline.after(cfg.deadline_s, started=started)
    budget = cfg.batch_size * cfg.max_length
    quant = dict(quantization=cfg.quantization, int8_kernel=cfg.int8_kernel, int8_threshold=cfg.int8_threshold)
    if len(adapters) > 1 and cfg.ensemble == "average_lora":
        import tempfile

        adapters = [average_adapters(adapters, Path(tempfile.mkdtemp(prefix="kagflow-average-lora-")) / "adapter")]
    devices = list(devices or visible_devices())
    tokenizer = load_tokenizer(adapters[0])
    if len(devices) > 1 and device_map is None:
        print(f"one model per device: {', '.join(devices)}", flush=True)
        if devices[0].startswith("cuda"):
            import torch

            from .recipe import recipe_for_current_device

            budget = recipe_for_current_device(torch.device(devices[0])).infer_max_tokens
        members = MemberModels(adapters, lambda a: per_device_models(
            base, a, attn_implementation=cfg.attn_implementation, task=task, **quant))

        def proba_for(member):
            def proba(ids):
                return predict_proba_multi(members.get(member), ids, pad_token_id=tokenizer.pad_token_id,
                                           token_budget=budget, devices=devices)
            return proba
    else:
        budgets = {}

        def load_member(a):
            model, _ = load_for_inference(base, a, attn_implementation=cfg.attn_implementation,
                                          device_map=device_map, task=task)
            model, budgets["tokens"] = tuned_for_device(model, budget, **quant)
            return model
        members = MemberModels(adapters, load_member)
        members.get(0)
        budget = budgets["tokens"]

        def proba_for(member):
            def proba(ids):
                return predict_proba(members.get(member), ids, pad_token_id=tokenizer.pad_token_id,
                                     token_budget=budget)
            return proba
    n_members = len(adapters)  # one for an averaged LoRA
    start = time.time()
    frame = data.frame
    views = ("original", "swapped") if tta else ("original",)

    def encode(view, rows, length):
        return encode_frame(tokenizer, frame.iloc[rows], task, length, swapped=view == "swapped", encoding=encoding)

    def proba(member, view, ids):
        p = proba_for(member)(ids)
        return p[:, task.swap_order] if view == "swapped" else p

    with progress_line.counting("infer", len(frame) * len(views) * n_members):
        out = run_passes([(m, v) for m in range(n_members) for v in views], len(frame), encode, proba,
                         max_length=cfg.max_length, deadline=deadline, chunk_tokens=8 * budget,
                         n_labels=task.n_labels)
    members.free()
    probs, on_prior, member_probs = combine(out, n_members, views)
    if temperature != 1.0:
        print(f"temperature {temperature:.4g}: probabilities softmax(log p / T)", flush=True)
        probs = apply_temperature(probs, temperature)
        member_probs = [None if p is None else apply_temperature(p, temperature) for p in member_probs]
    if n_members > 1:
        for i, member in enumerate(member_probs):
            if member is not None:  # a member the deadline cut short has no file of its own
                path = write_submission(frame["id"], member, Path(output_path).with_name(f"submission.adapter{i}.csv"),
                                        task=task, test_ids=test_ids)
                print(f"adapter {i} ({adapters[i]}): {path}", flush=True)
    path = write_submission(frame["id"], probs, output_path, task=task, test_ids=test_ids)
    seconds = time.time() - start
    report = {**_report(out, views, n_members, on_prior, cfg, seconds), "temperature": temperature}
    Path(output_path).with_name("inference_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}: {len(probs)} rows in {seconds:.0f}s (tta={tta}, {len(member_probs)} adapter(s), "
          f"{on_prior} rows on the prior)", flush=True)
    return {"path": path, "rows": len(probs), "seconds": seconds, "issues": [str(i) for i in data.issues],
            "adapters": len(member_probs), "report": report}


def inference_temperature(value) -> float:
    """[infer] temperature as the T to apply: "none" 1, a positive number itself; "oof" is refused (the flow's
    infer step replaces it with the T fitted on the out-of-fold predictions)."""
    if value == "none":
        return 1.0
    if value == "oof":
        raise ValueError("[infer] temperature = \"oof\" reached the notebook unresolved: `kagflow flow` fits it on the "
                         "folds' out-of-fold predictions and pushes the number; pushed on its own, set temperature = "
                         "\"none\" or a number (-p temperature=1.2)")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"[infer] temperature = {value!r} is not \"none\", \"oof\" or a number") from None
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"[infer] temperature = {value} is not a positive number: write \"none\" or e.g. 1.2")
    return float(value)


def _report(out, views, members: int, on_prior: int, cfg: InferConfig, seconds: float) -> dict:
    """What the run did, per view and length: inference_report.json."""
    import collections

    import numpy as np

    ran = {f"{m}/{v}": int((~np.isnan(out.probs[(m, v)]).any(axis=1)).sum()) for m in range(members) for v in views}
    return {"rows_per_pass": ran, "rows_per_max_length": {str(k): n for k, n in
                                                           sorted(collections.Counter(out.lengths).items()) if k},
            "rows_on_prior": on_prior, "dropped_passes": [f"{m}/{v}" for m, v in out.dropped],
            "decisions": out.decisions, "deadline_s": cfg.deadline_s, "seconds": round(seconds, 1),
            "quantization": cfg.quantization, "int8_kernel": cfg.int8_kernel if cfg.quantization == "8bit" else None,
            "ensemble": cfg.ensemble if members > 1 else None}
