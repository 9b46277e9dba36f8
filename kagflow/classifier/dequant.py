"""4-bit -> dense: a bitsandbytes NF4 base dequantised once (for training on big cards), or merged with its LoRA.

The dense weights are bit-identical to what bitsandbytes dequantises on every forward, so the model
computes the same function while saving a dequantisation per linear per forward (and backward). The
recipe (``recipe.recipe_for_profile``) asks for it on cards with memory to spare; 4-bit stays on T4s, with
whole layers made dense where memory allows (``densify_layers``). ``[infer] quantization = "8bit"``: the
merged weights rounded to int8 per output row (``int8_layers``: ``Int8Linear``, weight-only, or bitsandbytes'
LLM.int8), with layers made dense likewise.

Imports only torch at module level; peft and bitsandbytes lazily.
"""

from __future__ import annotations

import gc

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


@torch.no_grad()
def flatten_absmax(model) -> int:
    """Undo bitsandbytes' double quantisation of the NF4 block scales, once: each nested 4-bit weight's 8-bit
    ``absmax`` becomes the float32 scales its every dequantisation computes first (``dequantize_blockwise`` +
    ``offset``, as ``bitsandbytes.functional.dequantize_4bit`` does), so the weights dequantise to the same
    values with one kernel instead of two per linear per pass (~1,000 fewer launches per training step of
    Gemma-2-9B, bench/RESULTS.md fifth measurement). Costs 3 bytes per 64 weights (~0.4 GiB for 9B).
    Returns how many weights were flattened."""
    import bitsandbytes.functional as bnbf

    n = 0
    for mod in model.modules():
        if not _is_linear4bit(mod):
            continue
        qs = getattr(mod.weight, "quant_state", None)
        if qs is None or not getattr(qs, "nested", False):
            continue
        absmax = bnbf.dequantize_blockwise(qs.absmax, qs.state2)
        absmax += qs.offset
        qs.absmax, qs.nested, qs.state2, qs.offset = absmax.float(), False, None, None
        n += 1
    return n


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


def _release_replaced() -> None:
    """Free the linears just replaced: a bitsandbytes 4-bit weight points back at its module (``Params4bit.module``),
    so a replaced linear is a reference cycle that only the cycle collector frees. Called after each decoder layer:
    without it every replaced 4-bit weight stayed on the GPU until Python's next full collection (the 8-bit model of
    a 9B ran out of a 15 GiB card at 14.54 GiB while converting, bench/RESULTS.md, third session)."""
    gc.collect()


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
            _set_child(model, name, _dense_of(mod, dtype))
            del mod
    _clear_quantization_flags(model)
    if cast_rest:
        _cast_floating(model, dtype)
    return model


def _dense_of(mod, dtype) -> nn.Linear:
    """The dense nn.Linear in ``dtype`` that computes what ``mod`` computes: a bitsandbytes Linear4bit
    dequantised, or a LoRA wrapper with its adapters merged (``_merged_dense``)."""
    if hasattr(mod, "get_base_layer"):
        return _merged_dense(mod, dtype)
    return _dense_linear(dequantize_weight(mod, dtype), mod.bias)


def _merged_dense(mod, dtype) -> nn.Linear:
    """A LoRA-wrapped linear (4-bit or dense base) -> nn.Linear(W + scaling * B @ A) in ``dtype`` (the delta in
    fp32, one rounding to ``dtype``), its active adapters merged."""
    base = mod.get_base_layer()
    w = dequantize_weight(base, torch.float32) if _is_linear4bit(base) else base.weight.detach().float()
    for adapter in mod.active_adapters:
        if adapter in getattr(mod, "lora_A", {}):
            a = mod.lora_A[adapter].weight.float()
            b = mod.lora_B[adapter].weight.float()
            w = w + (b @ a) * float(mod.scaling[adapter])
    return _dense_linear(w.to(dtype), base.bias)


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
            _set_child(model, name, _merged_dense(mod, dtype))
        elif isinstance(mod, ModulesToSaveWrapper):
            active = mod.active_adapter
            if isinstance(active, (list, tuple)):
                active = active[0]
            _set_child(model, name, mod.modules_to_save[active])
    for name, mod in list(model.named_modules()):
        if name and _is_linear4bit(mod):
            _set_child(model, name, _dense_of(mod, dtype))
    _clear_quantization_flags(model)
    _cast_floating(model, dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _layer_linears(layer) -> list:
    """(name, module) of the 4-bit linears of a decoder layer, each as the model holds it: the LoRA wrapper
    where one wraps it, else the bitsandbytes Linear4bit."""
    from peft.tuners.lora import LoraLayer

    out = []
    for name, mod in layer.named_modules():
        if isinstance(mod, LoraLayer) and _is_linear4bit(mod.get_base_layer()):
            out.append((name, mod))
        elif _is_linear4bit(mod) and not any(name.startswith(n + ".") for n, _ in out):
            out.append((name, mod))
    return out


def dense_cost_bytes(layer, dtype) -> int:
    """How many more bytes decoder ``layer`` takes with its 4-bit linears dense in ``dtype`` (LoRA merged)."""
    return _dense_cost(_layer_linears(layer), dtype)


def _dense_cost(linears, dtype) -> int:
    extra = 0
    for _, mod in linears:
        base = mod.get_base_layer() if hasattr(mod, "get_base_layer") else mod
        packed = base.weight.numel() * base.weight.element_size()
        extra += base.in_features * base.out_features * torch.finfo(dtype).bits // 8 - packed
    return extra


def _int8_cost(linears) -> int:
    """How many more bytes ``linears`` take as ``Int8Linear``s than 4-bit: 1 per weight and 4 per output row, less
    the packed weights."""
    extra = 0
    for _, mod in linears:
        base = mod.get_base_layer() if hasattr(mod, "get_base_layer") else mod
        extra += base.in_features * base.out_features + 4 * base.out_features - \
            base.weight.numel() * base.weight.element_size()
    return extra


@torch.no_grad()
def densify_layers(peft_model, max_extra_bytes: int, dtype, *, others: str = "4bit") -> list[int]:
    """Inference on a 4-bit model where memory allows part of it dense (a T4: bench/RESULTS.md, fifth measurement).

    Within ``max_extra_bytes`` of GPU memory, whole decoder layers get their 4-bit linears dense in ``dtype``, the
    LoRA merged into them (``merge_and_dequantize``'s rule, per layer): they skip bitsandbytes' dequantisation of
    every weight per batch and the LoRA's extra matmuls and adds. Layers with LoRA go first, top down; the rest of
    the model stays 4-bit with its LoRA (``others`` "4bit"), or is about to become weight-only int8 (``others``
    "int8": ``int8_layers`` next, so every layer's int8 bytes are paid from ``max_extra_bytes`` first and a dense
    layer costs its extra byte per weight over int8), and the adapter stays a PeftModel (one active adapter).
    Returns the indices of the layers made dense."""
    from .compiling import decoder_layers

    if others not in ("4bit", "int8"):
        raise ValueError(f"others = {others!r} is not \"4bit\" or \"int8\"")
    layers = decoder_layers(peft_model)
    linears = [_layer_linears(layer) for layer in layers]
    has_lora = [any(hasattr(mod, "get_base_layer") for _, mod in lin) for lin in linears]
    int8 = [_int8_cost(lin) if others == "int8" else 0 for lin in linears]
    done, left = [], int(max_extra_bytes) - sum(int8)
    for i in sorted(range(len(layers)), key=lambda i: (not has_lora[i], -i)):
        cost = _dense_cost(linears[i], dtype) - int8[i]
        if not linears[i] or cost > left:
            continue
        names, linears[i] = [name for name, _ in linears[i]], None  # no reference left to the replaced linears
        for name in names:
            _set_child(layers[i], name, _dense_of(layers[i].get_submodule(name), dtype))
        _release_replaced()
        left -= cost
        done.append(i)
    return sorted(done)


class Int8Linear(nn.Module):
    """A weight-only int8 linear (``[infer] int8_kernel = "weight_only"``): the weight quantised row-wise, absmax
    per output row / 127 (bitsandbytes' ``int8_vectorwise_quant`` format: ``weight`` its CB, int8, 1 byte per
    weight; ``scale`` its SCB / 127, float32 per output row). Each forward dequantises the weight to the input's
    dtype, a temporary (inside a compiled decoder layer inductor fuses the cast and the scaling into one kernel),
    and runs ``F.linear`` (cuBLAS): the activations stay in fp16 / bf16, unlike LLM.int8, which quantises them
    too. No full-precision copy is kept."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        if weight.dtype != torch.int8 or weight.dim() != 2 or scale.shape != weight.shape[:1]:
            raise ValueError(f"Int8Linear takes an int8 [out, in] weight and an [out] scale, not {weight.dtype} "
                             f"{tuple(weight.shape)} and {tuple(scale.shape)}")
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale.float())
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    @torch.no_grad()
    def quantize(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> "Int8Linear":
        """Row-wise int8 of ``weight`` (rounded to nearest, computed in float32 where the weight is)."""
        w = weight.detach().float()
        if w.data_ptr() == weight.data_ptr():
            w = w.clone()  # scaled in place below: never the caller's tensor
        absmax = w.abs().amax(dim=1)
        # in place: one float32 copy of the weight at a time (a 9B's largest linear: 196 MiB)
        w.mul_((127.0 / absmax.clamp_min(torch.finfo(torch.float32).tiny))[:, None]).round_().clamp_(-127, 127)
        return cls(w.to(torch.int8), absmax / 127.0, bias)

    def dequantized(self, dtype) -> torch.Tensor:
        """The weight in ``dtype`` (one rounding from the float32 product)."""
        return (self.weight.float() * self.scale[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return nn.functional.linear(x, self.dequantized(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _int8_linear(weight: torch.Tensor, bias, threshold: float, device) -> nn.Module:
    """bitsandbytes' LLM.int8 linear of a dense weight (quantised row-wise as it moves to ``device``)."""
    import bitsandbytes as bnb

    out_f, in_f = weight.shape
    lin = bnb.nn.Linear8bitLt(in_f, out_f, bias=bias is not None, has_fp16_weights=False, threshold=threshold,
                              device="meta")
    # quantised where the weight is (Int8Params itself quantises only on a move off the CPU)
    cb, scb, _ = bnb.functional.int8_vectorwise_quant(weight.detach().to(device, torch.float16).contiguous())
    lin.weight = bnb.nn.Int8Params(cb, requires_grad=False, has_fp16_weights=False, CB=cb, SCB=scb)
    if bias is not None:
        lin.bias = nn.Parameter(bias.detach().to(device, torch.float16), requires_grad=False)
    return lin


def int8_words(kernel: str, threshold: float) -> str:
    """How ``int8_layers``' linears compute, for the log."""
    return "weight-only int8, fp16/bf16 activations" if kernel == "weight_only" else \
        f"LLM.int8, outlier threshold {threshold}"


@torch.no_grad()
def int8_layers(peft_model, *, kernel: str = "weight_only", threshold: float = 6.0) -> int:
    """8-bit inference of a 4-bit model (``[infer] quantization = "8bit"``), in place: every 4-bit linear of the
    decoder layers becomes an 8-bit linear of its dequantised NF4 weight with the LoRA merged (``_merged_dense``'s
    W + scaling * B @ A in fp32): the function the adapter was trained against, rounded once to int8 per output row,
    1 byte per weight. ``kernel`` (``[infer] int8_kernel``): "weight_only" (``Int8Linear``: dequantised per forward,
    fp16/bf16 activations, cuBLAS) or "llm_int8" (bitsandbytes' ``Linear8bitLt``, activations quantised too, with
    outlier columns past ``threshold`` in fp16; 0: every column int8; the winners inferred with it, 0.43x of the
    tuned 4-bit path on an H200, bench/RESULTS.md). Linears already dense (``densify_layers``) stay as they are.
    The LoRA disappears into the weights, so the adapter stays a PeftModel with nothing left to add. Returns how
    many linears became 8-bit."""
    from .compiling import decoder_layers
    from .config import INT8_KERNELS

    if kernel not in INT8_KERNELS:
        raise ValueError(f"[infer] int8_kernel = {kernel!r} is not one of {', '.join(INT8_KERNELS)}")
    n = 0
    for layer in decoder_layers(peft_model):
        names = [name for name, _ in _layer_linears(layer)]
        for name in names:
            _set_child(layer, name, _int8_of(layer.get_submodule(name), kernel, threshold))
        n += len(names)
        _release_replaced()
    return n


def _int8_of(mod, kernel: str, threshold: float) -> nn.Module:
    """The 8-bit linear of one 4-bit linear (its LoRA wrapper, or the bare Linear4bit)."""
    base = mod.get_base_layer() if hasattr(mod, "get_base_layer") else mod
    w = _merged_dense(mod, torch.float32).weight if hasattr(mod, "get_base_layer") else \
        dequantize_weight(mod, torch.float32)
    if kernel == "weight_only":
        return Int8Linear.quantize(w, base.bias)
    return _int8_linear(w, base.bias, threshold, base.weight.device)
