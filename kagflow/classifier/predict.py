"""Inference with kagflow's recipe: the trained model prepared per card, logits from token-budget batches.

``prepare_for_inference`` merges the LoRA into a dequantised base on cards with memory to spare
(``dequant``) and sets the recipe's inference attention (``recipe``); ``predict_logits`` runs it over
``batching.inference_batches``; ``predict_proba`` turns the logits into probabilities (``SWAP_AB`` maps an
A/B-swapped pass back). ``ab_swap_average`` and ``relative_error`` are what the bench and the
tests compare runs with.

Imports only the stdlib and torch at module level.
"""

from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch

from . import progress_line
from .batching import classification_logits, inference_batches, token_budget_batches
from .compiling import compile_decoder_layers, static_shapes
from .dequant import densify_layers, flatten_absmax, int8_layers, int8_words, merge_and_dequantize
from .packing import uses_packing
from .pooled import pool_top_layer
from .recipe import Recipe, set_attn_implementation, torch_dtype
from .task import Task

SWAP_AB = Task.lmsys().swap_order  # column order that maps LMSYS's swapped-input probabilities back to A / B / tie


def token_batches(lengths, token_budget: int) -> list[list[int]]:
    """Row indices grouped longest first, each batch's padded size (rows x widest) within ``token_budget``."""
    return token_budget_batches(lengths, token_budget)


def predict_proba(model, token_ids, *, pad_token_id: int, token_budget: int = 16384, log_every: float = 30.0,
                  padding_side: str = "right"):
    """Softmax probabilities (n x 3, float64, rows sum to 1) for pre-tokenised rows, in input order.

    Logits from ``predict.predict_logits`` over ``batching.inference_batches``: rows packed into one
    fixed-width row when the model runs flex attention (one compiled shape), else length-sorted batches
    padded on ``padding_side``: the right, as kagflow always pads (``model.load_tokenizer`` says why); the score
    head pools each row's last real token with either side."""
    import numpy as np

    if not len(token_ids):
        return np.zeros((0, 3), dtype=np.float64)
    device = getattr(model, "device", None) or next(model.parameters()).device
    logits = predict_logits(model, token_ids, max_tokens=token_budget, pad_id=pad_token_id, device=device,
                            padding_side=padding_side, log_every=log_every)
    p = torch.softmax(logits, dim=-1).double().numpy()
    return p / p.sum(axis=1, keepdims=True)


def prepare_for_inference(model, recipe: Recipe, *, quantization: str = "4bit", int8_kernel: str = "weight_only",
                          int8_threshold: float = 6.0):
    """Trained PeftModel (4-bit base) -> the model to predict with, per ``recipe``.

    Big cards: ``merge_and_dequantize`` to the recipe dtype, then the recipe's inference attention
    (flex on sm80+: run one warm-up ``predict_logits`` first, compilation ~1 min). T4: the 4-bit
    PeftModel (its double-quantised scales flattened, ``dequant.flatten_absmax``), as many layers made dense
    with the LoRA merged as fit in ``recipe.infer_model_max_gib`` (``dequant.densify_layers``), eager, each
    decoder layer compiled (``recipe.infer_compile_layers``).
    ``quantization`` "8bit" (a 4-bit recipe only): every 4-bit linear becomes 8-bit of its NF4 weight with the
    LoRA merged (``dequant.int8_layers``); ``int8_kernel`` "weight_only" (the default) first makes as many whole
    layers dense as fit in ``recipe.infer_model_max_gib`` with the rest in int8 (``densify_layers(others="int8")``);
    "llm_int8" (bitsandbytes' LLM.int8, outlier threshold ``int8_threshold``) makes every layer 8-bit.
    Padded batches (every recipe but flex attention's packed rows): the top decoder layer computes the pooled
    token only past its attention (``recipe.infer_pool_top_layer``, ``pooled``).
    Returns the model in eval mode.
    """
    if recipe.dequantize_for_inference:
        if quantization == "8bit":
            print("inference: quantization = \"8bit\" is for the cards that keep a quantised base; this card merges "
                  f"the LoRA into a {recipe.dtype} base", flush=True)
        model = merge_and_dequantize(model, torch_dtype(recipe.dtype))
    elif quantization == "8bit":
        dense = _dense_layers(model, recipe, others="int8") if int8_kernel == "weight_only" else None
        n = int8_layers(model, kernel=int8_kernel, threshold=int8_threshold)
        memory = f" (memory for the model: {recipe.infer_model_max_gib} GiB)" if dense is not None else ""
        print(f"inference: {n} linears made 8-bit ({int8_words(int8_kernel, int8_threshold)}) and "
              f"{len(dense or [])} decoder layers dense, the LoRA merged into both{memory}", flush=True)
    else:
        if recipe.flatten_absmax:
            flatten_absmax(model)
        dense = _dense_layers(model, recipe, others="4bit")
        if dense is not None:
            print(f"inference: {len(dense)} of the 4-bit decoder layers made dense with the LoRA merged "
                  f"(memory for the model: {recipe.infer_model_max_gib} GiB)", flush=True)
    set_attn_implementation(model, recipe.infer_attn_implementation)
    if recipe.infer_attn_implementation == "flex_attention":
        static_shapes()  # one packed width: flex compiles statically, also on a second GPU
    if recipe.infer_pool_top_layer and not uses_packing(model) and pool_top_layer(model):
        print("inference: the top decoder layer computes the pooled token only past its attention", flush=True)
    model = model.eval()
    if recipe.infer_compile_layers:
        compile_decoder_layers(model)
    return model


def _dense_layers(model, recipe: Recipe, *, others: str) -> list[int] | None:
    """``dequant.densify_layers`` within the recipe's memory for the model (what the model already takes on its
    device subtracted), the rest staying ``others``; None where the recipe sets no such memory or the model has no
    adapter."""
    if not recipe.infer_model_max_gib or not hasattr(model, "peft_config"):
        return None
    return densify_layers(model, int(recipe.infer_model_max_gib * 2**30) - _bytes_on_device(model),
                          torch_dtype(recipe.dtype), others=others)


def _bytes_on_device(model) -> int:
    """What ``model`` takes on its device: all the GPU's allocated memory (whatever else holds it is not free
    either), or its parameters and buffers elsewhere."""
    device = next(model.parameters()).device
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


@torch.inference_mode()
def predict_logits(model, seqs: Sequence[Sequence[int]], *, max_tokens: int, max_rows: int | None = 64,
                   pad_id: int = 0, autocast_dtype=None, device=None, padding_side: str = "right",
                   log_every: float | None = None) -> torch.Tensor:
    """Logits [n, num_labels] (float32, CPU, input order) from ``inference_batches`` (padded batches on
    ``padding_side``); the rows done count into the open ``progress_line.counting`` job, else with ``log_every``
    seconds a progress line of this call's rows at most that often."""
    device = device if device is not None else next(model.parameters()).device
    batches = list(inference_batches(model, [len(s) for s in seqs], max_tokens, max_rows, padding_side=padding_side))
    out = None
    counter = progress_line.rows(len(seqs), every=log_every)
    for b, make in batches:
        batch = make([seqs[i] for i in b], pad_id, device)
        # no autocast asked: the caller's holds (a disabled autocast here would switch off the one train.py
        # evaluates under, and the fp32 head of a model trained in bf16/fp16 would meet half-precision states)
        with (torch.autocast(torch.device(device).type, dtype=autocast_dtype) if autocast_dtype is not None
              else contextlib.nullcontext()):
            logits = classification_logits(model, batch).float()
        if out is None:
            out = torch.empty((len(seqs), logits.shape[-1]), dtype=torch.float32)
        out[torch.as_tensor(b)] = logits.cpu()
        counter.advance(len(b))
    return out if out is not None else torch.empty((0, 0))


def ab_swap_average(probs: torch.Tensor, probs_swapped: torch.Tensor) -> torch.Tensor:
    """A/B-swap TTA: average p(A,B,tie) with the swapped run's p(B,A,tie) read back."""
    return 0.5 * (probs + probs_swapped[:, SWAP_AB])


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64; inf if any NaN."""
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    if torch.isnan(a64).any() or torch.isnan(b64).any():
        return math.inf
    return float((a64 - b64).norm() / b64.norm().clamp_min(1e-30))
