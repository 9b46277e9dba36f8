"""Fast paths for the QLoRA preference classifier (training and inference), measured on Gemma 2.

What the notebooks run; measured side by side with the seed's recipe by ``bench/gemma_bench.py``
(numbers in ``bench/RESULTS.md``, reasoning in ``bench/NOTES.md``).

The rules this module encodes:

* Attention, keyed on the model's config (``model.ModelTraits``), not its class: Gemma 2 caps its
  attention logits (``attn_logit_softcapping``). PyTorch SDPA drops the cap, so it is never chosen for a
  soft-capped model; flex attention (keeps the cap as a ``score_mod``) on sm80+ GPUs, eager elsewhere
  (T4 = sm75). Models without the cap (Gemma 3, Llama, Qwen) get SDPA.
* Batches are built under a token budget from rows sorted by length (padding waste of a few
  percent instead of ~40 % for random batches), for training micro-batches and for inference; a model
  that runs flex attention gets packed rows instead (``packing``: one fixed width, so flex compiles once).
* Backward stops at the first layer that holds LoRA weights: no ``enable_input_require_grads``,
  non-reentrant gradient checkpointing only where memory needs it.
* On cards with memory to spare the NF4 base is dequantised once to bf16 (bit-identical weights to
  what bitsandbytes dequantises on every forward), and for inference the LoRA is merged into it.
  4-bit stays on T4 (16 GB), in fp16 (no bf16 on sm75).

Imports only the stdlib and torch at module level; transformers, peft and bitsandbytes lazily.
"""

from __future__ import annotations

import math
import random
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .loss import loss_sum as weighted_loss_sum
from .packing import PackedBatch, bucket_width, pack_rows, packed_batch, packed_logits, uses_packing

SOFTCAPPED_MODEL_TYPES = frozenset({"gemma2"})


# --------------------------------------------------------------------------- attention / device


def _capability(device) -> tuple[int, int] | None:
    """(major, minor) of a CUDA device, None for CPU. Accepts a tuple, a str or a torch.device."""
    if device is None:
        if not torch.cuda.is_available():
            return None
        device = torch.device("cuda", torch.cuda.current_device())
    if isinstance(device, tuple):
        return (int(device[0]), int(device[1]))
    device = torch.device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_capability(device)


def flex_attention_available() -> bool:
    try:
        from torch.nn.attention.flex_attention import flex_attention  # noqa: F401
    except Exception:  # pragma: no cover - old torch
        return False
    return True


def choose_attn_implementation(model_type: str, device=None, *, softcapping: bool | None = None) -> str:
    """Attention backend for ``from_pretrained(attn_implementation=...)``.

    ``device``: a torch.device / "cuda" / "cpu", or a compute capability tuple like (7, 5).
    Soft-capped models (Gemma 2) never get "sdpa": flex attention on sm80+ CUDA (keeps the cap,
    fused, no L x L matrix in memory), eager otherwise (CPU; T4 sm75, where flex's Triton kernels
    for head_dim 256 are not supported/tested). Other models get "sdpa".
    """
    capped = (model_type in SOFTCAPPED_MODEL_TYPES) if softcapping is None else bool(softcapping)
    cap = _capability(device)
    if not capped:
        return "sdpa"
    if cap is not None and cap >= (8, 0) and flex_attention_available():
        return "flex_attention"
    return "eager"


def recipe_for_device(total_mem_gib: float, capability: tuple[int, int], traits=None) -> dict:
    """``recipe_for_profile`` of a GPU with ``total_mem_gib`` GiB and compute ``capability``."""
    from .device import DeviceProfile

    return recipe_for_profile(DeviceProfile((int(capability[0]), int(capability[1])), float(total_mem_gib)),
                              traits)


def recipe_for_profile(profile, traits=None) -> dict:
    """The kagflow recipe for one device (a ``device.DeviceProfile``: memory, capability, precision) and
    one model (``model.ModelTraits`` of its config; None: Gemma 2, soft-capped, what was measured).

    Keys: dtype ("bfloat16"/"float16"/"float32": the profile's), train_attn_implementation,
    infer_attn_implementation, pack / pack_bucket (training on packed rows), gradient_checkpointing,
    train_max_tokens (padded tokens per training micro-batch), infer_max_tokens, infer_max_rows,
    dequantize_for_training, dequantize_for_inference (4-bit base -> bf16 once, LoRA merged for
    inference), grad_scaler (fp16 training: the profile's), pad_to_multiple_of.
    Thresholds (bench/RESULTS.md, H100): without checkpointing eager training keeps ~0.3 MiB of
    activations per token per trainable layer (26 layers), ~33 GiB at a 4096-token micro-batch, plus
    17.3 GiB for the dequantised bf16 base: "big" (>= 70 GiB) trains that way. Smaller bf16 cards keep the
    4-bit base and checkpointing; T4s add fp16 + a GradScaler at 4096 tokens (peak measured <= 14 GiB).
    The CPU gets the T4's shapes in fp32, without checkpointing.
    Attention follows ``traits``: a soft-capped model trains eager and infers with flex attention on
    sm80+ on packed rows at the fixed token budget (one shape: flex compiles once), eager elsewhere (T4,
    CPU); others use SDPA on padded batches. ``pack`` (training on packed rows, widths rounded up to
    ``pack_bucket`` tokens) is set when training asks for flex attention (``train.training_recipe``).
    """
    capped = traits.softcapping if traits is not None else True
    model_type = traits.model_type if traits is not None else "gemma2"
    infer_attn = choose_attn_implementation(model_type, profile.capability or "cpu", softcapping=capped)
    # training stays eager on padded, length-sorted micro-batches: flex attention on packed rows trained no
    # faster on an H200 (bench/RESULTS.md, 2026-11-30 second run: 16 GB 1.86x vs eager's 1.93x T4 path in the
    # same call, big card 2.84x vs 3.27x earlier) and its head_dim-256 backward kernel needs more shared memory
    # than sm86/sm89 cards have; ``[train] attn_implementation = "flex_attention"`` opts in (packed rows)
    train_attn = "eager" if capped else "sdpa"
    pack = False
    bf16 = profile.native_bf16
    mem = float(profile.total_mem_gib)
    big = mem >= 70 and bf16
    mid = mem >= 40 and bf16
    if big:
        train_tokens, infer_tokens, gc = 4096, 16384, False
    elif mid:
        train_tokens, infer_tokens, gc = 8192, 8192, True
    else:  # T4 / 16-24 GB cards (and the CPU)
        train_tokens, infer_tokens, gc = 4096, 8192, profile.cuda
    # checkpoint only as many trainable layers as memory needs: the top ones keep their activations
    # (~0.3 MiB per token per layer in eager attention; flex on packed rows keeps less, so the count is safe
    # for it too) in what the 4-bit model (5.7 GiB) and the checkpointed rest (8.1 GiB peak with all 26
    # checkpointed at 4,096 tokens, bench/RESULTS.md) leave free
    per_layer_gib = 0.3 * train_tokens / 1024
    keep = max(0, int((mem - 1.0 - 8.1 * train_tokens / 4096) / per_layer_gib)) if gc else 0
    return {
        "dtype": profile.dtype_name,
        "train_attn_implementation": train_attn,
        "infer_attn_implementation": infer_attn,
        "pack": pack,
        "pack_bucket": 512,
        "gradient_checkpointing": gc,
        "uncheckpointed_layers": keep,
        "train_max_tokens": train_tokens,
        "infer_max_tokens": infer_tokens,
        "infer_max_rows": 64,
        "dequantize_for_training": big,
        "dequantize_for_inference": mid,
        "grad_scaler": profile.grad_scaler,
        "pad_to_multiple_of": 8,
    }


def recipe_for_current_device(device=None, traits=None) -> dict:
    """``recipe_for_profile`` of a device (default: the current CUDA device, or the CPU without one)
    for a model with ``traits`` (``model.ModelTraits``)."""
    from .device import device_profile

    return recipe_for_profile(device_profile(device), traits)


def torch_dtype(name: str) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


# --------------------------------------------------------------------------- batching


def _round_up(n: int, m: int) -> int:
    return ((n + m - 1) // m) * m if m > 1 else n


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_rows: int | None = None, *,
                         pad_to_multiple_of: int = 1, descending: bool = True) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches sorted by length under a padded-token budget.

    Each batch costs ``rows * max(padded length in batch)``; it stays <= ``max_tokens`` unless a
    single row alone exceeds it (then that row is a batch of its own). Rows are sorted by length
    (longest first by default, so the peak memory shows up in the first batch); within a batch the
    indices follow that order. Every index appears exactly once.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    if max_rows is not None and max_rows < 1:
        raise ValueError("max_rows must be >= 1")
    n = len(lengths)
    sign = -1 if descending else 1
    order = sorted(range(n), key=lambda i: (sign * int(lengths[i]), i))
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        length = _round_up(max(int(lengths[i]), 1), pad_to_multiple_of)
        new_max = max(cur_max, length)
        if cur and (new_max * (len(cur) + 1) > max_tokens or (max_rows is not None and len(cur) >= max_rows)):
            batches.append(cur)
            cur, new_max = [], length
        cur.append(i)
        cur_max = new_max
    if cur:
        batches.append(cur)
    return batches


def length_grouped_steps(lengths: Sequence[int], rows_per_step: int, *, seed: int = 0,
                         mega_mult: int = 50, drop_last: bool = False) -> list[list[int]]:
    """Optimizer steps of ``rows_per_step`` rows of similar length (like HF's group_by_length).

    Shuffle, cut into mega-batches of ``rows_per_step * mega_mult`` rows, sort each by length
    (longest first), cut into steps. The step order is then shuffled so that the training sees
    no length curriculum. Each step is later split into micro-batches by ``token_budget_batches``.
    """
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    mega = rows_per_step * mega_mult
    steps: list[list[int]] = []
    for s in range(0, len(idx), mega):
        chunk = sorted(idx[s:s + mega], key=lambda i: -int(lengths[i]))
        steps.extend(chunk[j:j + rows_per_step] for j in range(0, len(chunk), rows_per_step))
    if drop_last and steps and len(steps[-1]) < rows_per_step:
        steps.pop()
    rng.shuffle(steps)
    return steps


def pad_batch(seqs: Sequence[Sequence[int]], *, pad_id: int = 0, pad_to_multiple_of: int = 8,
              labels: Sequence[int] | None = None, device=None, padding_side: str = "right") -> dict:
    """Pad token id lists on ``padding_side`` (kagflow pads right: ``model.load_tokenizer``) into
    ``input_ids`` / ``attention_mask`` (+ ``labels``) tensors."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', not {padding_side!r}")
    width = _round_up(max(len(s) for s in seqs), pad_to_multiple_of)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        span = slice(0, len(s)) if padding_side == "right" else slice(width - len(s), width)
        ids[r, span] = torch.as_tensor(list(s), dtype=torch.long)
        mask[r, span] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if labels is not None:
        out["labels"] = torch.as_tensor(list(labels), dtype=torch.long)
    if device is not None:
        out = {k: v.to(device, non_blocking=True) for k, v in out.items()}
    return out


def padding_efficiency(batches: Iterable[Sequence[int]], lengths: Sequence[int], pad_to_multiple_of: int = 1) -> float:
    """Useful tokens / padded tokens for a batching."""
    useful = padded = 0
    for b in batches:
        ls = [int(lengths[i]) for i in b]
        useful += sum(ls)
        padded += len(ls) * _round_up(max(ls), pad_to_multiple_of)
    return useful / padded if padded else 1.0


# --------------------------------------------------------------------------- training


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
    """Turn checkpointing off again for the top ``n`` decoder layers (they keep their activations: no
    recompute); the layers below stay checkpointed. Returns the indices of the layers left unchecked."""
    layers = [m for m in model.modules() if hasattr(m, "gradient_checkpointing") and type(m).__name__.endswith(
        "DecoderLayer")]
    top = layers[len(layers) - n:] if n > 0 else []
    for layer in top:
        layer.gradient_checkpointing = False
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


def classification_logits(model, batch) -> torch.Tensor:
    """Logits [rows, labels] of a padded batch (``pad_batch``) or a ``packing.PackedBatch``."""
    if isinstance(batch, PackedBatch):
        return packed_logits(model, batch)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits


def _labels(batch) -> torch.Tensor:
    return batch.labels if isinstance(batch, PackedBatch) else batch["labels"]


def training_batches(seqs: Sequence[Sequence[int]], labels: Sequence[int], recipe: dict, *, pad_id: int = 0,
                     device=None) -> list:
    """One optimizer step's rows as micro-batches under ``recipe["train_max_tokens"]``: packed rows
    (``recipe["pack"]``, widths rounded up to ``pack_bucket``) or length-sorted padded batches."""
    lengths = [len(q) for q in seqs]
    budget = recipe["train_max_tokens"]
    if recipe.get("pack"):
        bucket = recipe.get("pack_bucket", 512)
        return [packed_batch([seqs[i] for i in g], width=bucket_width(sum(lengths[i] for i in g), bucket),
                             pad_id=pad_id, labels=[labels[i] for i in g], device=device)
                for g in pack_rows(lengths, budget)]
    mult = recipe.get("pad_to_multiple_of", 8)
    return [pad_batch([seqs[i] for i in g], pad_id=pad_id, pad_to_multiple_of=mult, labels=[labels[i] for i in g],
                      device=device) for g in token_budget_batches(lengths, budget, pad_to_multiple_of=mult)]


def inference_batches(model, lengths: Sequence[int], max_tokens: int, max_rows: int | None = 64, *,
                      padding_side: str = "right"):
    """(row indices, make(seqs, pad_id, device)) for inference: packed rows of exactly ``max_tokens``
    when ``model`` runs flex attention (one shape: flex compiles once), else length-sorted padded batches."""
    if uses_packing(model):
        for g in pack_rows(lengths, max_tokens):
            width = bucket_width(sum(int(lengths[i]) for i in g), 128, max_tokens)
            yield g, lambda seqs, pad_id, device, w=width: packed_batch(seqs, width=w, pad_id=pad_id, device=device)
    else:
        for g in token_budget_batches(lengths, max_tokens, max_rows):
            yield g, lambda seqs, pad_id, device: pad_batch(seqs, pad_id=pad_id, pad_to_multiple_of=8, device=device,
                                                            padding_side=padding_side)


def deal_rows(step: Sequence[int], lengths: Sequence[int], world: int) -> list[list[int]]:
    """One optimizer step's rows dealt over ``world`` data-parallel processes with balanced tokens: longest
    first, each to the process with the fewest tokens so far (ties: the lowest rank). The same on every
    process (a pure function of the step); each row goes to exactly one process."""
    parts: list[list[int]] = [[] for _ in range(world)]
    load = [0] * world
    for i in sorted(step, key=lambda i: (-int(lengths[i]), i)):
        r = min(range(world), key=lambda k: (load[k], k))
        parts[r].append(i)
        load[r] += int(lengths[i])
    return parts


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
    total = total_rows or sum(int(_labels(mb).shape[0]) for mb in micro_batches)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_sum = torch.zeros((), device=params[0].device)
    for mb in micro_batches:
        dev = _labels(mb).device.type
        with torch.autocast(dev, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            logits = classification_logits(model, mb)
        loss = weighted_loss_sum(logits, _labels(mb), class_weights) / total
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


def set_attn_implementation(model, impl: str) -> None:
    """Switch a loaded model's attention backend (e.g. eager for training, flex for inference)."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        target.set_attn_implementation(impl)
    except Exception:
        target.config._attn_implementation = impl


def make_optimizer(params, lr: float, device=None, optim_type: str = "adamw_8bit"):
    """The optimizer named like the HF Trainer's ``optim`` (``config.FAST_LOOP_OPTIMIZERS``), no weight
    decay: the seed's bitsandbytes 8-bit AdamW by default."""
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


def prepare_lora_model(model, lora_config, recipe: dict):
    """4-bit base -> trainable PeftModel the kagflow way.

    Dequantises the base first when ``recipe["dequantize_for_training"]`` (big cards), wraps it with
    ``lora_config``, then ``prepare_for_lora_training`` (no input grads, checkpointing per recipe) and
    sets the recipe's training attention. Use instead of ``prepare_model_for_kbit_training``.
    """
    from peft import get_peft_model

    if recipe.get("dequantize_for_training"):
        dequantize_base(model, torch_dtype(recipe["dtype"]))
    pm = get_peft_model(model, lora_config)
    prepare_for_lora_training(pm, gradient_checkpointing=recipe["gradient_checkpointing"],
                              uncheckpointed_layers=recipe.get("uncheckpointed_layers", 0))
    set_attn_implementation(pm, recipe.get("train_attn_implementation", "eager"))
    return pm


def amp_for(recipe: dict, device) -> tuple:
    """(autocast dtype or None, GradScaler or None) for training with ``recipe`` on ``device``:
    the recipe's dtype (the device profile's), a GradScaler for fp16 on CUDA; nothing for fp32."""
    autocast = torch_dtype(recipe["dtype"])
    if autocast == torch.float32:  # CPU / fp32 runs: no autocast
        return None, None
    scaler = torch.amp.GradScaler("cuda") if recipe.get("grad_scaler") and torch.device(device).type == "cuda" \
        else None
    return autocast, scaler


class FitResult(list):
    """``fit_lora``'s per-step losses (global over processes), with how the run went: ``steps_total``,
    ``resumed_from`` (a checkpoint folder or None), ``stopped_early`` (the time budget ran out)."""

    steps_total: int = 0
    resumed_from: str | None = None
    stopped_early: bool = False


def plan_steps(lengths: Sequence[int], rows_per_step: int, epochs: float, seed: int) -> list[list[int]]:
    """The run's optimizer steps: ``length_grouped_steps`` once per (started) epoch, cut to ``epochs``."""
    steps: list[list[int]] = []
    for e in range(max(1, math.ceil(epochs))):
        steps += length_grouped_steps(lengths, rows_per_step, seed=seed + e)
    return steps[:max(1, int(round(len(steps) * epochs / max(1, math.ceil(epochs)))))]


def fit_lora(model, seqs: Sequence[Sequence[int]], labels: Sequence[int], recipe: dict, *, steps=None,
             rows_per_step: int = 6, epochs: float = 1.0, lr: float = 2e-4, warmup_steps: int = 20,
             seed: int = 42, max_grad_norm: float | None = 1.0, pad_id: int = 0, optimizer=None,
             optim_type: str = "adamw_8bit", log_every: int = 10, on_log=None, device=None,
             checkpointing=None, eval_at: Sequence[int] = (), on_eval=None,
             class_weights: Sequence[float] | None = None) -> FitResult:
    """kagflow's training loop (what bench k5 measured at 3.25x the seed's Trainer on an H100).

    Optimizer steps of ``rows_per_step`` rows of similar length (``plan_steps``, one shuffle per epoch),
    each split into micro-batches under ``recipe["train_max_tokens"]`` padded tokens
    (``token_budget_batches``), mean row loss per step (``lora_train_step``), linear warmup/decay like
    the HF Trainer, grad clipping, a GradScaler when ``recipe["grad_scaler"]``, the ``optim_type``
    optimizer. ``seqs`` are token id lists (already truncated), ``labels`` 0/1/2.
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


def prepare_for_inference(model, recipe: dict):
    """Trained PeftModel (4-bit base) -> the model to predict with, per ``recipe``.

    Big cards: ``merge_and_dequantize`` to the recipe dtype, then the recipe's inference attention
    (flex on sm80+: run one warm-up ``predict_logits`` first, compilation ~1 min). T4: the 4-bit
    PeftModel as is, eager. Returns the model in eval mode.
    """
    if recipe.get("dequantize_for_inference"):
        model = merge_and_dequantize(model, torch_dtype(recipe["dtype"]))
    set_attn_implementation(model, recipe.get("infer_attn_implementation", "eager"))
    return model.eval()


# --------------------------------------------------------------------------- 4-bit -> bf16


def _is_linear4bit(module) -> bool:
    try:
        import bitsandbytes as bnb
    except Exception:  # pragma: no cover
        return False
    return isinstance(module, bnb.nn.Linear4bit)


def dequantize_weight(module, dtype) -> torch.Tensor:
    """The dense weight of a bitsandbytes Linear4bit: exactly what its forward dequantises."""
    import bitsandbytes.functional as bnbf
    w = module.weight
    if getattr(w.quant_state, "packing_format_for_cpu", False):  # bnb's CPU inference layout
        w.data, w.quant_state = bnbf._convert_weight_packed_for_cpu_inverse(w.data, w.quant_state)
    return bnbf.dequantize_4bit(w.data, w.quant_state).to(dtype)


def _dense_linear(weight: torch.Tensor, bias) -> nn.Linear:
    out_f, in_f = weight.shape
    lin = nn.Linear(in_f, out_f, bias=bias is not None, device="meta")
    lin.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        lin.bias = nn.Parameter(bias.detach().to(weight.dtype), requires_grad=False)
    return lin


def _set_child(root, name: str, new) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def _clear_quantization_flags(model) -> None:
    for m in (model, getattr(model, "model", None)):
        if m is None:
            continue
        for attr, val in (("is_loaded_in_4bit", False), ("is_quantized", False), ("hf_quantizer", None),
                          ("quantization_method", None)):
            try:
                setattr(m, attr, val)
            except Exception:
                pass
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "quantization_config"):
        try:
            delattr(cfg, "quantization_config")
        except Exception:
            pass


def _cast_floating(model, dtype) -> None:
    for p in model.parameters():
        if p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)
    for name, b in list(model.named_buffers()):
        if b.is_floating_point() and b.dtype != dtype and "inv_freq" not in name:
            _set_buffer(model, name, b.to(dtype))


def _set_buffer(model, name, value) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    parent._buffers[child] = value


@torch.no_grad()
def dequantize_base(model, dtype=torch.bfloat16, *, cast_rest: bool = False):
    """Replace every bitsandbytes Linear4bit of a (non-peft) model by a dense nn.Linear, in place.

    The dense weight is what bitsandbytes dequantises on every forward, so the model computes the
    same function; it costs 2 bytes/param instead of ~0.56 (17.3 GiB for Gemma-2-9B), and saves a
    dequantisation per linear per forward and per backward. For training on big cards: call it
    before ``get_peft_model``. Returns the model.
    """
    for name, mod in list(model.named_modules()):
        if name and _is_linear4bit(mod):
            _set_child(model, name, _dense_linear(dequantize_weight(mod, dtype), mod.bias))
            del mod
    _clear_quantization_flags(model)
    if cast_rest:
        _cast_floating(model, dtype)
    return model


@torch.no_grad()
def merge_and_dequantize(peft_model, dtype=torch.bfloat16):
    """4-bit base + LoRA (a PeftModel) -> a plain model in ``dtype`` with the LoRA merged.

    Each LoRA-wrapped 4-bit linear becomes nn.Linear(W_deq + scaling * B @ A) (delta in fp32, one
    rounding to ``dtype``); other 4-bit linears are dequantised; ``modules_to_save`` copies (the
    score head) replace their originals; all floating params/buffers are cast to ``dtype``.
    For inference on cards with memory for the dense model (>= ~24 GiB for 9B in bf16).
    """
    from peft.tuners.lora import LoraLayer

    try:
        from peft.utils import ModulesToSaveWrapper
    except Exception:  # pragma: no cover
        from peft.utils.other import ModulesToSaveWrapper

    model = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    for name, mod in list(model.named_modules()):
        if not name:
            continue
        if isinstance(mod, LoraLayer):
            base = mod.get_base_layer()
            if _is_linear4bit(base):
                w = dequantize_weight(base, torch.float32)
            else:
                w = base.weight.detach().float()
            for adapter in mod.active_adapters:
                if adapter in getattr(mod, "lora_A", {}):
                    a = mod.lora_A[adapter].weight.float()
                    b = mod.lora_B[adapter].weight.float()
                    w = w + (b @ a) * float(mod.scaling[adapter])
            _set_child(model, name, _dense_linear(w.to(dtype), base.bias))
        elif isinstance(mod, ModulesToSaveWrapper):
            active = mod.active_adapter
            if isinstance(active, (list, tuple)):
                active = active[0]
            _set_child(model, name, mod.modules_to_save[active])
    for name, mod in list(model.named_modules()):
        if name and _is_linear4bit(mod):
            _set_child(model, name, _dense_linear(dequantize_weight(mod, dtype), mod.bias))
    _clear_quantization_flags(model)
    _cast_floating(model, dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


# --------------------------------------------------------------------------- inference


@torch.inference_mode()
def predict_logits(model, seqs: Sequence[Sequence[int]], *, max_tokens: int, max_rows: int | None = 64,
                   pad_id: int = 0, autocast_dtype=None, device=None) -> torch.Tensor:
    """Logits [n, num_labels] (float32, CPU, input order) from ``inference_batches``."""
    device = device if device is not None else next(model.parameters()).device
    out = None
    for b, make in inference_batches(model, [len(s) for s in seqs], max_tokens, max_rows):
        batch = make([seqs[i] for i in b], pad_id, device)
        with torch.autocast(torch.device(device).type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = classification_logits(model, batch).float()
        if out is None:
            out = torch.empty((len(seqs), logits.shape[-1]), dtype=torch.float32)
        out[torch.as_tensor(b)] = logits.cpu()
    return out if out is not None else torch.empty((0, 0))


def ab_swap_average(probs: torch.Tensor, probs_swapped: torch.Tensor) -> torch.Tensor:
    """A/B-swap TTA: average p(A,B,tie) with the swapped run's p(B,A,tie) read back."""
    return 0.5 * (probs + probs_swapped[:, [1, 0, 2]])


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64; inf if any NaN."""
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    if torch.isnan(a64).any() or torch.isnan(b64).any():
        return math.inf
    return float((a64 - b64).norm() / b64.norm().clamp_min(1e-30))
