"""The top decoder layer computing the pooled token only (``classifier.pooled``): the logits of the whole layer
for every family kagflow loads and either padding side, the work actually skipped, one compiled graph per batch
shape kind, and ``prepare_for_inference`` installing it for padded batches only."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from kagflow.classifier.batching import pad_batch
from kagflow.classifier.compiling import compile_decoder_layers, decoder_layers
from kagflow.classifier.pooled import PooledOnly, last_real_token, pool_top_layer
from kagflow.classifier.predict import predict_logits, prepare_for_inference, relative_error
from kagflow.classifier.recipe import recipe_for_device

SHAPE = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
             num_key_value_heads=1, head_dim=32, num_labels=3, pad_token_id=0)
FAMILY = {"gemma2": dict(query_pre_attn_scalar=32, attn_logit_softcapping=50.0, sliding_window=8),
          "llama": {}, "qwen3": {}}


def _classifier(family: str, seed: int = 0):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    cfg = AutoConfig.for_model(family, **SHAPE, **FAMILY[family])
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def _rows(seed: int = 5, lengths=(17, 9, 30, 4, 23)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 256, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("family", sorted(FAMILY))
@pytest.mark.parametrize("side", ["right", "left"])
def test_the_pooled_top_layer_gives_the_whole_layers_logits(family, side):
    model = _classifier(family)
    batch = pad_batch(_rows(), pad_to_multiple_of=8, padding_side=side)
    with torch.no_grad():
        ref = model(**batch).logits
    assert pool_top_layer(model)
    top = decoder_layers(model)[-1]
    seen = []
    top.mlp.inner.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        got = model(**batch).logits
    assert relative_error(got, ref) < 1e-5
    assert seen == [(5, 1, 64)]  # one token per row reached the MLP: the pooled one
    assert [type(top.get_submodule(n)) for n in ("self_attn.q_proj", "self_attn.o_proj", "mlp")] == [PooledOnly] * 3
    assert not any(isinstance(m, PooledOnly) for layer in decoder_layers(model)[:-1] for m in layer.modules())
    assert pool_top_layer(model)  # idempotent: not wrapped twice
    assert not isinstance(top.mlp.inner, PooledOnly)


def test_pooled_positions_follow_the_score_heads_rule_and_are_cleared_after_each_call():
    ids = torch.tensor([[5, 6, 7, 0, 0], [0, 0, 5, 6, 0], [5, 6, 7, 8, 9]])
    assert last_real_token(ids, 0).tolist() == [2, 3, 4]
    assert last_real_token(ids, None).tolist() == [4, 4, 4]  # no pad id: the last token, as transformers
    model = _classifier("gemma2")
    pool_top_layer(model)
    mlp = decoder_layers(model)[-1].mlp
    with torch.no_grad():
        model(input_ids=ids, attention_mask=(ids != 0).long())
        assert mlp.positions.rows is None  # a layer called any other way computes every token
        x = torch.randn(3, 5, 64)
        assert torch.equal(mlp(x), mlp.inner(x))


def test_the_pooled_layer_compiles_no_more_graphs_than_the_whole_one():
    """Inside a compiled layer the pooled positions are a graph input: batches of other shapes and positions
    reuse the graphs (a constant would recompile per batch), and the logits stay the whole layer's."""
    import torch._dynamo

    batches = [pad_batch(_rows(s, lengths), pad_to_multiple_of=8)
               for s, lengths in ((1, (17, 9, 30, 4)), (2, (12, 40, 3)), (3, (25, 25, 7, 19, 2)), (4, (8, 16)))]

    def run(pooled: bool):
        torch._dynamo.reset()
        graphs = []

        def counting(gm, example_inputs):
            graphs.append(gm)
            return gm.forward

        model = _classifier("gemma2")
        if pooled:
            pool_top_layer(model)
        compile_decoder_layers(model, backend=counting)
        with torch.no_grad():
            logits = [model(**b).logits for b in batches]
        return logits, len(graphs)

    whole, n_whole = run(False)
    pooled, n_pooled = run(True)
    torch._dynamo.reset()
    assert n_pooled <= n_whole + 2  # the top layer's own graph kinds, not one per batch
    for got, ref in zip(pooled, whole):
        assert relative_error(got, ref) < 1e-5


def test_prepare_for_inference_pools_padded_batches_only():
    t4, big = recipe_for_device(15.0, (7, 5)), recipe_for_device(139.8, (9, 0))
    assert t4.infer_pool_top_layer and not big.infer_pool_top_layer  # flex: packed rows pool several tokens
    model = _classifier("gemma2")
    seqs = _rows()
    ref = predict_logits(model, seqs, max_tokens=64, max_rows=2)
    recipe = replace(t4, dtype="float32", infer_model_max_gib=None, infer_compile_layers=False, flatten_absmax=False)
    model = prepare_for_inference(model, recipe)
    assert isinstance(decoder_layers(model)[-1].mlp, PooledOnly)
    assert relative_error(predict_logits(model, seqs, max_tokens=64, max_rows=2), ref) < 1e-5
    plain = prepare_for_inference(_classifier("gemma2"), replace(recipe, infer_pool_top_layer=False))
    assert not any(isinstance(m, PooledOnly) for m in plain.modules())
