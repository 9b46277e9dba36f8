"""kagflow's LoRA training loop (``fit_lora``): model preparation, optimizer, one step, data parallelism.

What the notebooks train with on a GPU, measured at 3.25x the seed's HF Trainer on an H100
(``bench/RESULTS.md``, reasoning in ``bench/NOTES.md``):

* Backward stops at the first layer that holds LoRA weights: no ``enable_input_require_grads``,
  non-reentrant gradient checkpointing only where memory needs it (``prepare_for_lora_training``).
* Each optimizer step is split into token-budget micro-batches (``batching``); the loss is the mean row
  loss of the step, so micro-batches and GPUs don't change the gradient. Under torch.distributed each
  step's rows are dealt over the processes and the LoRA gradients summed.
* Checkpoints, resume and the time budget come from ``resume``.

Imports only the stdlib and torch at module level; transformers, peft and bitsandbytes lazily.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .batching import batch_labels, classification_logits, deal_rows, plan_steps, training_batches
from .compiling import compile_decoder_layers, decoder_layers
from .dequant import dequantize_base, flatten_absmax
from .loss import loss_sum as weighted_loss_sum
from .recipe import Recipe, set_attn_implementation, torch_dtype


def prepare_for_lora_training(model, *, gradient_checkpointing: bool, uncheckpointed_layers: int = 0) -> None:
    """What kagflow does instead of ``prepare_model_for_kbit_training``.

    No fp32 upcast of the frozen embedding/norms (saves 1.8 GiB for the 256k x 3584 embedding) and
    no ``enable_input_require_grads``: the backward pass then stops at the first layer holding
    LoRA weights (layer 16 of 42 in the recipe) instead of running through all 42. Checkpointing,
    where asked, is non-reentrant (reentrant checkpointing needs inputs that require grad).
    Call after ``get_peft_model``; trainable params (LoRA, score head) are cast to fp32.
    """
    cfg = getattr(model, "config", None)
    if cfg is not None:
        cfg.use_cache = False
    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if uncheckpointed_layers:
            keep_activations(model, uncheckpointed_layers)
    # transformers' gradient_checkpointing_enable() (and peft on non-quantized bases) register a hook that
    # makes the embedding output require grad; it would drag the backward through the 16 frozen layers.
    disable_input_require_grads(model)


def keep_activations(model, n: int) -> list[int]:
    """On a model with checkpointing enabled, leave the top ``n`` decoder layers unchecked (they keep their
    activations: no recompute) and checkpoint every layer below. Returns the indices of the unchecked layers."""
    layers = [m for m in decoder_layers(model) if hasattr(m, "gradient_checkpointing")]
    top = layers[len(layers) - n:] if n > 0 else []
    for layer in layers:
        layer.gradient_checkpointing = layer not in top
    return [layers.index(m) for m in top]


def disable_input_require_grads(model) -> int:
    """Remove every "inputs require grad" hook (transformers' and peft's) from ``model``; returns how many."""
    removed = 0
    for m in model.modules():
        hooks = list(getattr(m, "_require_grads_hooks", None) or [])
        single = getattr(m, "_require_grads_hook", None)
        if single is not None and single not in hooks:
            hooks.append(single)
        for h in hooks:
            h.remove()
            removed += 1
        if hooks:
            m._require_grads_hooks = []
            if hasattr(m, "_require_grads_hook"):
                try:
                    delattr(m, "_require_grads_hook")
                except AttributeError:
                    pass
    return removed


def lora_train_step(model, micro_batches: Sequence[dict], optimizer, *, autocast_dtype=torch.bfloat16,
                    scaler=None, scheduler=None, max_grad_norm: float | None = 1.0,
                    total_rows: int | None = None, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """One optimizer step over micro-batches (already on the device) that together form the step.

    The loss is the mean cross-entropy over all ``total_rows`` rows of the step (default: the rows
    given; under data parallelism the step's rows over all processes, whose gradients are summed), so
    splitting a step into micro-batches or over GPUs doesn't change the gradient; with ``class_weights``
    each row's loss is weighted by its class (``loss.loss_sum``).
    Returns this process's share of the step's mean loss as a 0-dim tensor (no host sync).
    """
    total = total_rows or sum(int(batch_labels(mb).shape[0]) for mb in micro_batches)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), device=params[0].device)
    for mb in micro_batches:
        dev = batch_labels(mb).device.type
        with torch.autocast(dev, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = classification_logits(model, mb)
        loss = weighted_loss_sum(logits, batch_labels(mb), class_weights) / total
        (scaler.scale(loss) if scaler is not None else loss).backward()
        loss_sum = loss_sum + loss.detach()
    _all_reduce_grads(params)
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if scheduler is not None:
        scheduler.step()
    return loss_sum


def _world() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce_grads(params) -> None:
    """Sum the (small) LoRA gradients over data-parallel processes, if any (one process per GPU): each
    process's loss is already divided by the step's global row count, so the sum is the one-GPU gradient."""
    rank, world = _world()
    if world == 1:
        return
    import torch.distributed as dist

    for p in params:  # a process with no rows in this step still takes part, with zeros
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    rank, world = _world()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


# What ``[train] optim_type = "auto"`` builds in each loop (``config.FAST_LOOP_OPTIMIZERS`` says why)
AUTO_OPTIMIZER = {"fast": "adamw_torch_fused", "trainer": "adamw_8bit"}


def resolve_optim(optim: str, loop: str = "trainer") -> str:
    """The optimizer ``loop`` ("fast" or "trainer") builds for ``[train] optim_type``: "auto" is fused AdamW in
    the fast loop and the seed's adamw_8bit in the Trainer (``config.FAST_LOOP_OPTIMIZERS`` says why); a
    bitsandbytes 8-bit optimizer that cannot step here becomes adamw_torch."""
    if optim == "auto":
        optim = AUTO_OPTIMIZER[loop]
    if "8bit" not in optim or torch.cuda.is_available():
        return optim
    try:
        import bitsandbytes as bnb

        param = torch.nn.Parameter(torch.ones(8192))  # >= 4096 elements: the 8-bit state path
        opt = bnb.optim.AdamW8bit([param], lr=1e-3)
        param.sum().backward()
        opt.step()
        return optim
    except Exception as exc:  # any failure of the probe means the optimizer is unusable here
        print(f"notice: {optim} does not run on this device ({type(exc).__name__}: {exc}); using adamw_torch")
        return "adamw_torch"


def make_optimizer(params, lr: float, device=None, optim_type: str = "adamw_torch_fused"):
    """The optimizer named like the HF Trainer's ``optim`` (``config.FAST_LOOP_OPTIMIZERS``; "auto" as in
    ``AUTO_OPTIMIZER``), no weight decay: fused fp32 AdamW by default (one launch for LoRA's
    tensors; bitsandbytes' 8-bit AdamW launches per tensor and saves ~40 MB at LoRA's size)."""
    if optim_type == "auto":
        optim_type = AUTO_OPTIMIZER["fast"]
    params = list(params)
    kw = dict(lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    if optim_type in ("adamw_8bit", "adamw_bnb_8bit", "paged_adamw_8bit", "paged_adamw_32bit"):
        import bitsandbytes as bnb

        cls = {"paged_adamw_8bit": bnb.optim.PagedAdamW8bit, "paged_adamw_32bit": bnb.optim.PagedAdamW32bit}.get(
            optim_type, bnb.optim.AdamW8bit)
        return cls(params, **kw)
    if optim_type in ("adamw_torch", "adamw_hf"):
        return torch.optim.AdamW(params, **kw)
    if optim_type == "adamw_torch_fused":
        dev = torch.device(device) if device is not None else params[0].device
        return torch.optim.AdamW(params, fused=dev.type == "cuda", **kw)
    from .config import FAST_LOOP_OPTIMIZERS

    raise ValueError(f"optim_type {optim_type!r} is not one the fast loop builds ({', '.join(FAST_LOOP_OPTIMIZERS)}); "
                     'use one of them or train_loop = "trainer"')


def prepare_lora_model(model, lora_config, recipe: Recipe):
    """4-bit base -> trainable PeftModel the kagflow way.

    Dequantises the base first when ``recipe.dequantize_for_training`` (big cards; else flattens its
    double-quantised scales where ``recipe.flatten_absmax``, ``dequant.flatten_absmax``), wraps it with
    ``lora_config``, then ``prepare_for_lora_training`` (no input grads, checkpointing per recipe) and
    sets the recipe's training attention, and compiles each decoder layer where ``recipe.compile_layers``
    (``compiling``). Use instead of ``prepare_model_for_kbit_training``.
    """
    from peft import get_peft_model

    if recipe.dequantize_for_training:
        dequantize_base(model, torch_dtype(recipe.dtype))
    elif recipe.flatten_absmax:
        flatten_absmax(model)
    pm = get_peft_model(model, lora_config)
    prepare_for_lora_training(pm, gradient_checkpointing=recipe.gradient_checkpointing,
                              uncheckpointed_layers=recipe.uncheckpointed_layers)
    set_attn_implementation(pm, recipe.train_attn_implementation)
    if recipe.compile_layers:
        compile_decoder_layers(pm, on_fallback=_eager_checkpointing(pm, recipe))
    return pm


def _eager_checkpointing(pm, recipe: Recipe):
    """What the compiled layers' fallback to eager (``compiling``) changes: eager layers keep more activations
    than compiled ones (1.2 vs 0.75 GiB each at 4,096 tokens), so as many unchecked layers as the recipe sized for
    compiled ones could run out of memory on a 16 GB card; fewer stay unchecked
    (``recipe.uncheckpointed_layers_eager``). None where nothing changes."""
    keep, keep_eager = recipe.uncheckpointed_layers, recipe.uncheckpointed_layers_eager
    if not recipe.gradient_checkpointing or keep_eager >= keep:
        return None

    def recheckpoint() -> str:
        keep_activations(pm, keep_eager)
        return f"{keep_eager} instead of {keep} top layers keep their activations (eager layers keep more)"

    return recheckpoint


def amp_for(recipe: Recipe, device) -> tuple:
    """(autocast dtype or None, GradScaler or None) for training with ``recipe`` on ``device``:
    the recipe's dtype (the device profile's), a GradScaler for fp16 on CUDA; nothing for fp32."""
    autocast = torch_dtype(recipe.dtype)
    if autocast == torch.float32:  # CPU / fp32 runs: no autocast
        return None, None
    scaler = torch.amp.GradScaler("cuda") if recipe.grad_scaler and torch.device(device).type == "cuda" \
        else None
    return autocast, scaler


class FitResult(list):
    """``fit_lora``'s per-step losses (global over processes), with how the run went: ``steps_total``,
    ``resumed_from`` (a checkpoint folder or None), ``stopped_early`` (the time budget ran out)."""

    steps_total: int = 0
    resumed_from: str | None = None
    stopped_early: bool = False


def fit_lora(model, seqs: Sequence[Sequence[int]], labels: Sequence[int], recipe: Recipe, *, steps=None,
             rows_per_step: int = 6, epochs: float = 1.0, lr: float = 2e-4, warmup_steps: int = 20,
             seed: int = 42, max_grad_norm: float | None = 1.0, pad_id: int = 0, optimizer=None,
             optim_type: str = "adamw_torch_fused", log_every: int = 10, on_log=None, device=None,
             checkpointing=None, eval_at: Sequence[int] = (), on_eval=None,
             class_weights: Sequence[float] | None = None) -> FitResult:
    """kagflow's training loop (what bench k5 measured at 3.25x the seed's Trainer on an H100).

    Optimizer steps of ``rows_per_step`` rows of similar length (``plan_steps``, one shuffle per epoch),
    each split into micro-batches under ``recipe.train_max_tokens`` padded tokens
    (``token_budget_batches``), mean row loss per step (``lora_train_step``), linear warmup/decay like
    the HF Trainer, grad clipping, a GradScaler when ``recipe.grad_scaler``, the ``optim_type``
    optimizer. ``seqs`` are token id lists (already truncated), ``labels`` class indices or probability lists
    (soft targets, ``loss.loss_sum``).
    ``on_log(dict(step, loss, lr))`` every ``log_every`` steps (a host sync); ``on_eval(step)`` after
    each step in ``eval_at``. ``class_weights`` (three numbers, ``loss.resolve_class_weights``) weight
    each row's loss by its class.

    ``checkpointing`` (a ``resume.Checkpointing``): resume from the furthest checkpoint of this plan,
    save every N steps / seconds, and stop cleanly (saving a checkpoint) when the next steps would
    run past its deadline. Under torch.distributed (one process per GPU, same seed and rows
    everywhere) each step's rows are dealt over the processes and the gradients summed, so the global
    batch, the number of steps and the learning-rate schedule are the one-GPU run's; rank 0 alone writes.
    """
    from transformers import get_linear_schedule_with_warmup

    from . import resume

    params = [p for p in model.parameters() if p.requires_grad]
    device = torch.device(device) if device is not None else params[0].device
    lengths = [len(q) for q in seqs]
    if steps is None:
        steps = plan_steps(lengths, rows_per_step, epochs, seed)
    rank, world = _world()
    opt = optimizer if optimizer is not None else make_optimizer(params, lr, device, optim_type)
    sched = get_linear_schedule_with_warmup(opt, warmup_steps, len(steps))
    autocast, scaler = amp_for(recipe, device)
    weights = torch.tensor(class_weights, dtype=torch.float32, device=device) if class_weights else None
    ckpt = checkpointing
    result = FitResult()
    result.steps_total = len(steps)
    start = 0
    if ckpt is not None:
        fingerprint = resume.plan_fingerprint(steps, lengths, labels)
        found = [resume.find_latest([p for p in (ckpt.folder, *ckpt.search) if p is not None], fingerprint)
                 if rank == 0 else None]
        _broadcast_object(found)
        if found[0] is not None:
            start, done = resume.load(found[0], model=model, optimizer=opt, scheduler=sched, scaler=scaler,
                                      device=device, rank=rank)
            result.extend(done)
            result.resumed_from = str(found[0])
            if on_log is not None:
                on_log({"resumed_from": str(found[0]), "step": start})
    pending: list[torch.Tensor] = []
    eval_at = set(eval_at)

    def flush() -> None:  # per-step losses of every process, summed: one host sync
        if pending:
            result.extend(_all_reduce_sum(torch.stack(pending).float()).tolist())
            pending.clear()

    def save(step: int) -> None:
        flush()
        rng = _gather_object(resume.rng_state())
        if rank == 0:
            resume.save(ckpt.folder, step=step, fingerprint=fingerprint, model=model, optimizer=opt, scheduler=sched,
                        scaler=scaler, rng=rng, losses=list(result), keep=ckpt.keep)

    model.train()
    t0 = last_save = resume.now()
    for s in range(start, len(steps)):
        if ckpt is not None and ckpt.deadline is not None and (s == start or (s - start) % log_every == 0):
            elapsed = resume.now() - t0
            per_step = elapsed / (s - start) if s > start else 0.0
            per_row = elapsed / max(1, sum(len(q) for q in steps[start:s]))
            reserve = ckpt.reserve_seconds + ckpt.reserve_rows * per_row / 2
            late = [resume.now() + (log_every + 1) * per_step + reserve > ckpt.deadline]
            _broadcast_object(late)  # rank 0's clock decides for every process
            if late[0]:
                result.stopped_early = True
                if ckpt.folder is not None:
                    save(s)
                break
        step = steps[s]
        mine = deal_rows(step, lengths, world)[rank] if world > 1 else list(step)
        mbs = training_batches([seqs[i] for i in mine], [labels[i] for i in mine], recipe, pad_id=pad_id,
                               device=device) if mine else []
        pending.append(lora_train_step(model, mbs, opt, autocast_dtype=autocast, scaler=scaler, scheduler=sched,
                                       max_grad_norm=max_grad_norm, total_rows=len(step), class_weights=weights))
        done = s + 1
        if on_log is not None and (done % log_every == 0 or done == len(steps)):
            flush()
            recent = result[-log_every:]
            on_log({"step": done, "loss": sum(recent) / len(recent), "lr": sched.get_last_lr()[0]})
        if ckpt is not None and ckpt.folder is not None and done < len(steps):
            by_steps = ckpt.every_steps and done % ckpt.every_steps == 0
            by_time = [bool(ckpt.every_seconds) and resume.now() - last_save >= ckpt.every_seconds]
            if ckpt.every_seconds and not by_steps and done % log_every == 0:
                _broadcast_object(by_time)
            else:
                by_time = [False]
            if by_steps or by_time[0]:
                save(done)
                last_save = resume.now()
        if on_eval is not None and done in eval_at:
            on_eval(done)
            model.train()
    flush()
    return result


def _broadcast_object(box: list) -> None:
    """Rank 0's ``box[0]`` to every process (no-op on one)."""
    rank, world = _world()
    if world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(box, src=0)


def _gather_object(obj) -> list:
    """Every process's ``obj`` in rank order (``[obj]`` on one process)."""
    rank, world = _world()
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out
