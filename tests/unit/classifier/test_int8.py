"""8-bit inference (``[infer] quantization = "8bit"``): weight-only int8 (``dequant.Int8Linear``) by default, whole
layers made dense within the recipe's memory for the model, bitsandbytes' LLM.int8 behind ``int8_kernel =
"llm_int8"``; on the tiny 4-bit Gemma 2 with a LoRA, compiled layers and the pooled top layer included."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kagflow.classifier import dequant
from kagflow.classifier.batching import pad_batch
from kagflow.classifier.compiling import decoder_layers
from kagflow.classifier.dequant import Int8Linear, dense_cost_bytes, densify_layers, int8_layers
from kagflow.classifier.pooled import PooledOnly
from kagflow.classifier.predict import _bytes_on_device, predict_logits, prepare_for_inference, relative_error
from kagflow.classifier.recipe import recipe_for_device

from tiny_gemma import random_lora, save_tiny_gemma2

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_int8_linear_is_row_wise_absmax_int8_and_computes_the_linear():
    """One byte per weight plus a float32 scale per row, bitsandbytes' int8_vectorwise_quant CB / SCB exactly; each
    weight within half a step of its row; the output within int8 rounding of the fp64 linear, in every activation
    dtype, and no further from it than LLM.int8's (on the CPU bitsandbytes dequantises LLM.int8's weight too; on a
    GPU it also quantises the activations, further off)."""
    import bitsandbytes as bnb

    g = torch.Generator().manual_seed(0)
    w = (torch.randn(96, 128, generator=g) * torch.logspace(-3, 0, 96)[:, None]).half().float()  # fp16-exact
    w[7] = 0  # a zero row
    bias = torch.randn(96, generator=g)
    lin = Int8Linear.quantize(w, bias)
    assert lin.weight.dtype == torch.int8 and lin.scale.dtype == torch.float32
    cb, scb, _ = bnb.functional.int8_vectorwise_quant(w.half())
    assert torch.equal(lin.weight, cb) and torch.allclose(lin.scale * 127, scb.float(), rtol=1e-6)
    state = [*lin.parameters(), *lin.buffers()]
    int8_bytes = sum(t.numel() * t.element_size() for t in state if t is not lin.bias)
    assert int8_bytes == w.numel() + 4 * w.shape[0]  # 1 byte per weight: no full-precision copy kept
    deq = lin.dequantized(torch.float32)
    assert ((deq - w).abs() <= lin.scale[:, None] / 2 * (1 + 1e-5)).all() and not deq[7].any()
    x = torch.randn(4, 7, 128, generator=g)
    x[..., 3] *= 10  # an outlier feature, LLM.int8's case
    ref = torch.nn.functional.linear(x.double(), w.double(), bias.double())
    llm = dequant._int8_linear(w, bias, 6.0, "cpu")
    for dtype, tol in ((torch.float32, 1e-2), (torch.float16, 1e-2), (torch.bfloat16, 2e-2)):
        got = lin(x.to(dtype))
        assert got.dtype == dtype
        err = relative_error(got, ref)
        assert err < tol, (dtype, err)
        assert err <= relative_error(llm(x.to(dtype)), ref) * (1 + 1e-4), dtype  # the same int8 weights
    with pytest.raises(ValueError, match="int8"):
        Int8Linear(w, lin.scale)  # a float weight is not int8


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    pytest.importorskip("bitsandbytes")
    return save_tiny_gemma2(tmp_path_factory.mktemp("tiny_int8"), num_hidden_layers=3)


def _peft(ckpt):
    """The tiny 4-bit Gemma 2 (fp32 compute), LoRA on all seven projections of layer 1 with random B and head."""
    from transformers import BitsAndBytesConfig, Gemma2ForSequenceClassification

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.float32)
    base = Gemma2ForSequenceClassification.from_pretrained(ckpt, quantization_config=bnb, dtype=torch.float32,
                                                           attn_implementation="eager")
    return random_lora(base, ALL_LINEAR)


def _seqs(seed: int = 5, lengths=(17, 9, 30, 4)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 256, (n,), generator=g).tolist() for n in lengths]


def _recipe(**over):
    """The T4 recipe on the CPU: fp32, eager layers unless asked."""
    return replace(recipe_for_device(15.0, (7, 5)), **{"dtype": "float32", "infer_compile_layers": False, **over})


def _kinds(model) -> list[set[str]]:
    """The linear kinds of each decoder layer: int8 (weight-only), llm_int8, 4bit, dense."""
    import bitsandbytes as bnb

    def kind(m):
        return "int8" if isinstance(m, Int8Linear) else "llm_int8" if isinstance(m, bnb.nn.Linear8bitLt) else \
            "4bit" if dequant._is_linear4bit(m) else "dense" if type(m) is torch.nn.Linear else None

    return [{kind(m) for m in layer.modules()} - {None} for layer in decoder_layers(model)]


def test_8bit_is_weight_only_int8_with_layers_dense_within_the_model_memory(tiny_ckpt):
    """quantization = "8bit", int8_kernel left at its default: no 4-bit and no LLM.int8 linear is left, the LoRA
    layer is dense (fp32 here, the recipe's dtype) where the budget pays every layer's int8 bytes and its extra ones,
    the others int8 at ~1 byte per weight, the top layer pooled; the probabilities stay the 4-bit path's."""
    from peft.tuners.lora import LoraLayer

    seqs = _seqs()
    four = prepare_for_inference(_peft(tiny_ckpt), _recipe(infer_model_max_gib=None))  # 4-bit, LoRA unmerged
    ref = predict_logits(four, seqs, max_tokens=40, max_rows=2).softmax(-1)
    pm = _peft(tiny_ckpt)
    layers = decoder_layers(pm)
    int8_cost = [sum(lin.in_features * lin.out_features + 4 * lin.out_features
                     - lin.weight.numel() * lin.weight.element_size()
                     for _, m in dequant._layer_linears(layer) for lin in [getattr(m, "get_base_layer", lambda: m)()])
                 for layer in layers]
    dense_over_int8 = [dense_cost_bytes(layer, torch.float32) - c for layer, c in zip(layers, int8_cost)]
    budget = sum(int8_cost) + dense_over_int8[1]
    limit = (_bytes_on_device(pm) + budget) / 2**30
    model = prepare_for_inference(pm, _recipe(infer_model_max_gib=limit), quantization="8bit")
    assert _kinds(model) == [{"int8"}, {"dense"}, {"int8"}]
    assert not any(isinstance(m, LoraLayer) for m in model.modules())  # merged into both kinds
    assert isinstance(decoder_layers(model)[-1].mlp, PooledOnly)
    weights = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, Int8Linear))
    held = sum(t.numel() * t.element_size() for m in model.modules() if isinstance(m, Int8Linear)
               for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)))
    assert weights == 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) and held < 1.1 * weights  # layers 0 and 2
    got = predict_logits(model, seqs, max_tokens=40, max_rows=2).softmax(-1)
    assert (got - ref).abs().max() < 2e-2, (got, ref)

    # a byte less and the LoRA layer stays int8 too (top down among the LoRA layers first, as in 4-bit)
    pm = _peft(tiny_ckpt)
    assert densify_layers(pm, budget - 1, torch.float32, others="int8") == []
    assert densify_layers(pm, budget + dense_over_int8[2], torch.float32, others="int8") == [1, 2]
    with pytest.raises(ValueError, match="others"):
        densify_layers(pm, 0, torch.float32, others="8bit")


@pytest.mark.parametrize("kernel", ["weight_only", "llm_int8"])
def test_replaced_4bit_weights_are_freed_as_the_layers_convert(tiny_ckpt, kernel):
    """A bitsandbytes 4-bit weight points back at its module, so a replaced linear is a reference cycle: with
    Python's automatic collection off, every 4-bit weight that densify_layers or int8_layers replaced is gone by the
    time they return (without the collection after each layer, a 9B's 4-bit weights stayed on the GPU beside its
    new int8 ones: out of memory at 14.54 GiB in a 15 GiB card)."""
    import gc
    import weakref

    pm = _peft(tiny_ckpt)
    weights = [weakref.ref(getattr(m, "get_base_layer", lambda: m)().weight)
               for layer in decoder_layers(pm) for _, m in dequant._layer_linears(layer)]
    assert len(weights) == 3 * 7
    gc.collect()
    gc.disable()
    try:
        if kernel == "weight_only":
            layer1 = decoder_layers(pm)[1]
            assert densify_layers(pm, sum(dense_cost_bytes(layer, torch.float32) for layer in [layer1]),
                                  torch.float32) == [1]
            del layer1
        assert int8_layers(pm, kernel=kernel) == (14 if kernel == "weight_only" else 21)
        alive = sum(w() is not None for w in weights)
    finally:
        gc.enable()
    assert alive == 0, f"{alive} of the replaced 4-bit weights still held"


def test_llm_int8_is_the_opt_in_and_an_unknown_kernel_is_refused(tiny_ckpt):
    """int8_kernel = "llm_int8": bitsandbytes' Linear8bitLt in every layer, none dense whatever the memory (what the
    winners ran); a kernel that is neither is refused with the key and the valid values."""
    model = prepare_for_inference(_peft(tiny_ckpt), _recipe(infer_model_max_gib=1000.0), quantization="8bit",
                                  int8_kernel="llm_int8", int8_threshold=6.0)
    assert _kinds(model) == [{"llm_int8"}] * 3
    assert all(m.state.threshold == 6.0 for m in model.modules() if type(m).__name__ == "Linear8bitLt")
    with pytest.raises(ValueError, match=r"int8_kernel = 'int4' is not one of weight_only, llm_int8"):
        int8_layers(_peft(tiny_ckpt), kernel="int4")


def test_weight_only_int8_layers_compile_as_the_dense_ones_do(tiny_ckpt, monkeypatch):
    """prepare_for_inference with the recipe's compiled layers and pooled top layer: the int8 weights are graph
    inputs (each graph takes its layer's seven), not constants baked into a graph per layer: no more graphs than the
    4-bit path with every layer dense compiles, and the logits are eager's."""
    import torch._dynamo

    from kagflow.classifier import compiling

    batch = pad_batch(_seqs(1, (17, 9, 30)), pad_to_multiple_of=8)

    def run(memory, **prepare):
        with torch.no_grad():
            eager = prepare_for_inference(_peft(tiny_ckpt), _recipe(infer_model_max_gib=memory), **prepare)(**batch)
        eager = eager.logits
        torch._dynamo.reset()
        int8_inputs = []

        def counting(gm, example_inputs):
            int8_inputs.append(sum(isinstance(t, torch.Tensor) and t.dtype == torch.int8 for t in example_inputs))
            return gm.forward

        monkeypatch.setattr(compiling, "BACKEND", counting)
        model = prepare_for_inference(_peft(tiny_ckpt), _recipe(infer_model_max_gib=memory, infer_compile_layers=True),
                                      **prepare)
        assert compiling.compiled_layers(model) == 3 and isinstance(decoder_layers(model)[-1].mlp, PooledOnly)
        with torch.no_grad():
            assert relative_error(model(**batch).logits, eager) < 1e-5
        torch._dynamo.reset()
        return int8_inputs, _kinds(model)

    int8, kinds = run(None, quantization="8bit")  # no memory for dense layers
    assert kinds == [{"int8"}] * 3
    dense, kinds = run(11.0, quantization="4bit")  # the T4 recipe's 11 GiB: the tiny model all dense
    assert kinds == [{"dense"}] * 3
    assert int8 and all(n == 7 for n in int8) and len(int8) <= len(dense), (int8, dense)
