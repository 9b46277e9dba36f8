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


def tuned_for_device(model, token_budget: int, *, quantization: str = "4bit", int8_threshold: float = 6.0):
    """(model, token budget) for inference: on a GPU kagflow's measured recipe for the card and the model's
    config (``recipe``, applied by ``predict.prepare_for_inference``: LoRA merged into a dequantised base on
    cards with memory to spare; flex attention that keeps Gemma 2's softcapping on sm80+, SDPA for models
    without the cap; the card's token budget; a T4 keeps the 4-bit model, or with ``quantization`` "8bit" makes
    it LLM.int8 with the LoRA merged, ``dequant.int8_layers``); elsewhere unchanged but for the 8-bit layers."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        if quantization == "8bit":
            from .dequant import int8_layers

            print(f"inference: {int8_layers(model, threshold=int8_threshold)} linears made 8-bit with the LoRA "
                  f"merged (threshold {int8_threshold})", flush=True)
        return model, token_budget
    from .model import ModelTraits
    from .predict import prepare_for_inference
    from .recipe import recipe_for_current_device

    recipe = recipe_for_current_device(device, ModelTraits.of(model.config))
    print(f"inference recipe for {torch.cuda.get_device_name(device)}: {recipe}", flush=True)
    return (prepare_for_inference(model, recipe, quantization=quantization, int8_threshold=int8_threshold),
            recipe.infer_max_tokens)


def per_device_models(base, adapter, *, attn_implementation: str, task: Task | None = None,
                      quantization: str = "4bit", int8_threshold: float = 6.0):
    """``load(device)``: the 4-bit base + adapter(s) on ``device``, loaded once per device and kept
    (an ensemble's adapters stay separate LoRA modules: no merge)."""
    import threading

    from .model import adapter_list, load_for_inference

    models, lock = {}, threading.Lock()

    def load(device: str):
        with lock:  # one load at a time keeps host memory to one checkpoint's worth
            if device not in models:
                model, _ = load_for_inference(base, adapter, attn_implementation=attn_implementation,
                                              device_map={"": device}, task=task)
                if len(adapter_list(adapter)) == 1:
                    model = tuned_for_device(model, 0, quantization=quantization, int8_threshold=int8_threshold)[0]
                models[device] = model
            return models[device]

    return load


def run_inference(cfg: InferConfig, *, test_csv, base, adapter, output_path, device_map=None,
                  devices=None, task: Task | None = None, started: float | None = None) -> dict:
    """Load base + adapter, predict every row of the test file, write a checked submission.csv in ``task``'s
    format (default: LMSYS). ``cfg.tta`` applies to pairwise tasks (``swap_columns``) only.

    ``adapter`` may be a list (the folds of an ensemble): the base is loaded once with every adapter,
    each adapter predicts in turn (with TTA), and submission.csv holds the mean of their probabilities;
    each member's own predictions go to ``submission.adapter<i>.csv`` next to it.
    With several GPUs (Kaggle's T4 x2), one model copy runs per GPU on alternate rows of the
    length-sorted test set (``multigpu``); otherwise one model, placed by ``device_map``.
    ``cfg.deadline_s`` (seconds after ``started``, a ``resume.now`` value; None: this process's start) bounds the
    run: TTA, later members and long rows give way so that submission.csv is written in time (``deadline``);
    ``inference_report.json`` next to it says what ran.
    """
    from .config import QUANTIZATIONS
    from .data import check_test_ids, load_arena_csv, read_ids
    from .deadline import Deadline, combine, run_passes
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
    if cfg.quantization == "8bit" and len(adapters) > 1:
        raise ValueError(f"[infer] quantization = \"8bit\" merges one adapter into the weights, and this ensemble "
                         f"has {len(adapters)}: set quantization = \"4bit\" for an ensemble")
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
    quant = dict(quantization=cfg.quantization, int8_threshold=cfg.int8_threshold)
    devices = list(devices or visible_devices())
    if len(devices) > 1 and device_map is None:
        tokenizer = load_tokenizer(adapters[0])
        load = per_device_models(base, adapters, attn_implementation=cfg.attn_implementation, task=task, **quant)
        print(f"one model per device: {', '.join(devices)}", flush=True)
        if devices[0].startswith("cuda"):
            import torch

            from .recipe import recipe_for_current_device

            budget = recipe_for_current_device(torch.device(devices[0])).infer_max_tokens

        def proba_for(name):
            def proba(ids):
                return predict_proba_multi(lambda device: _using(load(device), name), ids,
                                           pad_token_id=tokenizer.pad_token_id, token_budget=budget, devices=devices)
            return proba
        names = list(load(devices[0]).peft_config) if len(adapters) > 1 else [None]
    else:
        model, tokenizer = load_for_inference(base, adapters, attn_implementation=cfg.attn_implementation,
                                              device_map=device_map, task=task)
        names = list(model.peft_config) if len(adapters) > 1 else [None]
        if len(adapters) == 1:
            model, budget = tuned_for_device(model, budget, **quant)

        def proba_for(name):
            def proba(ids):
                return predict_proba(_using(model, name), ids, pad_token_id=tokenizer.pad_token_id,
                                     token_budget=budget)
            return proba
    start = time.time()
    frame = data.frame
    views = ("original", "swapped") if tta else ("original",)

    def encode(view, rows, length):
        return encode_frame(tokenizer, frame.iloc[rows], task, length, swapped=view == "swapped", encoding=encoding)

    def proba(member, view, ids):
        p = proba_for(names[member])(ids)
        return p[:, task.swap_order] if view == "swapped" else p

    with progress_line.counting("infer", len(frame) * len(views) * len(names)):
        out = run_passes([(m, v) for m in range(len(names)) for v in views], len(frame), encode, proba,
                         max_length=cfg.max_length, deadline=deadline, chunk_tokens=8 * budget,
                         n_labels=task.n_labels)
    probs, on_prior, members = combine(out, len(names), views)
    if len(names) > 1:
        for i, member in enumerate(members):
            if member is not None:  # a member the deadline cut short has no file of its own
                path = write_submission(frame["id"], member, Path(output_path).with_name(f"submission.adapter{i}.csv"),
                                        task=task, test_ids=test_ids)
                print(f"adapter {i} ({adapters[i]}): {path}", flush=True)
    path = write_submission(frame["id"], probs, output_path, task=task, test_ids=test_ids)
    seconds = time.time() - start
    report = _report(out, views, len(names), on_prior, cfg, seconds)
    Path(output_path).with_name("inference_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}: {len(probs)} rows in {seconds:.0f}s (tta={tta}, {len(members)} adapter(s), "
          f"{on_prior} rows on the prior)", flush=True)
    return {"path": path, "rows": len(probs), "seconds": seconds, "issues": [str(i) for i in data.issues],
            "adapters": len(members), "report": report}


def _report(out, views, members: int, on_prior: int, cfg: InferConfig, seconds: float) -> dict:
    """What the run did, per view and length: inference_report.json."""
    import collections

    import numpy as np

    ran = {f"{m}/{v}": int((~np.isnan(out.probs[(m, v)]).any(axis=1)).sum()) for m in range(members) for v in views}
    return {"rows_per_pass": ran, "rows_per_max_length": {str(k): n for k, n in
                                                           sorted(collections.Counter(out.lengths).items()) if k},
            "rows_on_prior": on_prior, "dropped_passes": [f"{m}/{v}" for m, v in out.dropped],
            "decisions": out.decisions, "deadline_s": cfg.deadline_s, "seconds": round(seconds, 1),
            "quantization": cfg.quantization}


def _using(model, name):
    """``model`` with adapter ``name`` active (None: as it is)."""
    if name is not None:
        model.set_adapter(name)
    return model
