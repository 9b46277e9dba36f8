"""Regional compilation: each decoder layer through ``torch.compile`` (inductor), the rest of the model eager.

What it buys (``bench/RESULTS.md``): the layer's many small elementwise kernels (Gemma 2's four fp32
RMSNorms, RoPE, the attention softcap + mask + softmax, GeGLU, LoRA dropout and scaling, dtype casts) fuse
into a few, and each layer launches far fewer kernels. The layers share their code, so with
``inline_inbuilt_nn_modules`` (torch >= 2.5: parameters are graph inputs, not constants) one compiled graph
serves every layer of the same kind; the kinds are: with or without LoRA, checkpointed or not, input
requiring grad or not, and the size-1 specialisation of dynamic shapes (rows and width change per batch),
so a handful of compilations in all. The compiled call sits in the module's own slot, as
``nn.Module.compile`` puts it: parameter names stay (no ``_orig_mod.``), adapters and checkpoints save as before.

A layer whose compilation fails (e.g. a Triton kernel a card cannot build) runs eager from then on, all
layers with it, with one warning naming the error, instead of failing a Kaggle run that the CPU rehearsal
could not exercise. torch's global ``suppress_errors`` is left alone: it would also hide a failure of flex
attention's own compilation, whose eager fallback is 5x slower (bench/RESULTS.md, third measurement).
"""

from __future__ import annotations

import warnings

# variants per layer code: (LoRA or not) x (checkpointed or not) x (input requires grad or not) x (a dimension
# of size 1 or not) x (device, for one model per GPU): room for all of them (torch's default is 8)
RECOMPILE_LIMIT = 64
BACKEND = "inductor"  # the tests swap in "aot_eager": the same capture and guards, no C++ build on the CPU


def decoder_layers(model) -> list:
    """The decoder layers of a (PEFT-wrapped) transformers model, bottom first."""
    return [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]


def compile_decoder_layers(model, *, dynamic: bool | None = True, backend: str | None = None,
                           on_fallback=None) -> int:
    """Compile every decoder layer of ``model`` in place (as ``nn.Module.compile`` does, with the fallback
    below); returns how many. ``on_fallback()``, if given, runs once when the layers fall back to eager (before
    the failed layer runs again) and returns a few words for the warning: what it changed for eager layers.

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
    layers = [m for m in decoder_layers(model) if getattr(m, "_compiled_call_impl", None) is None]
    for layer in layers:
        layer._compiled_call_impl = _falling_back(layer, torch.compile(layer._call_impl, dynamic=dynamic,
                                                                       backend=backend or BACKEND), layers,
                                                  on_fallback)
    return len(layers)


def _falling_back(layer, compiled, family, on_fallback=None):
    """``compiled`` (the layer's compiled call), which on a compilation error turns compilation off for every
    layer of ``family`` and runs the layer eager. An error that is not the compiler's repeats in eager and
    surfaces from there; running out of memory is raised as it is, and so is non-reentrant checkpointing's
    early-stop signal: its recomputation of a checkpointed layer raises ``_StopRecomputationError`` from inside
    the layer's call once it has what the backward needs (bench/RESULTS.md, fourth measurement: caught here, it
    turned compilation off and crashed the backward on the 16 GB and T4 recipes)."""
    import torch

    passthrough = (torch.OutOfMemoryError, *_checkpoint_signals())

    def call(*args, **kwargs):
        try:
            return compiled(*args, **kwargs)
        except passthrough:
            raise
        except Exception as exc:  # noqa: BLE001 - a compiler failure of any kind: eager computes the same
            root = exc
            while getattr(root, "inner_exception", None) or root.__cause__:  # the compiler's own error
                root = getattr(root, "inner_exception", None) or root.__cause__
            first = (str(root).strip().splitlines() or [""])[0][:300]
            for m in family:
                m._compiled_call_impl = None
            changed = on_fallback() if on_fallback is not None else None
            warnings.warn(f"kagflow: compiling the decoder layers failed ({type(root).__name__}: {first}); "
                          f"they run eager{'; ' + changed if changed else ''}", RuntimeWarning, stacklevel=2)
            return layer._call_impl(*args, **kwargs)

    return call


def _checkpoint_signals() -> tuple:
    """The exceptions torch.utils.checkpoint raises through the checkpointed function as control flow."""
    import torch.utils.checkpoint as ckpt

    return tuple(e for e in (getattr(ckpt, "_StopRecomputationError", None),) if isinstance(e, type))


def static_shapes() -> None:
    """Recompile with static shapes instead of turning dimensions dynamic (``automatic_dynamic_shapes``).

    For inference on packed rows, every flex attention call has the same shape; a recompilation (a second
    GPU's model copy: new device guards) must not mark it dynamic: flex attention's dynamic-shape lowering
    failed on the H200s ("unbacked_bindings", bench/RESULTS.md third measurement). The compiled decoder layers
    ask for dynamic shapes explicitly and are unaffected."""
    import torch._dynamo

    torch._dynamo.config.automatic_dynamic_shapes = False


def compiled_layers(model) -> int:
    """How many decoder layers of ``model`` run compiled."""
    return sum(getattr(m, "_compiled_call_impl", None) is not None for m in decoder_layers(model))
