"""Regional compilation (``classifier.compiling``): the recipe's choice per card, and compiled decoder layers
computing what eager ones compute on the tiny 4-bit Gemma 2 with LoRA and checkpointing.

The compiled runs use the ``aot_eager`` backend: Dynamo's capture, guards and recompilations and
AOTAutograd's forward/backward split are what the GPU runs through (inductor then only generates the
kernels); inductor's C++ build on this 2-core CPU would take minutes per layer kind.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kagflow.classifier import compiling
from kagflow.classifier.batching import classification_logits, pad_batch
from kagflow.classifier.fit import prepare_lora_model
from kagflow.classifier.memory import LoraShape
from kagflow.classifier.recipe import recipe_for_device

from tiny_gemma import save_random, save_tiny_gemma2


def test_recipe_compiles_training_on_gpus_and_inference_where_attention_is_eager():
    from kagflow.classifier.device import DeviceProfile
    from kagflow.classifier.recipe import recipe_for_profile

    t4, card16, big = recipe_for_device(15.0, (7, 5)), recipe_for_device(15.0, (8, 9)), recipe_for_device(139.8, (9, 0))
    cpu = recipe_for_profile(DeviceProfile(None, 0.0, "cpu"))
    assert t4.compile_layers and card16.compile_layers
    assert big.compile_layers and big.dequantize_for_training  # 1.60x over eager (RESULTS.md, fourth)
    assert not cpu.compile_layers and not cpu.infer_compile_layers  # inductor on 2 CPU cores: minutes
    assert t4.infer_compile_layers and t4.infer_attn_implementation == "eager"
    # flex inference compiles its attention already; its first pass (compile included) is what is measured
    assert not big.infer_compile_layers and big.infer_attn_implementation == "flex_attention"


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    pytest.importorskip("bitsandbytes")
    return save_tiny_gemma2(tmp_path_factory.mktemp("tiny_compile"), num_hidden_layers=3,
                            attn_logit_softcapping=50.0, sliding_window=16)


def _model(ckpt, *, compiled: bool, monkeypatch, backend="aot_eager", **recipe_overrides):
    from peft import LoraConfig, TaskType
    from transformers import BitsAndBytesConfig, Gemma2ForSequenceClassification

    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.float32)
    base = Gemma2ForSequenceClassification.from_pretrained(ckpt, quantization_config=bnb, dtype=torch.float32,
                                                           attn_implementation="eager")
    lc = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "gate_proj"],
                    layers_to_transform=[1, 2], lora_dropout=0.0, task_type=TaskType.SEQ_CLS)
    # the T4 recipe: 4-bit base, checkpointing with the top layer unchecked, and (when asked) compiled layers
    recipe = dataclasses.replace(recipe_for_device(15.0, (7, 5)), **{"dtype": "float32", "uncheckpointed_layers": 1,
                                                                      "compile_layers": compiled, **recipe_overrides})
    monkeypatch.setattr(compiling, "BACKEND", backend)
    torch.manual_seed(1)
    return prepare_lora_model(base, lc, recipe)


def _grads(pm, batch):
    pm.zero_grad(set_to_none=True)
    logits = classification_logits(pm, batch)
    torch.nn.functional.cross_entropy(logits.float(), batch["labels"]).backward()
    return logits.detach(), {n: p.grad.detach().clone() for n, p in pm.named_parameters() if p.requires_grad}


def test_compiled_layers_train_like_eager_ones(tiny_ckpt, monkeypatch):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = _model(tiny_ckpt, compiled=False, monkeypatch=monkeypatch)
    comp = _model(tiny_ckpt, compiled=True, monkeypatch=monkeypatch)
    layers = compiling.decoder_layers(comp)
    assert len(layers) == 3 and compiling.compiled_layers(comp) == 3 and compiling.compiled_layers(eager) == 0
    assert compiling.compile_decoder_layers(comp) == 0  # idempotent
    # names unchanged (no "_orig_mod."): adapters and checkpoints save and load as before
    assert [n for n, _ in comp.named_parameters()] == [n for n, _ in eager.named_parameters()]
    assert [layer.gradient_checkpointing for layer in comp.get_base_model().model.layers] == [True, True, False]
    eager.train(), comp.train()
    g = torch.Generator().manual_seed(5)
    for rows, width in ((3, 11), (5, 29), (2, 7)):  # new shapes: dynamic, no recompilation per width
        widths = torch.randint(3, width, (rows,), generator=g)
        seqs = [torch.randint(1, 256, (int(n),), generator=g).tolist() for n in widths]
        batch = pad_batch(seqs, pad_id=0, labels=[i % 3 for i in range(rows)])
        ref_logits, ref = _grads(eager, batch)
        got_logits, got = _grads(comp, batch)
        torch.testing.assert_close(got_logits, ref_logits, rtol=1e-5, atol=1e-5)
        assert ref.keys() == got.keys() and len(ref) == 2 * 4 * 2 + 1  # LoRA A/B of 4 modules x 2 layers + head
        for n in ref:
            torch.testing.assert_close(got[n], ref[n], rtol=1e-4, atol=1e-6, msg=n)
    # it really ran compiled (suppress_errors would otherwise hide a fallback to eager)
    assert counters["stats"]["unique_graphs"] >= 2
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_a_failing_compiler_falls_back_to_eager_with_one_warning(tiny_ckpt, monkeypatch):
    def broken(gm, example_inputs):
        raise RuntimeError("no Triton for this card")

    torch._dynamo.reset()
    eager = _model(tiny_ckpt, compiled=False, monkeypatch=monkeypatch)
    monkeypatch.setattr(compiling, "BACKEND", broken)
    torch.manual_seed(1)
    comp = _model(tiny_ckpt, compiled=False, monkeypatch=monkeypatch)
    monkeypatch.setattr(compiling, "BACKEND", broken)
    assert compiling.compile_decoder_layers(comp) == 3
    comp.train(), eager.train()
    batch = pad_batch([[5, 6, 7, 8], [9, 10]], pad_id=0, labels=[0, 2])
    with pytest.warns(RuntimeWarning, match="compiling the decoder layers failed .*no Triton for this card.*run eager"):
        got_logits, got = _grads(comp, batch)
    assert compiling.compiled_layers(comp) == 0  # all of them, after the first failure
    ref_logits, ref = _grads(eager, batch)
    torch.testing.assert_close(got_logits, ref_logits)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], msg=n)


def test_falling_back_to_eager_checkpoints_the_layers_eager_memory_needs(tiny_ckpt, monkeypatch):
    """The unchecked-layer count is sized for compiled layers (0.75 GiB each at 4,096 tokens); eager ones keep
    1.2 GiB, so a compiler failure on a T4 would leave 7-8 unchecked eager layers in 15 GiB. The fallback
    re-checkpoints down to the recipe's ``uncheckpointed_layers_eager`` before the failed layer runs again, says
    so in its one warning, and the gradients stay the eager model's."""
    def broken(gm, example_inputs):
        raise RuntimeError("no Triton for this card")

    torch._dynamo.reset()
    eager = _model(tiny_ckpt, compiled=False, monkeypatch=monkeypatch, uncheckpointed_layers=2)
    # the T4 recipe as prepare_lora_model compiles it, with a compiler that fails
    comp = _model(tiny_ckpt, compiled=True, monkeypatch=monkeypatch, backend=broken, uncheckpointed_layers=2,
                  uncheckpointed_layers_eager=0)
    assert compiling.compiled_layers(comp) == 3
    flags = [layer.gradient_checkpointing for layer in comp.get_base_model().model.layers]
    assert flags == [True, False, False]
    comp.train(), eager.train()
    batch = pad_batch([[5, 6, 7, 8], [9, 10]], pad_id=0, labels=[0, 2])
    with pytest.warns(RuntimeWarning, match=r"run eager; 0 instead of 2 top layers keep their activations") as rec:
        got_logits, got = _grads(comp, batch)
    assert len([w for w in rec if "compiling the decoder layers failed" in str(w.message)]) == 1
    assert [layer.gradient_checkpointing for layer in comp.get_base_model().model.layers] == [True, True, True]
    ref_logits, ref = _grads(eager, batch)
    torch.testing.assert_close(got_logits, ref_logits)
    for n in ref:
        torch.testing.assert_close(got[n], ref[n], msg=n)


def test_the_recipe_sizes_unchecked_layers_for_eager_too():
    """Eager layers keep more than compiled ones: the fallback's count is never above the compiled count, and on a
    15 GiB card it is the count measured safe uncompiled (4: 11.82 GiB peak, bench/RESULTS.md third measurement)."""
    for mem, cap in ((14.7, (7, 5)), (15.0, (7, 5)), (15.0, (8, 9)), (23.6, (8, 9)), (40.0, (8, 0)), (79.0, (9, 0))):
        r = recipe_for_device(mem, cap)
        assert 0 <= r.uncheckpointed_layers_eager <= r.uncheckpointed_layers, (mem, cap)
    seed_lora = LoraShape(16, ("q_proj", "k_proj", "v_proj"), 16, 0.05)
    t4 = recipe_for_device(15.0, (7, 5), lora=seed_lora)
    assert (t4.uncheckpointed_layers, t4.uncheckpointed_layers_eager) == (8, 4)
    # the shipped r64 on all seven projections keeps fewer (measured 12.05 GiB peak: bench/RESULTS.md, LoRA shapes)
    shipped = recipe_for_device(15.0, (7, 5))
    assert (shipped.uncheckpointed_layers, shipped.uncheckpointed_layers_eager) == (3, 2)
    assert recipe_for_device(79.0, (9, 0)).uncheckpointed_layers_eager == 0  # nothing checkpointed there


def test_checkpoint_early_stop_passes_through_compiled_layers(tiny_ckpt, monkeypatch):
    """Non-reentrant checkpointing recomputes a checkpointed layer in the backward and may stop it early by
    raising ``_StopRecomputationError`` from its saved-tensor hook, inside the layer's compiled call (inductor's
    graphs on the GPU did, on every 16 GB and T4 training run: bench/RESULTS.md, fourth measurement; on the
    CPU, aot_eager's graphs do not reach it). That is control flow, not a compiler failure: it must reach
    checkpoint's handler with the layers still compiled and no fallback warning. The first version caught it,
    turned compilation off, re-ran the layer eager inside the stopped recomputation and the backward crashed
    ("Unexpected state: target_frame.early_stop is set")."""
    import warnings

    from torch.utils.checkpoint import _StopRecomputationError

    torch._dynamo.reset()
    comp = _model(tiny_ckpt, compiled=True, monkeypatch=monkeypatch)
    layers = compiling.decoder_layers(comp)
    eager_runs = []
    monkeypatch.setattr(layers[1], "_call_impl", lambda *a, **k: eager_runs.append(1))

    def recomputation_stopped(*args, **kwargs):  # what the compiled call raises when checkpoint stops it
        raise _StopRecomputationError

    call = compiling._falling_back(layers[1], recomputation_stopped, layers)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(_StopRecomputationError):
            call(torch.zeros(1, 2, 64))
    assert not eager_runs and compiling.compiled_layers(comp) == 3
    # a compiler error still falls back (all layers), as before
    with pytest.warns(RuntimeWarning, match="compiling the decoder layers failed"):
        compiling._falling_back(layers[1], lambda *a, **k: 1 / 0, layers)(torch.zeros(1, 2, 64))
    assert eager_runs == [1] and compiling.compiled_layers(comp) == 0


def test_flex_inference_keeps_recompilations_static():
    """A second GPU's model copy recompiles flex attention (new device guards); with automatic dynamic shapes
    that recompilation went dynamic and flex's dynamic lowering failed on the H200s (RESULTS.md)."""
    import torch._dynamo

    from kagflow.classifier.predict import prepare_for_inference

    config = torch._dynamo.config
    before = config.automatic_dynamic_shapes  # restored by assignment: pytest's monkeypatch deletes torch config keys
    try:
        config.automatic_dynamic_shapes = True
        model = torch.nn.Linear(2, 2)
        model.config = type("C", (), {"_attn_implementation": "eager"})()
        # nothing but the attention: no dequantising, no dense layers, no pooling, no compiled layers
        bare = dataclasses.replace(recipe_for_device(15.0, (7, 5)), dequantize_for_inference=False,
                                   flatten_absmax=False, infer_model_max_gib=None, infer_pool_top_layer=False,
                                   infer_compile_layers=False)
        prepare_for_inference(model, dataclasses.replace(bare, infer_attn_implementation="eager"))
        assert config.automatic_dynamic_shapes  # padded eager batches: untouched
        prepare_for_inference(model, dataclasses.replace(bare, infer_attn_implementation="flex_attention"))
        assert not config.automatic_dynamic_shapes
        graphs = []

        def recording(gm, example_inputs):
            graphs.append([tuple(x.shape) for x in example_inputs if isinstance(x, torch.Tensor)])
            return gm.forward

        torch._dynamo.reset()
        f = torch.compile(lambda x: (x * 2).sum(), backend=recording)
        f(torch.ones(4)), f(torch.ones(6))
        assert graphs == [[(4,)], [(6,)]]  # recompiled static, not with a symbolic size
    finally:
        config.automatic_dynamic_shapes = before
        torch._dynamo.reset()


def test_gemma3_big_card_recipe_trains_like_the_cpu_recipe(tmp_path, monkeypatch):
    """The big-card path for a Gemma 3 (4-bit base dequantised, compiled decoder layers) computes the logits and the
    LoRA / head gradients the CPU recipe's eager 4-bit model computes, on right-padded rows of several widths with
    the sliding-window mask in play (window 4 < the rows): Gemma 3's layers differ in their mask and rotary base
    (sliding vs full attention) while sharing one compiled graph. The 270M stand-in stayed at chance on an H200
    (bench/RESULTS.md, the knowledge check's GPU run) while learning on the CPU: this holds on the CPU for every
    field of that recipe (bench/knowledge_recipe_bisect.py), so that failure is not here."""
    pytest.importorskip("bitsandbytes")
    from peft import LoraConfig, TaskType
    from transformers import BitsAndBytesConfig, Gemma3TextConfig, Gemma3TextForSequenceClassification

    cfg = Gemma3TextConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                           sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                           num_labels=3, pad_token_id=0)
    save_random(tmp_path, Gemma3TextForSequenceClassification, cfg)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=torch.float32)
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    cpu, big = recipe_for_device(139.8, (9, 0)), recipe_for_device(139.8, (9, 0))
    cpu = dataclasses.replace(cpu, dtype="float32", dequantize_for_training=False, compile_layers=False,
                              train_attn_implementation="sdpa", gradient_checkpointing=False)
    big = dataclasses.replace(big, dtype="float32", train_attn_implementation="sdpa")  # fp32: exact comparison
    assert big.dequantize_for_training and big.compile_layers and not big.gradient_checkpointing
    models = []
    for recipe in (cpu, big):
        base = Gemma3TextForSequenceClassification.from_pretrained(tmp_path, quantization_config=bnb,
                                                                   dtype=torch.float32, attn_implementation="sdpa")
        lc = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                        lora_dropout=0.0, task_type=TaskType.SEQ_CLS)
        torch.manual_seed(1)
        pm = prepare_lora_model(base, lc, recipe)
        g = torch.Generator().manual_seed(2)
        with torch.no_grad():  # LoRA B starts at 0: give it values so the adapters are in the function
            for n, p in sorted(pm.named_parameters()):
                if "lora_B" in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        pm.train()
        models.append(pm)
    eager, comp = models
    assert compiling.compiled_layers(comp) == 3 and compiling.compiled_layers(eager) == 0
    g = torch.Generator().manual_seed(5)
    for rows, width in ((3, 11), (5, 17), (2, 9)):
        widths = torch.randint(3, width, (rows,), generator=g)
        seqs = [torch.randint(1, 256, (int(n),), generator=g).tolist() for n in widths]
        batch = pad_batch(seqs, pad_id=0, pad_to_multiple_of=8, labels=[i % 2 for i in range(rows)])
        ref_logits, ref = _grads(eager, batch)
        got_logits, got = _grads(comp, batch)
        torch.testing.assert_close(got_logits, ref_logits, rtol=1e-4, atol=1e-4)
        assert ref.keys() == got.keys() and len(ref) == 2 * 5 * 3 + 1
        for n in ref:
            torch.testing.assert_close(got[n], ref[n], rtol=1e-3, atol=1e-5, msg=n)
