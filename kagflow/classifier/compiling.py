"""Regional compilation: each decoder layer through ``torch.compile`` (inductor), the rest of the model eager.

What it buys (``bench/RESULTS.md``): the layer's many small elementwise kernels (Gemma 2's four fp32
RMSNorms, RoPE, the attention softcap + mask + softmax, GeGLU, LoRA dropout and scaling, dtype casts) fuse
into a few, and each layer launches far fewer kernels. The layers share their code, so with
``inline_inbuilt_nn_modules`` (torch >= 2.5: parameters are graph inputs, not constants) one compiled graph
serves every layer of the same kind; the kinds are: with or without LoRA, checkpointed or not, input
requiring grad or not, so a handful of compilations in all, each with dynamic shapes (rows and width
change per batch). ``nn.Module.compile`` keeps parameter names (no ``_orig_mod.``), so adapters and
checkpoints save as before.

A compilation that fails (e.g. a Triton kernel a card cannot run) falls back to eager for that frame
(``suppress_errors``), with torch's warning in the log, instead of failing a Kaggle run that the CPU
rehearsal could not exercise.
"""

from __future__ import annotations

# variants per layer code: (LoRA or not) x (checkpointed or not) x (input requires grad or not) x
# (sliding or global attention) x (static, then dynamic): room for all of them and the flex/eager switch
RECOMPILE_LIMIT = 64
BACKEND = "inductor"  # the tests swap in "aot_eager": the same capture and guards, no C++ build on the CPU


def decoder_layers(model) -> list:
    """The decoder layers of a (PEFT-wrapped) transformers model, bottom first."""
    return [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]


def compile_decoder_layers(model, *, dynamic: bool | None = True, backend: str | None = None) -> int:
    """Compile every decoder layer of ``model`` in place (``nn.Module.compile``); returns how many.

    Idempotent: a layer already compiled is left as it is. Call after the model is in its final form
    (LoRA added, checkpointing set, dequantised or merged), since compiled graphs guard on it.
    """
    import torch
    import torch._dynamo

    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the name moved between torch versions
        if hasattr(cfg, name):
            setattr(cfg, name, max(int(getattr(cfg, name)), RECOMPILE_LIMIT))
    if hasattr(cfg, "accumulated_recompile_limit"):
        cfg.accumulated_recompile_limit = max(int(cfg.accumulated_recompile_limit), 4 * RECOMPILE_LIMIT)
    cfg.suppress_errors = True
    n = 0
    for layer in decoder_layers(model):
        if getattr(layer, "_compiled_call_impl", None) is None:
            layer.compile(dynamic=dynamic, backend=backend or BACKEND)
            n += 1
    return n


def compiled_layers(model) -> int:
    """How many decoder layers of ``model`` run compiled."""
    return sum(getattr(m, "_compiled_call_impl", None) is not None for m in decoder_layers(model))
