"""4-bit -> dense: a bitsandbytes NF4 base dequantised once (for training on big cards), or merged with its LoRA.

The dense weights are bit-identical to what bitsandbytes dequantises on every forward, so the model
computes the same function while saving a dequantisation per linear per forward (and backward). The
recipe (``recipe.recipe_for_profile``) asks for it on cards with memory to spare; 4-bit stays on T4s.

Imports only torch at module level; peft and bitsandbytes lazily.
"""

from __future__ import annotations

import torch
from torch import nn


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
