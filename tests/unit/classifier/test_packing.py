"""Packed rows + flex attention (the recipe's path on sm80+ GPUs) compute what padded batches compute.

The equivalence tests run flex attention on the CPU on a tiny fp32 Gemma 2 with LoRA (logits, the training
gradient, a whole fit_lora run, a sliding window shorter than the rows). Uncompiled: flex attention's own
reference path applies the same block mask and softcap ``score_mod`` that the compiled GPU kernel does
(inductor's CPU flex template miscompiles this tiny shape, and compiling costs ~30 s per test here).
"""

from __future__ import annotations

import dataclasses
import random

import pytest
import torch

from kagflow.classifier.batching import classification_logits, deal_rows, pad_batch, plan_steps
from kagflow.classifier.fit import fit_lora
from kagflow.classifier.packing import (
    PackedBatch,
    attention_masks,
    bucket_width,
    pack_rows,
    packed_batch,
    sequence_classifier,
    uses_packing,
)
from kagflow.classifier.predict import predict_logits
from kagflow.classifier.recipe import recipe_for_device, set_attn_implementation


@pytest.mark.parametrize("seed", range(5))
def test_pack_rows_covers_every_row_once_within_capacity(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 900) for _ in range(rng.randint(1, 80))] + [1500]
    bins = pack_rows(lengths, 1024)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(len(lengths)))
    for b in bins:
        assert sum(lengths[i] for i in b) <= 1024 or len(b) == 1  # only an oversized row stands alone
    assert [lengths.index(1500)] in bins
    # first fit decreasing: no two bins could have been merged
    totals = sorted(sum(lengths[i] for i in b) for b in bins)
    assert len(totals) < 2 or totals[0] + totals[1] > 1024
    assert pack_rows(lengths, 1024) == bins  # deterministic


def test_bucket_width():
    assert bucket_width(1, 512) == 512 and bucket_width(512, 512) == 512 and bucket_width(513, 512) == 1024
    assert bucket_width(300, 128, 16384) == 16384 and bucket_width(17000, 128, 16384) == 17024


def test_deal_rows_balances_tokens_and_deals_each_row_once():
    lengths = [100, 90, 80, 70, 60, 50]
    parts = deal_rows([0, 1, 2, 3, 4, 5], lengths, 2)
    assert sorted(parts[0] + parts[1]) == [0, 1, 2, 3, 4, 5]
    loads = [sum(lengths[i] for i in p) for p in parts]
    assert abs(loads[0] - loads[1]) <= 20  # round-robin dealing would give 240 vs 210
    assert deal_rows([5, 4, 3], lengths, 4)[3] == []  # more processes than rows: one gets none


def test_packed_batch_layout():
    pb = packed_batch([[5, 6, 7], [8, 9]], width=8, pad_id=0, labels=[2, 0])
    assert pb.input_ids.tolist() == [[5, 6, 7, 8, 9, 0, 0, 0]]
    assert pb.position_ids.tolist() == [[0, 1, 2, 0, 1, 0, 1, 2]]
    assert pb.doc_ids.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert pb.ends.tolist() == [2, 4] and pb.labels.tolist() == [2, 0] and pb.rows == 2
    with pytest.raises(ValueError, match="do not fit"):
        packed_batch([[1] * 5, [1] * 4], width=8)


def test_recipe_packs_only_where_training_runs_flex(monkeypatch):
    from kagflow.classifier import device as device_mod
    from kagflow.classifier import train
    from kagflow.classifier.config import TrainConfig
    from kagflow.classifier.model import ModelTraits

    big, card16, t4 = (recipe_for_device(79.0, (9, 0)), recipe_for_device(15.0, (8, 9)),
                       recipe_for_device(15.0, (7, 5)))
    for r in (big, card16, t4):  # training: eager on padded batches unless asked (RESULTS: flex trained no faster)
        assert not r.pack and r.train_attn_implementation == "eager"
    assert big.infer_attn_implementation == card16.infer_attn_implementation == "flex_attention"
    assert t4.infer_attn_implementation == "eager"  # a T4 infers eager, padded
    llama = ModelTraits(model_type="llama", softcapping=False, sliding_window=None, num_layers=2)
    assert not recipe_for_device(79.0, (9, 0), llama).pack
    # [train] attn_implementation = "flex_attention" opts in: packed rows
    card16 = device_mod.DeviceProfile((8, 9), 15.0, "fake")
    monkeypatch.setattr(device_mod, "device_profile", lambda device=None: card16)
    flex = train.training_recipe(TrainConfig(attn_implementation="flex_attention"))
    eager = train.training_recipe(TrainConfig())
    assert flex.pack and flex.train_attn_implementation == "flex_attention"
    assert not eager.pack and eager.train_attn_implementation == "eager"


# ------------------------------------------------------------------ equivalence on a tiny Gemma 2


def _tiny_gemma2(sliding_window=4096):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import Gemma2Config, Gemma2ForSequenceClassification

    cfg = Gemma2Config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                       num_labels=3, pad_token_id=0, sliding_window=sliding_window, attn_logit_softcapping=5.0)
    torch.manual_seed(0)
    model = Gemma2ForSequenceClassification(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)  # large enough that the softcap (5.0) bites
    lc = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                    task_type=TaskType.SEQ_CLS)
    pm = get_peft_model(model, lc)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    return pm


def _seqs(lengths, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, 256, (n,), generator=g).tolist() for n in lengths]


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _dense_flex(q, k, v, *, score_mod=None, block_mask=None, scale=None, enable_gqa=False, **_):
    """flex_attention written out densely (differentiable on the CPU, where flex has no backward): the
    block mask's ``mask_mod`` and the ``score_mod`` applied to the full score matrix."""
    if enable_gqa and k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
    scores = (q @ k.transpose(-1, -2)) * (scale if scale is not None else q.shape[-1] ** -0.5)
    qi = torch.arange(q.shape[2])[:, None]
    ki = torch.arange(k.shape[2])[None, :]
    zero = torch.zeros((), dtype=torch.long)
    if score_mod is not None:
        scores = score_mod(scores, zero, zero, qi, ki)
    if block_mask is not None:
        scores = scores.masked_fill(~block_mask.mask_mod(zero, zero, qi, ki), float("-inf"))
    return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v


@pytest.fixture(params=["flex", "dense"])
def flex_impl(request, monkeypatch):
    """Flex attention as the tiny models run it: uncompiled ``flex_attention`` (forward only on the CPU),
    or ``_dense_flex`` (for gradients)."""
    from torch.nn.attention.flex_attention import flex_attention
    from transformers.integrations import flex_attention as hf_flex

    fn = flex_attention if request.param == "flex" else _dense_flex
    monkeypatch.setattr(hf_flex, "compile_friendly_flex_attention",
                        lambda q, k, v, training=False, **kw: fn(q, k, v, **kw))
    return request.param


@pytest.fixture()
def tiny_pair():
    """The same tiny LoRA model twice: eager (padded batches) and flex attention (packed rows)."""
    eager, flex = _tiny_gemma2(), _tiny_gemma2()
    flex.load_state_dict(eager.state_dict())
    set_attn_implementation(eager, "eager")
    set_attn_implementation(flex, "flex_attention")
    return eager, flex


def test_packed_flex_logits_and_gradients_equal_padded_eager(tiny_pair, flex_impl):
    eager, flex = tiny_pair
    assert uses_packing(flex) and not uses_packing(eager)
    seqs, labels = _seqs([37, 5, 90, 64, 11]), [0, 1, 2, 1, 0]
    padded = pad_batch(seqs, pad_to_multiple_of=8, labels=labels)
    packed = packed_batch(seqs, width=bucket_width(sum(map(len, seqs)), 128), labels=labels)
    eager.eval(), flex.eval()
    with torch.no_grad():
        ref = classification_logits(eager, padded)
        got = classification_logits(flex, packed)
    assert isinstance(packed, PackedBatch) and got.shape == ref.shape == (5, 3)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    # inference entry point: flex model -> packed batches, input order kept
    probs = predict_logits(flex, seqs, max_tokens=128)
    torch.testing.assert_close(probs, ref, rtol=1e-4, atol=1e-5)
    if flex_impl == "flex":
        return  # flex attention has no backward on the CPU

    eager.train(), flex.train()
    for model, batch in ((eager, padded), (flex, packed)):
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(classification_logits(model, batch), batch.labels
                                                 if isinstance(batch, PackedBatch) else batch["labels"])
        loss.backward()
    g_eager, g_flex = _grads(eager), _grads(flex)
    assert g_eager.keys() == g_flex.keys() and any("lora_A" in n for n in g_eager)
    for n in g_eager:
        torch.testing.assert_close(g_flex[n], g_eager[n], rtol=1e-3, atol=1e-6, msg=n)


@pytest.mark.parametrize("flex_impl", ["dense"], indirect=True)
def test_fit_lora_on_packed_rows_matches_padded(tiny_pair, flex_impl):
    eager, flex = tiny_pair
    flex.load_state_dict(eager.state_dict())
    seqs, labels = _seqs([int(x) for x in torch.randint(3, 60, (24,), generator=torch.Generator().manual_seed(9))]), \
        [i % 3 for i in range(24)]
    base = dataclasses.replace(recipe_for_device(15.0, (7, 5)), dtype="float32", grad_scaler=False,
                               gradient_checkpointing=False, uncheckpointed_layers=0, train_max_tokens=256)
    steps = plan_steps([len(q) for q in seqs], 6, 1.0, seed=0)
    kw = dict(steps=steps, lr=1e-2, warmup_steps=0, optim_type="adamw_torch", log_every=10**9)
    ref = fit_lora(eager, seqs, labels, dataclasses.replace(base, pack=False), **kw)
    got = fit_lora(flex, seqs, labels, dataclasses.replace(base, pack=True, pack_bucket=64), **kw)
    assert len(got) == len(ref) == len(steps)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(ref), rtol=1e-3, atol=1e-5)


def test_sliding_window_shorter_than_rows_is_kept(flex_impl):
    eager, flex = _tiny_gemma2(sliding_window=16), _tiny_gemma2(sliding_window=16)
    flex.load_state_dict(eager.state_dict())
    set_attn_implementation(eager, "eager")
    set_attn_implementation(flex, "flex_attention")
    seqs = _seqs([40, 7, 25])
    packed = packed_batch(seqs, width=128)
    cfg = sequence_classifier(flex).config
    masks = attention_masks(packed, cfg)
    assert masks["sliding_attention"] is not masks["full_attention"]
    short = attention_masks(packed_batch(_seqs([10, 7]), width=128), cfg)
    assert short["sliding_attention"] is short["full_attention"]  # rows within the window: one mask
    eager.eval(), flex.eval()
    with torch.no_grad():
        ref = classification_logits(eager, pad_batch(seqs))
        got = classification_logits(flex, packed)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lengths,width", [([37, 5, 90, 64, 11], 256), ([300, 2, 129, 127, 1], 640),
                                           ([128, 128, 256], 512), ([1000], 1024), ([5, 6], 200)])
def test_row_causal_block_mask_equals_create_block_mask(lengths, width):
    """The block-level builder gives create_block_mask's blocks (partial and full) and the same dense mask."""
    from torch.nn.attention.flex_attention import create_block_mask

    from kagflow.classifier.packing import row_causal_block_mask

    pb = packed_batch(_seqs(lengths), width=width)
    doc = pb.doc_ids

    def mod(b, h, q, kv):
        return (doc[q] == doc[kv]) & (q >= kv)

    ours = row_causal_block_mask(pb, mod)
    ref = create_block_mask(mod, 1, None, width, width, device="cpu")
    assert torch.equal(ours.to_dense(), ref.to_dense())  # which blocks are visited
    n = ref.kv_num_blocks[0, 0]
    for q in range(n.shape[0]):
        assert sorted(ours.kv_indices[0, 0, q, :ours.kv_num_blocks[0, 0, q]].tolist()) == \
            sorted(ref.kv_indices[0, 0, q, :ref.kv_num_blocks[0, 0, q]].tolist())
        assert sorted(ours.full_kv_indices[0, 0, q, :ours.full_kv_num_blocks[0, 0, q]].tolist()) == \
            sorted(ref.full_kv_indices[0, 0, q, :ref.full_kv_num_blocks[0, 0, q]].tolist())
