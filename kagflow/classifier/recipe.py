"""kagflow's measured recipe per device and model: attention backend, dtype, token budgets, checkpointing.

Measured on Gemma 2 side by side with the seed's recipe by ``bench/gemma_bench.py`` (numbers in
``bench/RESULTS.md``, reasoning in ``bench/NOTES.md``). The rules it encodes:

* Attention, keyed on the model's config (``model.ModelTraits``), not its class: Gemma 2 caps its
  attention logits (``attn_logit_softcapping``). PyTorch SDPA drops the cap, so it is never chosen for a
  soft-capped model; flex attention (keeps the cap as a ``score_mod``) on sm80+ GPUs, eager elsewhere
  (T4 = sm75). Models without the cap (Gemma 3, Llama, Qwen) get SDPA.
* Token budgets per card for training micro-batches and inference batches (``batching``), gradient
  checkpointing only where memory needs it (``fit``).
* On cards with memory to spare the NF4 base is dequantised once to bf16 (``dequant``), and for inference
  the LoRA is merged into it. 4-bit stays on T4 (16 GB), in fp16 (no bf16 on sm75).

Imports only torch at module level; the device profile lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .memory import GEMMA2_9B, SPARE_GIB, LoraShape, MemoryPlan, MemoryPlanError, Setting, plan

SOFTCAPPED_MODEL_TYPES = frozenset({"gemma2"})


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


@dataclass(frozen=True)
class Recipe:
    """kagflow's measured recipe for one device and one model (``recipe_for_profile`` says how each is chosen);
    an override is ``dataclasses.replace(recipe, key=value)``."""

    dtype: str  # "bfloat16" / "float16" / "float32": the device profile's
    train_attn_implementation: str
    infer_attn_implementation: str
    pack: bool  # train on packed rows (flex attention), widths rounded up to pack_bucket tokens
    pack_bucket: int
    gradient_checkpointing: bool
    uncheckpointed_layers: int  # the top trainable layers that keep their activations
    uncheckpointed_layers_eager: int  # as many if the compiled layers fall back to eager
    train_max_tokens: int  # padded tokens per training micro-batch
    infer_max_tokens: int
    infer_max_rows: int
    infer_model_max_gib: Optional[float]  # 4-bit inference: memory for layers made dense, LoRA merged
    dequantize_for_training: bool  # 4-bit base -> bf16 once
    dequantize_for_inference: bool  # ... and the LoRA merged for inference
    flatten_absmax: bool  # 4-bit: float32 block scales (dequant.flatten_absmax)
    grad_scaler: bool  # fp16 training: the profile's
    pad_to_multiple_of: int
    compile_layers: bool  # each decoder layer through torch.compile in training (``compiling``)
    infer_compile_layers: bool
    infer_pool_top_layer: bool  # padded inference: the top layer computes the pooled token only (``pooled``)
    memory_plan: Optional[MemoryPlan] = None  # training: where budget and unchecked layers come from (``memory``)


def recipe_for_device(total_mem_gib: float, capability: tuple[int, int], traits=None, **training) -> "Recipe":
    """``recipe_for_profile`` of a GPU with ``total_mem_gib`` GiB and compute ``capability``."""
    from .device import DeviceProfile

    return recipe_for_profile(DeviceProfile((int(capability[0]), int(capability[1])), float(total_mem_gib)),
                              traits, **training)


def recipe_for_profile(profile, traits=None, *, lora: Optional[LoraShape] = None, max_length: Optional[int] = None,
                       optimizer: str = "auto", checkpointing: bool = True) -> Recipe:
    """The kagflow recipe for one device (a ``device.DeviceProfile``: memory, capability, precision) and
    one model (``model.ModelTraits`` of its config; None: Gemma 2, soft-capped, what was measured).

    Training memory follows the run: ``lora`` (``memory.LoraShape``: r, targets, frozen layers; default [train]'s
    defaults), ``max_length`` (default [train]'s), ``optimizer`` ([train] optim_type) and ``checkpointing`` (false:
    never) size the micro-batch budget and the unchecked layers through ``memory.plan`` with the model's shape
    (``traits.shape``; None: Gemma-2-9B), which refuses a given ``lora`` that cannot fit (``MemoryPlanError``;
    without ``lora``, as inference asks, a card the defaults do not fit gets every layer checkpointed).

    Fields (``Recipe``): dtype ("bfloat16"/"float16"/"float32": the profile's), train_attn_implementation,
    infer_attn_implementation, pack / pack_bucket (training on packed rows), gradient_checkpointing,
    uncheckpointed_layers (the top trainable layers that keep their activations) and
    uncheckpointed_layers_eager (as many if the compiled layers fall back to eager), train_max_tokens
    (padded tokens per training micro-batch), infer_max_tokens, infer_max_rows,
    dequantize_for_training, dequantize_for_inference (4-bit base -> bf16 once, LoRA merged for
    inference), flatten_absmax (4-bit: float32 block scales, ``dequant``), infer_model_max_gib (4-bit
    inference: memory for layers made dense, LoRA merged), grad_scaler (fp16 training: the profile's),
    pad_to_multiple_of, compile_layers /
    infer_compile_layers (each decoder layer through torch.compile, ``compiling``: training on every GPU,
    inference where attention is eager, i.e. T4s; flex inference compiles its attention already and its
    first pass is what users wait for), infer_pool_top_layer (padded inference: the top layer computes the
    pooled token only past its attention, ``pooled``).
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
        train_tokens, infer_tokens = 4096, 16384
    elif mid:
        train_tokens, infer_tokens = 8192, 8192
    else:  # T4 / 16-24 GB cards (and the CPU)
        train_tokens, infer_tokens = 4096, 8192
    # checkpoint only as many trainable layers as memory needs (only GPUs checkpoint, and every GPU trains with
    # compiled layers, "compile_layers" below): the top ones keep their activations in what the base, the LoRA
    # state and the checkpointed rest leave free (``memory``: the terms, fitted to bench/RESULTS.md's peaks); if
    # compilation fails at run time (``compiling``: the layers then run eager), eager layers keep more, and the
    # fallback re-checkpoints down to ``uncheckpointed_layers_eager`` (``fit.prepare_lora_model``); big cards train
    # without checkpointing where that fits
    try:
        plan = memory_plan(profile, traits, lora=lora, max_length=max_length, optimizer=optimizer,
                           checkpointing=checkpointing, tokens=train_tokens, dense=big)
    except MemoryPlanError:
        if lora is not None:  # a training run's own configuration: refused, with every term and the fix
            raise
        # no LoRA given (inference, or a card [train]'s defaults do not fit): every layer checkpointed, no plan
        plan = MemoryPlan(train_tokens, profile.cuda, 0, 0, (), None, 0, 0)
    gc = plan.checkpointing
    return Recipe(
        dtype=profile.dtype_name,
        train_attn_implementation=train_attn,
        infer_attn_implementation=infer_attn,
        pack=pack,
        pack_bucket=512,
        gradient_checkpointing=gc,
        uncheckpointed_layers=plan.unchecked if gc else 0,
        uncheckpointed_layers_eager=plan.unchecked_eager if gc else 0,
        train_max_tokens=plan.tokens,
        infer_max_tokens=infer_tokens,
        infer_max_rows=64,
        # 4-bit inference (T4s, 16-24 GB cards): the most GPU memory the model may take once whole layers are made
        # dense with their LoRA merged (``dequant.densify_layers``), leaving the activations at infer_max_tokens
        # (~1 GiB for 9B at 8,192 tokens), the first (compiling) batch's extra ~1.4 GiB and ~1.5 GiB spare: with
        # 12 of 15 GiB the warm-up peaked at 14.0 GiB (bench/RESULTS.md, fifth measurement; compiling on a small
        # batch first cut that extra to 0.7 GiB but tuned the kernels for small shapes: 8 % slower)
        infer_model_max_gib=round(mem - 4.0, 2) if profile.cuda and not mid else None,
        dequantize_for_training=big,
        dequantize_for_inference=mid,
        # 4-bit paths: NF4 block scales stored as float32 once instead of double-quantised (dequant.flatten_absmax:
        # same weights, one dequantisation kernel instead of two per linear per pass, +0.36 GiB for 9B; 16 GB
        # training 1.12x in the same call, bench/RESULTS.md fifth measurement)
        flatten_absmax=True,
        grad_scaler=profile.grad_scaler,
        pad_to_multiple_of=8,
        # regional compilation fuses the layers' elementwise work (bench/RESULTS.md: third measurement, the
        # 4-bit 16 GB/T4 paths 1.17x faster, T4 inference 1.44x; fourth, the big card's dequantised training
        # 1.60x, 4.88x the seed); not on the CPU (inductor: minutes per layer kind)
        compile_layers=profile.cuda,
        infer_compile_layers=profile.cuda and infer_attn != "flex_attention",
        # padded inference batches: the top decoder layer computes only the pooled token past its attention
        # (``pooled``: its MLP and output projection are 1 of 42 layers' main work for 9B; bench/RESULTS.md, sixth
        # measurement); packed rows (flex) pool several tokens per row and keep the whole layer
        infer_pool_top_layer=infer_attn != "flex_attention",
        memory_plan=plan,
    )


def memory_plan(profile, traits=None, *, lora: Optional[LoraShape] = None, max_length: Optional[int] = None,
                optimizer: str = "auto", checkpointing: bool = True, tokens: int = 4096,
                dense: bool = False) -> MemoryPlan:
    """``memory.plan`` for a device profile (its memory less ``SPARE_GIB``; the CPU: no limit, fp32, eager) and a
    model's traits (their ``shape``; None: Gemma-2-9B), ``lora`` / ``max_length`` defaulting to [train]'s."""
    from .config import TrainConfig

    shape = getattr(traits, "shape", None) or GEMMA2_9B
    lora = lora or LoraShape.of(TrainConfig())
    setting = Setting(limit_gib=profile.total_mem_gib - SPARE_GIB if profile.cuda else None,
                      act_bytes=2 if profile.cuda else 4, dense_weights=dense,
                      max_length=int(max_length or TrainConfig().max_length), optimizer=optimizer,
                      compiled=profile.cuda)
    return plan(shape, lora, setting, tokens=tokens, checkpointing=checkpointing and profile.cuda)


def recipe_for_current_device(device=None, traits=None, **training) -> Recipe:
    """``recipe_for_profile`` of a device (default: the current CUDA device, or the CPU without one)
    for a model with ``traits`` (``model.ModelTraits``); ``training``: its lora / max_length / optimizer /
    checkpointing."""
    from .device import device_profile

    return recipe_for_profile(device_profile(device), traits, **training)


def torch_dtype(name: str) -> torch.dtype:
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def set_attn_implementation(model, impl: str) -> None:
    """Switch a loaded model's attention backend (e.g. eager for training, flex for inference)."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        target.set_attn_implementation(impl)
    except Exception:
        target.config._attn_implementation = impl
